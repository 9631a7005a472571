"""Throttles on the money paths, counted atomically where every worker sees the same count.

DRF's own throttles keep a history list in the cache (read, then write): under concurrent
requests several read the same list and all pass (816 deductions passed a 600/min limit under 8
threads), and with a per-process cache each gunicorn worker counts alone. Here each request is
one atomic increment of a fixed-window counter: Redis `INCR` when the cache is Redis, else one
PostgreSQL upsert. When the counter store cannot be reached the request passes (fail open: a
cache outage must not stop payments) and the pass is counted in /metrics.

The caller is the user, or for anonymous callers the client address as DRF's NUM_PROXIES
setting reads it (from the environment): with a trusted proxy count, `X-Forwarded-For` cannot
mint new identities.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from rest_framework.throttling import ScopedRateThrottle

from fivedocks.metrics import THROTTLE_FAIL_OPEN

logger = logging.getLogger(__name__)

_UPSERT_SQL = """
    INSERT INTO throttle_counters (key, window_start, hits) VALUES (%s, %s, 1)
    ON CONFLICT (key) DO UPDATE SET
        hits = CASE WHEN EXCLUDED.window_start > throttle_counters.window_start THEN 1
                    ELSE throttle_counters.hits + 1 END,
        window_start = GREATEST(throttle_counters.window_start, EXCLUDED.window_start)
    RETURNING hits, window_start
"""


def _redis_client():
    """The Redis client behind Django's cache, or None when the cache is not Redis."""
    if "redis" not in settings.CACHES["default"]["BACKEND"].lower():
        return None
    return cache._cache.get_client(write=True)


def count_hit(key: str, window: int, duration: int) -> int:
    """Add one to `key`'s counter for this window and return the new count (atomic)."""
    client = _redis_client()
    if client is not None:
        redis_key = cache.make_and_validate_key(f"throttle:{key}:{window}")
        pipe = client.pipeline(transaction=True)
        pipe.incr(redis_key)
        pipe.expire(redis_key, duration + 1)
        hits, _ = pipe.execute()
        return int(hits)
    with connection.cursor() as cursor:
        cursor.execute(_UPSERT_SQL, [key, window])
        hits, current = cursor.fetchone()
    return hits if current == window else 0  # a request from a window already over


class SharedScopedRateThrottle(ScopedRateThrottle):
    """`throttle_scope` rates from DEFAULT_THROTTLE_RATES, counted across workers and threads."""

    wait_seconds: float | None = None

    def allow_request(self, request, view) -> bool:
        self.scope = getattr(view, self.scope_attr, None)
        if not self.scope:
            return True
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        # The rate is part of the counter's name: a changed rate starts a fresh count, and a
        # count kept in one window length is never read in another.
        key = f"{key}:{self.num_requests}/{self.duration}"
        now = time.time()
        window = int(now // self.duration)
        try:
            hits = count_hit(key, window, self.duration)
        except Exception as exc:
            THROTTLE_FAIL_OPEN.labels(self.scope).inc()
            logger.warning("throttle %s: counter store unavailable, let through (%s)", self.scope, exc)
            return True
        if hits > self.num_requests:
            self.wait_seconds = max(1.0, (window + 1) * self.duration - now)
            return False
        return True

    def wait(self) -> float | None:
        return self.wait_seconds
