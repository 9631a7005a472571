"""Django cache backends that count hits and misses per key family for /metrics.

The family is the key's prefix before the first ':'; keys with no prefix (django-cachalot's hashed
keys) count as `cachalot`. Balance entries (`credits:...`) are counted by `credits.cache.read`
itself as family `balance`, so the writer's internal version check is not mistaken for a read.
"""

from __future__ import annotations

from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache, RedisCacheClient

from fivedocks.metrics import CACHE_REQUESTS

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
    pass


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


class CountingRedisCache(CountingMixin, RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = ReusingRedisCacheClient


INSTRUMENTED = {
    "django.core.cache.backends.locmem.LocMemCache": "fivedocks.cache_backends.CountingLocMemCache",
    "django.core.cache.backends.redis.RedisCache": "fivedocks.cache_backends.CountingRedisCache",
}
