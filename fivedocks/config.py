"""Reading settings from the environment, failing with one readable line when one is wrong."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured


class ConfigError(ImproperlyConfigured):
    """A missing or malformed setting; the message names it and never echoes a secret."""


POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql", "psql"}
# Entries a per-process local-memory cache keeps unless CACHE_URL says `?max_entries=N`: a
# balance per active user plus cachalot's query results, a few hundred bytes each.
LOCMEM_MAX_ENTRIES = 100_000


def database_from_url(url: str, *, pool: bool, pool_max: int, name: str = "DATABASE_URL") -> dict:
    """Parse DATABASE_URL, accepting PostgreSQL only (the project's single source of truth)."""
    parts = urlsplit(url)
    if parts.scheme not in POSTGRES_SCHEMES:
        shown = parts.scheme or "none"
        raise ConfigError(
            f"{name} must be a PostgreSQL URL like postgres://user@host:5432/dbname (scheme given: {shown})"
        )
    if not parts.path.strip("/"):
        raise ConfigError(f"{name} names no database (postgres://user@host:5432/dbname)")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
        config = environ.Env.db_url_config(url)
    except (ValueError, ImproperlyConfigured) as exc:
        raise ConfigError(f"{name} is malformed: {exc.__class__.__name__}") from None
    config["ENGINE"] = "django.db.backends.postgresql"
    # A Unix-socket folder comes as `?host=/path` (or a %2F-quoted host): HOST holds it either way,
    # so whatever reads the settings (psql, libpq keywords, test helpers) finds the server there.
    socket_dir = config.get("OPTIONS", {}).pop("host", "") or ""
    if socket_dir:
        config["HOST"] = socket_dir
    elif "%2f" in str(config.get("HOST", "")).lower():
        config["HOST"] = unquote(config["HOST"])
    return with_connection_options(config, pool=pool, pool_max=pool_max)


def database_url(db: dict, name: str | None = None) -> str:
    """The DATABASE_URL of Django's database settings `db` (for `name`, default its own NAME).

    The inverse of `database_from_url`: a Unix-socket folder (the embedded PostgreSQL) goes in
    `?host=`, since a URL's host part cannot hold a path.
    """
    user = quote(str(db.get("USER") or "postgres"), safe="")
    password = f":{quote(str(db['PASSWORD']), safe='')}" if db.get("PASSWORD") else ""
    host, port = str(db.get("HOST") or ""), str(db.get("PORT") or "5432")
    dbname = quote(str(name or db["NAME"]), safe="")
    if host.startswith("/"):
        return f"postgres://{user}{password}@:{port}/{dbname}?host={quote(host, safe='')}"
    return f"postgres://{user}{password}@{host or '127.0.0.1'}:{port}/{dbname}"


def for_transaction_pooling(config: dict) -> dict:
    """What PgBouncer in transaction mode needs: consecutive transactions of one client may run on
    different server connections, so nothing may outlive a transaction on the server. psycopg
    prepares a statement after 5 runs (`prepare_threshold`): off. A server-side cursor outside a
    transaction (`.iterator()`) would be lost: Django's DISABLE_SERVER_SIDE_CURSORS."""
    config.setdefault("OPTIONS", {})["prepare_threshold"] = None
    config["DISABLE_SERVER_SIDE_CURSORS"] = True
    return config


def replica_database(url: str, *, index: int, connect_timeout: int) -> dict:
    """A read-only alias on a streaming replica (DATABASE_REPLICA_URLS).

    Persistent connections checked at the start of each request rather than a pool: a pool's
    connection attempts to a replica that is down would make a request wait for the pool's
    timeout, where a plain connection is refused at once (or after `connect_timeout`).
    """
    config = database_from_url(url, pool=False, pool_max=0, name=f"DATABASE_REPLICA_URLS (entry {index})")
    config.setdefault("OPTIONS", {})["connect_timeout"] = connect_timeout
    # Tests: the alias reads the test database of the primary it replicates.
    config["TEST"] = {"MIRROR": "default"}
    return config


def with_connection_options(config: dict, *, pool: bool, pool_max: int) -> dict:
    """psycopg 3 pool when asked for (Django 5.1+), else persistent connections.

    The engine is Django's PostgreSQL backend extended to send a transaction's cache
    notifications before its COMMIT (fivedocks/db/base.py, fivedocks/coherence.py)."""
    config["ENGINE"] = "fivedocks.db"
    options = config.setdefault("OPTIONS", {})
    if pool:
        options["pool"] = {"min_size": 1, "max_size": pool_max, "timeout": 10}
        config["CONN_MAX_AGE"] = 0
    else:
        config["CONN_MAX_AGE"] = 60
        config["CONN_HEALTH_CHECKS"] = True
    config.setdefault("TEST", {})
    return config


def cache_from_url(env: environ.Env, url: str) -> dict:
    try:
        config = env.cache_url_config(url)
    except (ValueError, ImproperlyConfigured, KeyError) as exc:
        raise ConfigError(f"CACHE_URL is malformed: {exc}") from None
    from fivedocks.cache_backends import INSTRUMENTED  # counts hits and misses for /metrics

    if config["BACKEND"].endswith(".LocMemCache"):
        # Django's default of 300 entries is fewer than the active users: with 1,000 of them the
        # balance entries evicted each other and ~80% of balance reads went to the database.
        config.setdefault("OPTIONS", {}).setdefault("MAX_ENTRIES", LOCMEM_MAX_ENTRIES)
    config["BACKEND"] = INSTRUMENTED.get(config["BACKEND"], config["BACKEND"])
    return config


def env_bool(env: environ.Env, name: str, default: bool) -> bool:
    raw = env.str(name, default="")
    if raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be one of 1/0, true/false, yes/no, on/off (got {raw!r})")


def env_float(env: environ.Env, name: str, default: float) -> float:
    raw = env.str(name, default="")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number (got {raw!r})") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative (got {raw!r})")
    return value


