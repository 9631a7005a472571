"""Cache backends: Redis against the machine's Redis (db 7, this test's own keys only), local memory."""

import uuid

import environ

from fivedocks.cache_backends import CountingLocMemCache, CountingRedisCache, ReusingRedisCacheClient
from fivedocks.config import LOCMEM_MAX_ENTRIES, cache_from_url

REDIS_URL = "redis://127.0.0.1:6379/7"


def test_redis_cache_reuses_one_client_and_round_trips():
    cache = CountingRedisCache(REDIS_URL, {"KEY_PREFIX": f"fd-test-{uuid.uuid4().hex}"})
    assert isinstance(cache._cache, ReusingRedisCacheClient)
    key = "credits:balance:42"
    try:
        assert cache.get(key) is None
        cache.set(key, {"balance": 7}, 30)
        assert cache.get(key) == {"balance": 7}
        assert cache.get_many([key, "missing"]) == {key: {"balance": 7}}
        assert cache.delete(key) is True
        assert cache.get(key, "gone") == "gone"
        client = cache._cache.get_client(key)
        assert cache._cache.get_client("another") is client
        assert cache._cache.get_client(key, write=True) is client  # one server: one pool, one client
    finally:
        cache.delete(key)


def test_local_memory_cache_holds_a_balance_per_user_for_many_users():
    # Django's default (300 entries) made 1,000 users' balances evict each other.
    config = cache_from_url(environ.Env(), f"locmemcache://test-{uuid.uuid4().hex}")
    assert config["BACKEND"] == "fivedocks.cache_backends.CountingLocMemCache"
    assert config["OPTIONS"]["MAX_ENTRIES"] == LOCMEM_MAX_ENTRIES
    cache = CountingLocMemCache(config["LOCATION"], {"OPTIONS": config["OPTIONS"]})
    keys = [f"credits:balance:{i}" for i in range(5000)]
    try:
        cache.set_many({key: (1, 0, 0, False, None, 0) for key in keys})
        assert len(cache.get_many(keys)) == len(keys)
    finally:
        cache.clear()


def test_local_memory_cache_holds_every_entry_of_10000_active_users():
    """bench/http_balance.py's realistic pattern: 10,000 users, each with a balance entry, a
    credential entry (token -> user id) and cachalot's cached user row in every worker. None may
    be culled, or the steady-state hit rate falls with the number of users."""
    config = cache_from_url(environ.Env(), f"locmemcache://test-{uuid.uuid4().hex}")
    cache = CountingLocMemCache(config["LOCATION"], {"OPTIONS": config["OPTIONS"]})
    users = range(10_000)
    families = ["credits:balance:{}", "auth:credential:{:040x}", "cachalot-user-row-{}"]
    keys = [family.format(user) for user in users for family in families]
    try:
        for start in range(0, len(keys), 1000):  # filled as requests fill it, a few at a time
            cache.set_many({key: (1, 0, 0, False, None, 0) for key in keys[start : start + 1000]})
        assert len(cache.get_many(keys)) == len(keys) == 30_000
    finally:
        cache.clear()


def test_cache_url_may_set_its_own_limit_and_redis_gets_none():
    assert cache_from_url(environ.Env(), "locmemcache://x?max_entries=500")["OPTIONS"]["MAX_ENTRIES"] == 500
    assert "MAX_ENTRIES" not in cache_from_url(environ.Env(), REDIS_URL).get("OPTIONS", {})
