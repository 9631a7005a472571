"""Django cache backends that count hits and misses per key family for /metrics, store a
versioned entry atomically (`set_if_newer`), and survive an outage of a shared cache.

The family is the key's prefix before the first ':'; keys with no prefix (django-cachalot's hashed
keys) count as `cachalot`. Balance entries (`credits:...`) are counted by `credits.cache.read`
itself as family `balance`, so the writer's internal version check is not mistaken for a read.

A cache outage costs speed, not answers: when Redis cannot be reached, a read is a miss (the
caller, django-cachalot included, reads PostgreSQL) and a write is skipped, each logged and
counted (`fivedocks_cache_errors_total`). A write that could not reach Redis may have left an
entry there that no longer matches the database (a balance not replaced, a cachalot table not
invalidated), so after one the process stops reading the cache until it has cleared it
(`clear()`, tried at most once a second): a dedicated Redis database is expected.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.exceptions import RedisError, WatchError

from fivedocks.metrics import CACHE_ERRORS, CACHE_REQUESTS

logger = logging.getLogger(__name__)
_MISSING = object()


def key_family(key: str) -> str:
    prefix, sep, _ = str(key).partition(":")
    return prefix if sep else "cachalot"


SELF_COUNTED_FAMILIES = frozenset({"credits"})


class CountingMixin:
    def get(self, key, default=None, version=None):
        value = super().get(key, _MISSING, version)
        self._count(key, value is not _MISSING)
        return default if value is _MISSING else value

    def get_many(self, keys, version=None):
        keys = list(keys)
        found = super().get_many(keys, version)
        for key in keys:
            self._count(key, key in found)
        return found

    def _count(self, key, hit: bool) -> None:
        family = key_family(key)
        if family not in SELF_COUNTED_FAMILIES:
            CACHE_REQUESTS.labels(self._alias_label, family, "hit" if hit else "miss").inc()

    @property
    def _alias_label(self) -> str:
        return getattr(self, "_fivedocks_alias", "default")


class CountingLocMemCache(CountingMixin, LocMemCache):
    def set_if_newer(self, key, value: tuple, timeout, *, version_index: int) -> bool:
        """Set `value` unless the entry holds a newer version (compared under the cache's lock)."""
        key = self.make_and_validate_key(key)
        pickled = pickle.dumps(value, self.pickle_protocol)
        with self._lock:
            if not self._has_expired(key):
                current = pickle.loads(self._cache[key])  # noqa: S301 - our own entry, as Django's get
                if current[version_index] > value[version_index]:
                    return False
            self._set(key, pickled, timeout)
            return True

    def probe(self) -> None:
        """Raise when the cache does not answer (/healthz); local memory always answers."""


class ReusingRedisCacheClient(RedisCacheClient):
    """Django's client builds a new `redis.Redis` for every cache operation, and redis-py's
    constructor (hundreds of response callbacks) cost about as much as the GET itself: keep one
    client per connection pool. A `redis.Redis` is safe to share between threads (each command
    borrows a connection from the pool) and its pool reconnects after a fork."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients: dict[int, object] = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)  # Django keeps each pool for the cache's lifetime
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


_OUTAGE = (RedisError, OSError)


class _Outage:
    """Per process: whether a write failed (entries may be stale) and when recovery was tried."""

    lock = threading.Lock()
    suspect = False
    last_attempt = 0.0


class CountingRedisCache(CountingMixin, RedisCache):
    RECOVERY_INTERVAL = 1.0

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = ReusingRedisCacheClient

    # Reads: a failure is a miss.
    def get(self, key, default=None, version=None):
        if not self._readable():
            return default
        try:
            return super().get(key, default, version)
        except _OUTAGE as exc:
            self._failed("get", exc, write=False)
            return default

    def get_many(self, keys, version=None):
        if not self._readable():
            return {}
        try:
            return super().get_many(keys, version)
        except _OUTAGE as exc:
            self._failed("get_many", exc, write=False)
            return {}

    def has_key(self, key, version=None):
        if not self._readable():
            return False
        try:
            return super().has_key(key, version)
        except _OUTAGE as exc:
            self._failed("has_key", exc, write=False)
            return False

    # Writes: a failure is logged and counted, never raised.
    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._write("add", super().add, key, value, timeout, version, failed=False)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._write("set", super().set, key, value, timeout, version)

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        return self._write("set_many", super().set_many, data, timeout, version, failed=list(data))

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        return self._write("touch", super().touch, key, timeout, version, failed=False)

    def delete(self, key, version=None):
        return self._write("delete", super().delete, key, version, failed=False)

    def delete_many(self, keys, version=None):
        return self._write("delete_many", super().delete_many, keys, version)

    def clear(self):
        try:
            result = super().clear()
        except _OUTAGE as exc:
            self._failed("clear", exc, write=True)
            return False
        with _Outage.lock:
            _Outage.suspect = False
        return result

    def set_if_newer(self, key, value: tuple, timeout, *, version_index: int) -> bool:
        """Set `value` unless Redis holds a newer version: WATCH, compare, MULTI/SET/EXEC."""
        try:
            return self._set_if_newer(key, value, timeout, version_index)
        except _OUTAGE as exc:
            self._failed("set_if_newer", exc, write=True)
            return False

    def _set_if_newer(self, key, value, timeout, version_index) -> bool:
        key = self.make_and_validate_key(key)
        client = self._cache.get_client(key, write=True)
        serializer = self._cache._serializer
        timeout = self.get_backend_timeout(timeout)
        with client.pipeline() as pipe:
            for _ in range(10):
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is not None and serializer.loads(raw)[version_index] > value[version_index]:
                        pipe.unwatch()
                        return False
                    pipe.multi()
                    if timeout is None:
                        pipe.set(key, serializer.dumps(value))
                    else:
                        pipe.set(key, serializer.dumps(value), px=max(int(timeout * 1000), 1))
                    pipe.execute()
                    return True
                except WatchError:
                    continue  # another writer got there first: compare again
        pipe.reset()
        self.delete(key)  # kept losing the race: let the next read refill it from the database
        return False

    def probe(self) -> None:
        """Raise when Redis does not answer (/healthz)."""
        client = self._cache.get_client(write=True)
        client.ping()

    def _write(self, operation, method, *args, failed=None):
        try:
            return method(*args)
        except _OUTAGE as exc:
            self._failed(operation, exc, write=True)
            return failed

    def _readable(self) -> bool:
        if not _Outage.suspect:
            return True
        now = time.monotonic()
        with _Outage.lock:
            if not _Outage.suspect:
                return True
            if now - _Outage.last_attempt < self.RECOVERY_INTERVAL:
                return False
            _Outage.last_attempt = now
        self.clear()  # back: drop whatever a failed write may have left stale
        return not _Outage.suspect

    def _failed(self, operation: str, exc: BaseException, *, write: bool) -> None:
        CACHE_ERRORS.labels(self._alias_label, operation).inc()
        logger.warning("cache %s failed (%s): served without the cache", operation, exc.__class__.__name__)
        if write:
            with _Outage.lock:
                _Outage.suspect = True


INSTRUMENTED = {
    "django.core.cache.backends.locmem.LocMemCache": "fivedocks.cache_backends.CountingLocMemCache",
    "django.core.cache.backends.redis.RedisCache": "fivedocks.cache_backends.CountingRedisCache",
}
