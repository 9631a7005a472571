"""Draining the mirror's outbox: committed state rendered at drain time, coalesced, nothing lost."""

import pytest
import redis

from accounts.tests.factories import UserFactory
from credits import services as credit_services
from cutover.drain import drain, lag_seconds
from cutover.models import KvOutbox
from kvmigrate.codec import decode_value
from kvmigrate.models import MigratedRecord
from kvmigrate.replit_server import ReplitDBServer
from kvmigrate.sources import RetryPolicy

pytestmark = pytest.mark.django_db

FAST = {"policy": RetryPolicy(tries=2, backoff=0.005, max_backoff=0.01, connect_timeout=0.5, read_timeout=2)}
REDIS_URL = "redis://127.0.0.1:6379/9"


@pytest.fixture(autouse=True)
def mirror_on(settings):
    settings.KV_MIRROR = frozenset({"credits", "billing", "gmail", "notifications"})


def balance_in(store, user) -> int:
    return decode_value(store.get(f"user_credits:{user.pk}"))["currentBalance"]


def test_many_changes_of_one_key_coalesce_into_one_write_of_the_latest_state():
    user = UserFactory()
    credit_services.grant(user=user, amount=100, reason="welcome")
    for _ in range(4):
        credit_services.deduct(user=user, operation="company_search")
    assert KvOutbox.objects.count() == 5
    with ReplitDBServer(limits=False) as server:
        stats = drain(server.url, writer_options=FAST)
        assert (stats.changes, stats.written, stats.deleted) == (5, 1, 0)
        assert balance_in(server.store, user) == 60
        assert len(decode_value(server.store.get(f"user_credits:{user.pk}"))["transactions"]) == 5
    assert KvOutbox.objects.count() == 0
    assert lag_seconds() == 0
    # What the mirror wrote is remembered as moved: a delta run skips it unchanged.
    assert MigratedRecord.objects.filter(key=f"user_credits:{user.pk}").exists()


def test_data_gone_deletes_the_key():
    from gmail import services as gmail_services
    from gmail.models import GmailToken

    user = UserFactory()
    gmail_services.store_tokens(
        user=user,
        access_token="ya29.x",
        refresh_token="1//r",
        expires_at=None,
        scopes=[],
        email="",
        display_name="",
    )
    with ReplitDBServer(limits=False) as server:
        drain(server.url, writer_options=FAST)
        assert server.store.get(f"user_tokens:{user.pk}") is not None
        GmailToken.objects.filter(user=user).delete()
        KvOutbox.objects.create(
            key=f"user_tokens:{user.pk}", domain="gmail", user_id=user.pk, created_at=_now()
        )
        stats = drain(server.url, writer_options=FAST)
        assert stats.deleted == 1
        assert server.store.get(f"user_tokens:{user.pk}") is None


def _now():
    from django.utils import timezone

    return timezone.now()


def test_store_down_then_back_loses_nothing():
    users = UserFactory.create_batch(5)
    server = ReplitDBServer(limits=False).start()
    url, token, port = server.url, server.token, server.server_address[1]
    server.stop()  # the KV store is down
    for n, user in enumerate(users, start=1):
        credit_services.grant(user=user, amount=n, reason="welcome")
    stats = drain(url, writer_options=FAST)
    assert stats.failures >= 1 and stats.written == 0
    assert KvOutbox.objects.count() == 5 and lag_seconds() > 0
    assert KvOutbox.objects.order_by("id").first().attempts >= 1
    with ReplitDBServer(port=port, token=token, limits=False) as back:
        stats = drain(url, writer_options=FAST)
        assert stats.written == 5
        assert [balance_in(back.store, user) for user in users] == [1, 2, 3, 4, 5]
    assert KvOutbox.objects.count() == 0


def test_drains_to_redis():
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    user = UserFactory()
    try:
        credit_services.grant(user=user, amount=7, reason="welcome")
        drain(REDIS_URL)
        assert decode_value(client.get(f"user_credits:{user.pk}").decode())["currentBalance"] == 7
    finally:
        client.flushdb()
        client.close()
