"""Fixtures for kvmigrate's tests: a local Replit Database server, a Redis database, fast retries."""

from __future__ import annotations

import os

import pytest
import redis

from kvmigrate.replit_server import start_replit_server
from kvmigrate.sources import RetryPolicy

# Our own Redis database number (the suite shares the Redis server with other work): only it is flushed.
REDIS_TEST_URL = os.environ.get("KVMIGRATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/5")


@pytest.fixture
def replit_server():
    """A Replit Database server on a free port (Replit's limits on), stopped after the test."""
    _url, server = start_replit_server()
    yield server
    server.stop()


@pytest.fixture
def big_replit_server():
    """The same without Replit's limits, for stores of more than 5,000 keys."""
    _url, server = start_replit_server(limits=False)
    yield server
    server.stop()


@pytest.fixture
def redis_url():
    client = redis.Redis.from_url(REDIS_TEST_URL)
    client.flushdb()
    yield REDIS_TEST_URL
    client.flushdb()
    client.close()


@pytest.fixture
def fast_retries() -> RetryPolicy:
    """Backoff in milliseconds, so retry tests stay fast."""
    return RetryPolicy(tries=5, backoff=0.005, max_backoff=0.02, read_timeout=5)
