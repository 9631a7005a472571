"""Django cache backends that count hits and misses per key family for /metrics.

The family is the key's prefix before the first ':'; keys with no prefix (django-cachalot's hashed
keys) count as `cachalot`. Balance entries (`credits:...`) are counted by `credits.cache.read`
itself as family `balance`, so the writer's internal version check is not mistaken for a read.
"""

from __future__ import annotations

from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

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


class CountingRedisCache(CountingMixin, RedisCache):
    pass


INSTRUMENTED = {
    "django.core.cache.backends.locmem.LocMemCache": "fivedocks.cache_backends.CountingLocMemCache",
    "django.core.cache.backends.redis.RedisCache": "fivedocks.cache_backends.CountingRedisCache",
}