def env_int(env: environ.Env, name: str, default: int) -> int:
    raw = env.str(name, default="")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number (got {raw!r})") from None


# Commands that never touch the database: no reachability probe before them.
_NO_DATABASE_COMMANDS = {
    "help", "version", "--help", "-h", "--version", "kvgen", "collectstatic", "check", "makemigrations",
    "diffsettings", "startapp", "startproject", "compilemessages", "makemessages",
    "smoke", "kvbackup", "kvrestore",  # another deployment over HTTP; the KV stores only
}  # fmt: skip
PROBE_TIMEOUT = 3  # seconds; libpq's minimum is 2


def needs_database(argv: list[str]) -> bool:
    command = argv[1] if len(argv) > 1 else "help"
    return command not in _NO_DATABASE_COMMANDS and "--help" not in argv[2:] and "-h" not in argv[2:]


def database_unreachable(db: dict, *, timeout: int = PROBE_TIMEOUT) -> str | None:
    """None when the database answers; else one line naming host, port, database and the cause.

    Without this a dead database meant the pool's 10 s wait and an 80-line traceback.
    """
    import psycopg

    host, port = str(db.get("HOST") or "localhost"), str(db.get("PORT") or 5432)
    kwargs = {
        "host": host,
        "port": port,
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        "dbname": db.get("NAME"),
        "connect_timeout": timeout,
    }
    try:
        psycopg.connect(**{k: v for k, v in kwargs.items() if v is not None}).close()
    except psycopg.Error as exc:
        where = f"{host} (Unix socket, port {port})" if host.startswith("/") else f"{host}:{port}"
        return f"cannot reach the database {db.get('NAME')!r} at {where}: {connection_cause(exc)}"
    return None


_CAUSE_PREFIXES = re.compile(
    r"^(?:connection (?:failed|is bad): )?"
    r"(?:connection to server (?:at \"[^\"]*\"(?: \([^)]*\))?, port \d+|on socket \"[^\"]*\") failed: )?"
    r"(?:FATAL: +)?"
)


def connection_cause(exc: Exception) -> str:
    """The useful part of libpq's message: 'Connection refused', 'database "x" does not exist'..."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = lines[0] if lines else exc.__class__.__name__
    return _CAUSE_PREFIXES.sub("", first) or first


# The platform's fallback when its SESSION_SECRET is unset: anyone can sign cookies with it.
PLATFORM_FALLBACK_SECRET = "temporary-secret-key"


def platform_session_secrets(raw: str, *, enabled: bool) -> list[str]:
    """PLATFORM_SESSION_SECRET: comma-separated, newest first (the platform's rotation order).

    Required when session login is on (PLATFORM_DATABASE_URL set); the platform's public
    fallback secret is refused whenever it appears.
    """
    secrets = [part.strip() for part in raw.split(",") if part.strip()]
    if PLATFORM_FALLBACK_SECRET in secrets:
        raise ConfigError(
            f"PLATFORM_SESSION_SECRET must not be the platform's public fallback {PLATFORM_FALLBACK_SECRET!r}"
        )
    if enabled and not secrets:
        raise ConfigError("PLATFORM_SESSION_SECRET is required when PLATFORM_DATABASE_URL is set")
    return secrets
