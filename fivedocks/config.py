"""Reading settings from the environment, failing with one readable line when one is wrong."""

from __future__ import annotations

from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured


class ConfigError(ImproperlyConfigured):
    """A missing or malformed setting; the message names it and never echoes a secret."""


POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql", "psql"}
# Entries a per-process local-memory cache keeps unless CACHE_URL says `?max_entries=N`: a
# balance per active user plus cachalot's query results, a few hundred bytes each.
LOCMEM_MAX_ENTRIES = 100_000


def database_from_url(url: str, *, pool: bool, pool_max: int) -> dict:
    """Parse DATABASE_URL, accepting PostgreSQL only (the project's single source of truth)."""
    parts = urlsplit(url)
    if parts.scheme not in POSTGRES_SCHEMES:
        shown = parts.scheme or "none"
        raise ConfigError(
            f"DATABASE_URL must be a PostgreSQL URL like postgres://user@host:5432/dbname "
            f"(scheme given: {shown})"
        )
    if not parts.path.strip("/"):
        raise ConfigError("DATABASE_URL names no database (postgres://user@host:5432/dbname)")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
        config = environ.Env.db_url_config(url)
    except (ValueError, ImproperlyConfigured) as exc:
        raise ConfigError(f"DATABASE_URL is malformed: {exc.__class__.__name__}") from None
    config["ENGINE"] = "django.db.backends.postgresql"
    return with_connection_options(config, pool=pool, pool_max=pool_max)


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


def env_int(env: environ.Env, name: str, default: int) -> int:
    raw = env.str(name, default="")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number (got {raw!r})") from None


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
