"""Read-only access to the platform's own PostgreSQL (PLATFORM_DATABASE_URL).

fivedocks reads two tables there: the Express session store (`user_sessions`) and `users` (for
the first-sight import). It is not a Django database alias on purpose: Django would migrate it and
pytest-django would create a test copy of it. A small psycopg pool per process (opened lazily, so
after gunicorn forks) keeps a session lookup to one round trip.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.conf import settings
from psycopg_pool import ConnectionPool, PoolTimeout

from kvmigrate.sources import mask_url


class PlatformUnavailable(Exception):
    """The platform's database could not be reached or refused the query."""


_pools: dict[str, ConnectionPool] = {}
_lock = threading.Lock()


def enabled() -> bool:
    return bool(settings.PLATFORM_DATABASE_URL)


def _pool(url: str) -> ConnectionPool:
    with _lock:
        pool = _pools.get(url)
        if pool is None:
            pool = ConnectionPool(
                url,
                min_size=0,
                max_size=4,
                timeout=5,
                kwargs={"autocommit": True, "connect_timeout": 5},
                check=ConnectionPool.check_connection,
                name="platform",
                open=True,
            )
            _pools[url] = pool
        return pool


@contextmanager
def cursor() -> Iterator[psycopg.Cursor]:
    """A cursor on the platform's database; PlatformUnavailable when it cannot be used."""
    url = settings.PLATFORM_DATABASE_URL
    if not url:
        raise PlatformUnavailable("PLATFORM_DATABASE_URL is not set")
    try:
        with _pool(url).connection() as conn:
            conn.read_only = True
            with conn.cursor() as cur:
                yield cur
    except (psycopg.Error, PoolTimeout) as exc:
        first = (str(exc).strip().splitlines() or ["error"])[0]
        raise PlatformUnavailable(f"platform database {mask_url(url)}: {first}") from None


def close_all() -> None:
    """Close every pool (tests that drop the platform database call this first)."""
    with _lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()
