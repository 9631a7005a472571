"""An embedded PostgreSQL for machines with no database server (used when DATABASE_URL is unset).

The settings never start it: `make run`, `make test` and `.ci/run` do, through this module's
command line (`python -m fivedocks.embedded_db run -- COMMAND`), which starts the server when
DATABASE_URL is unset, exports DATABASE_URL for COMMAND and, with `--stop-after`, stops the
server afterwards if it was the one that started it.

It runs the machine's own PostgreSQL binaries when installed (Debian's /usr/lib/postgresql/*,
which ship pg_stat_statements), else the ones the `pgserver` package bundles, on a data folder
inside the project, listening on a Unix socket in that folder only (no TCP port to collide with).
An existing data folder is always started by binaries of its own major version. Unlike
pgserver's own launcher it never adds system users or widens permissions on parent folders: run
as root, it runs the server as the existing `postgres` (or `nobody`) system user and stops with a
clear message when that user cannot reach the folder.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pwd
import signal
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from fivedocks.config import ConfigError

DATABASE_NAME = "fivedocks"
SOCKET_PORT = 5432


@dataclass(frozen=True)
class EmbeddedDatabase:
    data_dir: Path
    socket_dir: Path

    def settings(self, name: str = DATABASE_NAME) -> dict:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": "postgres",
            "PASSWORD": "",
            "HOST": str(self.socket_dir),
            "PORT": str(SOCKET_PORT),
        }

    def url(self, name: str = DATABASE_NAME) -> str:
        """DATABASE_URL for it: the socket folder goes in `?host=` (a URL's host cannot hold a path)."""
        return f"postgres://postgres@:{SOCKET_PORT}/{name}?host={quote(str(self.socket_dir), safe='')}"


def _major_version(binaries: Path) -> str:
    out = subprocess.run(
        [str(binaries / "postgres"), "--version"], capture_output=True, text=True, timeout=30
    )
    return out.stdout.split()[-1].split(".")[0] if out.returncode == 0 else ""


def installations() -> list[Path]:
    """Bin folders able to run a server, the machine's own first (newest first), pgserver's last."""
    system = sorted(
        (p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    return [*system, pgserver_bin_dir()]


def choose_binaries(data_dir: Path) -> Path:
    existing = data_dir / "PG_VERSION"
    candidates = installations()
    if not existing.exists():
        return candidates[0]
    wanted = existing.read_text().strip()
    for binaries in candidates:
        if _major_version(binaries) == wanted:
            return binaries
    raise ConfigError(f"embedded PostgreSQL: {data_dir} needs PostgreSQL {wanted} binaries, none found")


def has_pg_stat_statements(binaries: Path) -> bool:
    lib = binaries.parent / "lib"
    return (lib / "pg_stat_statements.so").exists() or (lib / "postgresql" / "pg_stat_statements.so").exists()


def pgserver_bin_dir() -> Path:
    try:
        with warnings.catch_warnings():  # pgserver's import warns about XDG_RUNTIME_DIR; we don't use it
            warnings.simplefilter("ignore")
            import pgserver._commands as commands
    except ImportError:  # pragma: no cover - pgserver is in requirements.txt
        raise ConfigError("DATABASE_URL is unset and the pgserver package is not installed") from None
    return Path(commands.POSTGRES_BIN_PATH)


def _server_user() -> str | None:
    """The system user to run PostgreSQL as: PostgreSQL refuses to run as root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise ConfigError("embedded PostgreSQL: running as root and no 'postgres' system user exists")


def _check_reachable(path: Path, user: str) -> None:
    """Every parent folder must be traversable by `user`; we report rather than chmod."""
    entry = pwd.getpwnam(user)
    for parent in [path, *path.parents]:
        st = parent.stat()
        if st.st_uid == entry.pw_uid:
            ok = st.st_mode & 0o100
        elif st.st_gid == entry.pw_gid:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            raise ConfigError(
                f"embedded PostgreSQL: user {user!r} cannot reach {parent}; set EMBEDDED_PGDATA "
                "to a folder it can reach, or set DATABASE_URL"
            )


def _run(args: list[str], user: str | None, *, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, user=user, capture_output=True, text=True, check=check, timeout=60)


def ensure_running(data_dir: Path) -> EmbeddedDatabase:
    """Initialise (first time) and start the server if it is not running; idempotent and locked."""
    data_dir = data_dir.resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    user = _server_user()
    binaries = choose_binaries(data_dir)
    lock_path = data_dir.parent / f".{data_dir.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (data_dir / "PG_VERSION").exists():
            data_dir.mkdir(mode=0o700, exist_ok=True)
            if user:
                _check_reachable(data_dir.parent, user)
                _check_reachable(binaries, user)
                entry = pwd.getpwnam(user)
                os.chown(data_dir, entry.pw_uid, entry.pw_gid)
            sys.stderr.write(
                f"fivedocks: DATABASE_URL is unset: creating an embedded PostgreSQL in {data_dir}"
                f"{f' (run as system user {user!r})' if user else ''}\n"
            )
            result = _run(
                [
                    str(binaries / "initdb"),
                    "-D",
                    str(data_dir),
                    "--auth=trust",
                    "--encoding=UTF8",
                    "-U",
                    "postgres",
                ],
                user,
                check=False,
            )
            if result.returncode != 0:
                raise ConfigError(f"embedded PostgreSQL: initdb failed: {result.stderr.strip()[:300]}")
            stats = has_pg_stat_statements(binaries)
            with open(data_dir / "postgresql.conf", "a") as conf:
                conf.write(
                    "\n# fivedocks embedded settings\nlisten_addresses = ''\n"
                    f"unix_socket_directories = '{data_dir}'\nport = {SOCKET_PORT}\n"
                    "max_connections = 100\n"
                    + (
                        "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\n"
                        if stats
                        else ""
                    )
                )
        status = _run([str(binaries / "pg_ctl"), "-D", str(data_dir), "status"], user, check=False)
        if status.returncode != 0:
            sys.stderr.write(f"fivedocks: starting the embedded PostgreSQL in {data_dir}\n")
            result = _run(
                [
                    str(binaries / "pg_ctl"),
                    "-D",
                    str(data_dir),
                    "-w",
                    "-t",
                    "30",
                    "-l",
                    str(data_dir / "server.log"),
                    "start",
                ],
                user,
                check=False,
            )
            if result.returncode != 0:
                raise ConfigError(f"embedded PostgreSQL did not start; see {data_dir / 'server.log'}")
        database = EmbeddedDatabase(data_dir=data_dir, socket_dir=data_dir)
        _ensure_database(database)
        return database


def _ensure_database(database: EmbeddedDatabase) -> None:
    import psycopg

    with psycopg.connect(
        host=str(database.socket_dir),
        port=SOCKET_PORT,
        user="postgres",
        dbname="postgres",
        autocommit=True,
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    with psycopg.connect(
        host=str(database.socket_dir),
        port=SOCKET_PORT,
        user="postgres",
        dbname=DATABASE_NAME,
        autocommit=True,
    ) as conn:
        preloaded = "pg_stat_statements" in conn.execute("SHOW shared_preload_libraries").fetchone()[0]
        if preloaded:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")


def stop(data_dir: Path) -> bool:
    data_dir = data_dir.resolve()
    if not (data_dir / "PG_VERSION").exists():
        return False
    result = _run(
        [str(choose_binaries(data_dir) / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "stop"],
        _server_user(),
        check=False,
    )
    return result.returncode == 0


def is_running(data_dir: Path) -> bool:
    data_dir = data_dir.resolve()
    if not (data_dir / "PG_VERSION").exists():
        return False
    pg_ctl = str(choose_binaries(data_dir) / "pg_ctl")
    return _run([pg_ctl, "-D", str(data_dir), "status"], _server_user(), check=False).returncode == 0


# --- Command line: what make and CI call ------------------------------------------------------
BASE_DIR = Path(__file__).resolve().parent.parent


def default_data_dir() -> Path:
    return Path(os.environ.get("EMBEDDED_PGDATA") or BASE_DIR / ".pgdata")


def _configured_database_url() -> str:
    """DATABASE_URL as the settings will see it: the environment, else the .env file."""
    env_file = Path(os.environ.get("ENV_FILE", BASE_DIR / ".env"))
    if env_file.is_file():
        import environ

        environ.Env.read_env(env_file, overwrite=False)  # as the settings do: the environment wins
    return os.environ.get("DATABASE_URL", "")


def run(command: list[str], *, stop_after: bool, data_dir: Path | None = None) -> int:
    """Run `command` with DATABASE_URL set, starting the embedded server when none is configured.

    With `stop_after`, a server this call started is stopped when the command ends (however it
    ends); one that was already running is left alone.
    """
    configured = _configured_database_url()
    env = dict(os.environ)
    started = False
    if not configured:
        data_dir = (data_dir or default_data_dir()).resolve()
        was_running = is_running(data_dir)
        database = ensure_running(data_dir)
        started = not was_running
        env["DATABASE_URL"] = database.url()
        sys.stderr.write(
            f"fivedocks: DATABASE_URL is unset: using the embedded PostgreSQL in {data_dir}"
            f"{' (started; stopped when done)' if started and stop_after else ''}\n"
        )
    process = subprocess.Popen(command, env=env)
    # The terminal's Ctrl-C reaches the child too (same process group); we wait for it to finish.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    forward = signal.signal(signal.SIGTERM, lambda signum, frame: process.terminate())
    try:
        code = process.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, forward)
        if started and stop_after:
            stop(data_dir)
            sys.stderr.write(f"fivedocks: stopped the embedded PostgreSQL in {data_dir}\n")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fivedocks.embedded_db")
    sub = parser.add_subparsers(dest="action", required=True)
    run_parser = sub.add_parser("run", help="run COMMAND with DATABASE_URL set (embedded server if unset)")
    run_parser.add_argument("--stop-after", action="store_true", help="stop a server this call started")
    run_parser.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("start", help="start the embedded server and print its DATABASE_URL")
    sub.add_parser("stop", help="stop the embedded server")
    sub.add_parser("status", help="exit 0 when the embedded server runs, 3 when it does not")
    args = parser.parse_args(argv)
    try:
        if args.action == "run":
            command = args.command[1:] if args.command[:1] == ["--"] else args.command
            if not command:
                parser.error("run needs a command")
            return run(command, stop_after=args.stop_after)
        if args.action == "start":
            print(ensure_running(default_data_dir()).url())
            return 0
        if args.action == "status":
            running = is_running(default_data_dir())
            print("running" if running else "not running")
            return 0 if running else 3
        print("stopped" if stop(default_data_dir()) else "not running")
        return 0
    except ConfigError as exc:
        sys.stderr.write(f"fivedocks: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
