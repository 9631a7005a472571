"""A real fivedocks server for tests from the outside: gunicorn, production settings, own database.

The server runs the production code path (DEBUG off, WhiteNoise, the manifest static storage,
secure defaults) with only what plain HTTP on loopback forces: no SSL redirect, no Secure flag on
cookies. It gets a database of its own, created and migrated here and dropped at the end, so the
pytest-django test database and other runs are never touched.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
import requests
from cryptography.fernet import Fernet
from psycopg import sql

from fivedocks.config import database_url

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output"
START_TIMEOUT = 60
# Variables of the test run that must not reach the server: FIVEDOCKS_TEST_MODE switches the
# settings to test mode, and a developer's .env or settings could turn DEBUG back on.
_DROPPED = {
    "FIVEDOCKS_TEST_MODE",
    "PYTEST_VERSION",
    "PYTEST_CURRENT_TEST",
    "PYTEST_XDIST_WORKER",
    "DJANGO_SETTINGS_MODULE",
    "DEBUG",
}


@dataclass
class LiveServer:
    url: str
    env: dict[str, str]
    database: str
    log_path: Path
    process: subprocess.Popen | None = None
    seed: dict = field(default_factory=dict)
    pgbouncer: object | None = None  # tests/pgcluster.PgBouncer when the server goes through one

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _connection_kwargs(db: dict) -> dict:
    """libpq keywords for the server holding the tests' database (from Django's settings)."""
    kwargs = {"user": db.get("USER") or "postgres", "dbname": "postgres", "connect_timeout": 10}
    for key, name in (("HOST", "host"), ("PORT", "port"), ("PASSWORD", "password")):
        if db.get(key):
            kwargs[name] = str(db[key])
    return kwargs


def _database_url(db: dict, name: str) -> str:
    """DATABASE_URL for the server; a Unix-socket host (embedded PostgreSQL) goes in `?host=`."""
    return database_url(db, name)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def production_env(*, database_url: str, static_root: Path, extra: dict[str, str] | None = None) -> dict:
    """The documented production variables, with fresh keys, minus what HTTPS would need."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
    env.update(
        {
            "ENV_FILE": "/nonexistent",
            "DJANGO_SETTINGS_MODULE": "fivedocks.settings",
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "ALLOWED_HOSTS": "127.0.0.1",
            "DATABASE_URL": database_url,
            "STATIC_ROOT": str(static_root),
            # Plain HTTP on loopback: no redirect to https, cookies without the Secure flag.
            "SECURE_SSL_REDIRECT": "0",
            "SESSION_COOKIE_SECURE": "0",
            "CSRF_COOKIE_SECURE": "0",
            # As behind a TLS-terminating proxy: `X-Forwarded-Proto: https` marks a request secure.
            "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
            "CACHE_URL": "locmemcache://fivedocks-e2e",
            "LOG_FORMAT": "text",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def manage(env: dict, *args: str, timeout: int = 300) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def run_seed(env: dict) -> dict:
    """Seed the server's database through the services (tests/seed.py) and return what it made."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.seed"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        raise RuntimeError(f"seeding failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _wait_healthy(server: LiveServer, *, healthy: bool = True) -> None:
    """Until /healthz answers 200 and "ok" three times in a row (every check up, the workers'
    cache listeners connected); with healthy=False: until it answers at all (a server started
    broken on purpose, e.g. its database or its cache is down)."""
    deadline = time.monotonic() + START_TIMEOUT
    ok_in_a_row = 0
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            response = requests.get(f"{server.url}/healthz", timeout=2)
            if not healthy:
                return
            ok = response.status_code == 200 and response.json().get("status") == "ok"
            ok_in_a_row = ok_in_a_row + 1 if ok else 0
            if ok_in_a_row >= 3:
                return
        except (requests.RequestException, ValueError):
            ok_in_a_row = 0
        time.sleep(0.05 if ok_in_a_row else 0.2)
    raise RuntimeError(f"gunicorn did not answer /healthz within {START_TIMEOUT}s:\n{server.log_tail()}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)  # gunicorn: graceful shutdown of the master and workers
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextmanager
def gunicorn(
    server_env: dict, *, workers: int = 2, log_name: str = "server.log", healthy: bool = True
) -> Iterator[LiveServer]:
    """Start gunicorn on a free loopback port with `server_env`; always stop it.

    `healthy=False` waits only for /healthz to answer (any status): a server started broken on purpose.
    """
    port = free_port()
    server = LiveServer(
        url=f"http://127.0.0.1:{port}",
        env=server_env,
        database=server_env["DATABASE_URL"].rsplit("/", 1)[-1].split("?")[0],
        log_path=OUTPUT / log_name,
    )
    with server.log_path.open("w") as log:
        # fmt: off
        command = [
            sys.executable, "-m", "gunicorn", "fivedocks.wsgi:application",
            "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
            "--timeout", "60", "--graceful-timeout", "5",
            "--access-logfile", "-", "--error-logfile", "-", "--no-control-socket",
        ]
        # fmt: on
        server.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=server_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(server, healthy=healthy)
        yield server
    finally:
        _stop(server.process)


@contextmanager
def seeded_database(
    db_settings: dict,
    *,
    name: str | None = None,
    extra_env: dict | None = None,
    collect_static: bool = True,
    pgbouncer_port: int | None = None,
) -> Iterator[tuple[dict, dict]]:
    """Create+migrate a database, collect static files (unless the tests use the API only),
    seed; yield (server env, seed); drop it.

    With `pgbouncer_port` (a PgBouncer in transaction mode in front of the same server) the
    server, its migrations and its seed reach the database through PgBouncer, as in production
    (docs/scaling.md): DATABASE_PGBOUNCER=1, and DATABASE_DIRECT_URL for the session locks and
    the cache listener.
    """
    # Unique beyond this machine's pids: test runs in other containers may share the server.
    name = name or f"test_fd_e2e_{os.getpid()}_{secrets.token_hex(3)}"
    admin = _connection_kwargs(db_settings)
    static_root = Path(tempfile.mkdtemp(prefix="fd-e2e-static-"))
    OUTPUT.mkdir(exist_ok=True)
    database_url = _database_url(db_settings, name)
    pooled = {}
    if pgbouncer_port is not None:
        user = quote(db_settings.get("USER") or "postgres", safe="")
        pooled = {
            "DATABASE_URL": f"postgres://{user}@127.0.0.1:{pgbouncer_port}/{name}",
            "DATABASE_PGBOUNCER": "1",
            "DATABASE_DIRECT_URL": database_url,
        }
    env = production_env(
        database_url=database_url, static_root=static_root, extra={**pooled, **(extra_env or {})}
    )
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        manage(env, "migrate", "--noinput", "--verbosity", "0")
        if collect_static:
            manage(env, "collectstatic", "--noinput", "--verbosity", "0")
        yield env, run_seed(env)
    finally:
        shutil.rmtree(static_root, ignore_errors=True)
        with psycopg.connect(**admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def running_server(
    db_settings: dict, *, workers: int = 2, extra_env: dict | None = None, pgbouncer_port: int | None = None
) -> Iterator[LiveServer]:
    """A seeded database of its own (`seeded_database`) served by gunicorn; undo it all after."""
    with (
        seeded_database(db_settings, extra_env=extra_env, pgbouncer_port=pgbouncer_port) as (env, seeded),
        gunicorn(env, workers=workers) as server,
    ):
        server.seed = seeded
        yield server
