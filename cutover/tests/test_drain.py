"""Draining the mirror's outbox: in order, nothing lost while the KV store is down."""

import pytest
import redis

from cutover.drain import drain, lag_seconds
from cutover.models import KvOutbox
from kvmigrate.replit_server import ReplitDBServer
from kvmigrate.sources import RetryPolicy

pytestmark = pytest.mark.django_db

FAST = {"policy": RetryPolicy(tries=2, backoff=0.005, max_backoff=0.01, connect_timeout=0.5, read_timeout=2)}
REDIS_URL = "redis://127.0.0.1:6379/9"


def enqueue(*changes):
    for key, value in changes:
        KvOutbox.objects.create(key=key, value=value, domain="credits")


def test_drains_in_order_to_the_replit_database():
    with ReplitDBServer(limits=False) as server:
        enqueue(("user_credits:1", '"{\\"currentBalance\\":1}"'), ("user_credits:2", '"{}"'))
        enqueue(("user_credits:1", '"{\\"currentBalance\\":2}"'), ("user_credits:2", None))
        stats = drain(server.url, writer_options=FAST)
        assert (stats.written, stats.deleted) == (3, 1)
        assert server.store.get("user_credits:1") == '"{\\"currentBalance\\":2}"'
        assert server.store.get("user_credits:2") is None
    assert KvOutbox.objects.count() == 0
    assert lag_seconds() == 0


def test_store_down_then_back_loses_nothing():
    server = ReplitDBServer(limits=False).start()
    url, token, port = server.url, server.token, server.server_address[1]
    server.stop()  # the KV store is down
    enqueue(*[(f"user_credits:{n}", f'"{{\\"currentBalance\\":{n}}}"') for n in range(1, 6)])
    stats = drain(url, writer_options=FAST)
    assert stats.failures >= 1 and stats.written == 0
    assert KvOutbox.objects.count() == 5 and lag_seconds() > 0
    assert KvOutbox.objects.order_by("id").first().attempts >= 1
    with ReplitDBServer(port=port, token=token, limits=False) as back:
        stats = drain(url, writer_options=FAST)
        assert stats.written == 5
        assert [back.store.get(f"user_credits:{n}") for n in range(1, 6)] == [
            f'"{{\\"currentBalance\\":{n}}}"' for n in range(1, 6)
        ]
    assert KvOutbox.objects.count() == 0


def test_drains_to_redis():
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    try:
        enqueue(("user_tokens:7", '"{}"'), ("user_tokens:7", '"{\\"gmailEmail\\":\\"a@b.c\\"}"'))
        drain(REDIS_URL)
        assert client.get("user_tokens:7") == b'"{\\"gmailEmail\\":\\"a@b.c\\"}"'
    finally:
        client.flushdb()
        client.close()
