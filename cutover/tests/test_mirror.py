"""The KV mirror: committed changes land in the outbox in the platform's layout and reach the store."""

import pytest

from billing.models import Subscription
from credits import services as credit_services
from cutover.drain import drain
from cutover.models import KvOutbox
from gmail import services as gmail_services
from kvmigrate.codec import decode_value
from kvmigrate.replit_server import ReplitDBServer
from notifications import services as notification_services

pytestmark = pytest.mark.django_db


@pytest.fixture
def mirror_on(settings):
    settings.KV_MIRROR = frozenset({"credits", "billing", "gmail", "notifications"})


def last_record(key: str) -> dict | None:
    row = KvOutbox.objects.filter(key=key).order_by("-id").first()
    return decode_value(row.value) if row and row.value is not None else None


def test_mirror_off_records_nothing(user):
    credit_services.grant(user=user, amount=100, reason="welcome")
    assert not KvOutbox.objects.exists()


def test_credit_change_queues_the_full_record(mirror_on, user):
    credit_services.grant(user=user, amount=100, reason="welcome")
    credit_services.deduct(user=user, operation="company_search")
    rows = list(KvOutbox.objects.filter(key=f"user_credits:{user.id}"))
    assert len(rows) == 2
    record = last_record(f"user_credits:{user.id}")
    assert record["currentBalance"] == 90
    assert [t["type"] for t in record["transactions"]][-1] == "debit"


def test_flags_subscription_and_tokens_are_mirrored(mirror_on, user):
    notification_services.mark_shown(user=user, notification_id=2)
    Subscription.objects.create(
        user=user, status="active", plan_type="ugly-duckling", stripe_customer_id="cus_1"
    )
    record = last_record(f"user_credits:{user.id}")
    assert record["notifications"][2] == 1
    assert record["subscriptionStatus"] == "active" and record["currentPlan"] == "ugly-duckling"
    gmail_services.store_tokens(
        user=user, access_token="ya29.secret", refresh_token="1//refresh", expires_at=None,
        scopes=["https://www.googleapis.com/auth/gmail.modify"], email="x@example.com", display_name="X",
    )  # fmt: skip
    tokens = last_record(f"user_tokens:{user.id}")
    assert tokens["gmailRefreshToken"] == "1//refresh" and tokens["gmailEmail"] == "x@example.com"


def test_a_rolled_back_change_is_not_mirrored(mirror_on, user):
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        credit_services.grant(user=user, amount=100, reason="welcome")
        raise RuntimeError
    assert not KvOutbox.objects.exists()


def test_per_domain_switch(settings, user):
    settings.KV_MIRROR = frozenset({"notifications"})
    credit_services.grant(user=user, amount=100, reason="welcome")
    assert not KvOutbox.objects.exists()
    notification_services.mark_shown(user=user, notification_id=1)
    assert KvOutbox.objects.filter(domain="notifications").count() == 1


def test_api_writes_reach_the_store_in_order(mirror_on, user, user_client):
    credit_services.grant(user=user, amount=1000, reason="welcome")
    for n in range(3):
        response = user_client.post(
            "/api/credits/deduct/", {"operation": "company_search", "idempotency_key": f"k{n}"}
        )
        assert response.status_code == 200
    with ReplitDBServer(limits=False) as server:
        stats = drain(server.url)
        assert stats.written == 4
        stored = decode_value(server.store.get(f"user_credits:{user.id}"))
    assert stored["currentBalance"] == 970
    assert len(stored["transactions"]) == 4
