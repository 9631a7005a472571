"""A real primary and streaming replica, and a real PgBouncer, started by the tests.

Both servers run the machine's own PostgreSQL binaries (`/usr/lib/postgresql/N/bin`) on folders
in a temporary directory and free loopback ports: a primary made with `initdb` (WAL for
replication, pg_stat_statements loaded) and a replica made from it with `pg_basebackup -R`
(streaming replication, hot standby). The shared server on 5432 is never reconfigured. As root,
the servers run as the `postgres` system user (PostgreSQL refuses root); so does PgBouncer.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.liveserver import free_port


def binaries() -> Path:
    """The newest machine PostgreSQL with the replication tools (pgserver's package has none)."""
    found = sorted(
        (p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/pg_basebackup")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    if not found:
        raise RuntimeError(
            "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: "
            "`apt-get install -y postgresql` (.ci/run uses the machine's PostgreSQL)"
        )
    return found[0]


def _os_user() -> str | None:
    """PostgreSQL and PgBouncer refuse to run as root: the `postgres` (else `nobody`) user."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and no 'postgres' system user exists")


def _give(path: Path, user: str | None) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _run(args: list, user: str | None) -> str:
    result = subprocess.run(
        [str(a) for a in args], user=user, capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


@dataclass
class PgServer:
    name: str
    data: Path
    port: int
    bin: Path
    user: str | None

    @property
    def log(self) -> Path:
        return self.data.parent / f"{self.name}.log"

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres", **kwargs) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=database, autocommit=True, **kwargs
        )

    def start(self) -> None:
        _run(
            [
                self.bin / "pg_ctl",
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                self.data,
                "-l",
                self.log,
                "-o",
                f"-p {self.port}",
            ],
            self.user,
        )

    def stop(self, mode: str = "fast") -> None:
        _run([self.bin / "pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", self.data], self.user)

    def running(self) -> bool:
        result = subprocess.run(
            [str(self.bin / "pg_ctl"), "status", "-D", str(self.data)], user=self.user, capture_output=True
        )
        return result.returncode == 0

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


_PRIMARY_CONF = """
listen_addresses = '127.0.0.1'
unix_socket_directories = '{sockets}'
wal_level = replica
max_wal_senders = 5
wal_keep_size = '128MB'
hot_standby = on
hot_standby_feedback = on
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 60
shared_buffers = '32MB'
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
log_min_messages = warning
"""


@dataclass
class ReplicatedCluster:
    primary: PgServer
    replica: PgServer
    root: Path

    def wait_replayed(self, timeout: float = 30) -> None:
        """Until the replica has replayed everything the primary has written so far."""
        with self.primary.connect() as conn:
            target = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
        deadline = time.monotonic() + timeout
        with self.replica.connect() as conn:
            while time.monotonic() < deadline:
                done = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [str(target)]
                ).fetchone()[0]
                if done:
                    return
                time.sleep(0.05)
        raise RuntimeError(f"the replica did not replay up to {target} within {timeout}s")

    def pause_replay(self) -> None:
        with self.replica.connect() as conn:
            conn.execute("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        with self.replica.connect() as conn:
            conn.execute("SELECT pg_wal_replay_resume()")


# The ledger page's query, as pg_stat_statements normalises it: which server answered it.
LEDGER_QUERY = '%FROM "credit_transactions"%'


def ledger_reads(conn: psycopg.Connection, database: str) -> int:
    """How many times this server ran the ledger's query in `database` (pg_stat_statements)."""
    row = conn.execute(
        "SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
        " WHERE d.datname = %s AND s.query LIKE %s",
        [database, LEDGER_QUERY],
    ).fetchone()
    return int(row[0])


@contextmanager
def replicated_cluster() -> Iterator[ReplicatedCluster]:
    """A fresh primary and its streaming replica; both stopped and deleted afterwards."""
    bin_dir, user = binaries(), _os_user()
    root = Path(tempfile.mkdtemp(prefix="fd-replica-"))
    _give(root, user)
    os.chmod(root, 0o755)
    sockets = root / "sockets"
    sockets.mkdir()
    _give(sockets, user)
    primary = PgServer("primary", root / "primary", free_port(), bin_dir, user)
    replica = PgServer("replica", root / "replica", free_port(), bin_dir, user)
    started: list[PgServer] = []
    try:
        _run(
            [
                bin_dir / "initdb",
                "-D",
                primary.data,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            user,
        )
        conf = _PRIMARY_CONF.format(sockets=sockets)
        if not (bin_dir.parent / "lib" / "pg_stat_statements.so").exists():
            conf = conf.replace("shared_preload_libraries = 'pg_stat_statements'", "")
        with (primary.data / "postgresql.conf").open("a") as f:
            f.write(conf)
        with (primary.data / "pg_hba.conf").open("a") as f:
            f.write("host replication postgres 127.0.0.1/32 trust\n")
        primary.start()
        started.append(primary)
        _run(
            [
                bin_dir / "pg_basebackup", "-h", "127.0.0.1", "-p", primary.port, "-U", "postgres",
                "-D", replica.data, "-R", "-X", "stream", "-c", "fast", "--no-sync",
            ],
            user,
        )  # fmt: skip
        replica.start()
        started.append(replica)
        cluster = ReplicatedCluster(primary, replica, root)
        cluster.wait_replayed()
        yield cluster
    except RuntimeError as exc:
        raise RuntimeError(
            f"{exc}\n--- primary log:\n{primary.log_tail()}\n--- replica log:\n{replica.log_tail()}"
        ) from None
    finally:
        for server in reversed(started):
            if server.running():
                with suppress(RuntimeError):
                    server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


# --- PgBouncer -------------------------------------------------------------------------------


@dataclass
class PgBouncer:
    port: int
    process: subprocess.Popen
    log: Path

    def url(self, database: str, user: str = "postgres") -> str:
        return f"postgres://{user}@127.0.0.1:{self.port}/{database}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def admin(self, command: str, user: str = "postgres") -> list[dict]:
        """A command on PgBouncer's admin console (simple query protocol: a client-side cursor)."""
        with psycopg.connect(
            self.url("pgbouncer", user), autocommit=True, cursor_factory=psycopg.ClientCursor
        ) as c:
            cursor = c.cursor()
            cursor.execute(command)
            names = [d.name for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def pgbouncer_binary() -> Path:
    for candidate in (shutil.which("pgbouncer"), "/usr/sbin/pgbouncer"):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    raise RuntimeError("pgbouncer is missing: `apt-get install -y pgbouncer` (.ci/run does it)")


@contextmanager
def pgbouncer(*, host: str, port: int, user: str = "postgres", password: str = "") -> Iterator[PgBouncer]:
    """Debian's PgBouncer in transaction mode on a free loopback port, in front of `host:port`
    (every database by its own name); stopped and deleted afterwards."""
    binary, os_user = pgbouncer_binary(), _os_user()
    root = Path(tempfile.mkdtemp(prefix="fd-pgbouncer-"))
    os.chmod(root, 0o755)
    listen = free_port()
    log = root / "pgbouncer.log"
    (root / "userlist.txt").write_text(f'"{user}" "{password}"\n')
    (root / "pgbouncer.ini").write_text(
        f"""[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = {"plain" if password else "trust"}
auth_file = {root / "userlist.txt"}
pool_mode = transaction
max_client_conn = 200
default_pool_size = 10
ignore_startup_parameters = extra_float_digits
logfile = {log}
pidfile = {root / "pgbouncer.pid"}
admin_users = {user}
"""
        + (f"user = {os_user}\n" if os_user else "")
    )
    for path in (root, *root.iterdir()):
        _give(path, os_user)
    process = subprocess.Popen(
        [str(binary), str(root / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    bouncer = PgBouncer(listen, process, log)
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"pgbouncer exited ({process.returncode}):\n{process.stderr.read()}\n{bouncer.log_tail()}"
                )
            try:
                with psycopg.connect(
                    bouncer.url("postgres", user), connect_timeout=2, prepare_threshold=None
                ) as c:
                    c.execute("SELECT 1")
                break
            except psycopg.Error:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"pgbouncer did not answer within 20s:\n{bouncer.log_tail()}"
                    ) from None
                time.sleep(0.1)
        yield bouncer
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        shutil.rmtree(root, ignore_errors=True)
