"""The KV mirror: every domain's committed writes record their key; kvmirror renders and writes them."""

import pytest
from django.db import transaction

from billing import services as billing_services
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


@pytest.fixture
def store():
    with ReplitDBServer(limits=False) as server:
        yield server


def drained(store, key: str) -> dict | None:
    drain(store.url)
    raw = store.store.get(key)
    return decode_value(raw) if raw is not None else None


def test_mirror_off_records_nothing(user):
    credit_services.grant(user=user, amount=100, reason="welcome")
    assert not KvOutbox.objects.exists()


def test_the_writer_records_only_which_key_changed(mirror_on, user):
    credit_services.grant(user=user, amount=100, reason="welcome")
    credit_services.deduct(user=user, operation="company_search")
    rows = list(KvOutbox.objects.values_list("key", "domain", "user_id"))
    assert rows == [(f"user_credits:{user.pk}", "credits", user.pk)] * 2


def test_every_domain_reaches_the_store(mirror_on, user, store):
    notification_services.mark_shown(user=user, notification_id=2)
    sub = Subscription.objects.create(
        user=user, status="active", plan_type="ugly-duckling", stripe_customer_id="cus_1"
    )
    billing_services.set_plan_type(subscription=sub, plan_type="duckin-awesome")
    record = drained(store, f"user_credits:{user.pk}")
    assert record["notifications"][2] == 1
    assert record["subscriptionStatus"] == "active" and record["currentPlan"] == "duckin-awesome"
    gmail_services.store_tokens(
        user=user, access_token="ya29.secret", refresh_token="1//refresh", expires_at=None,
        scopes=["https://www.googleapis.com/auth/gmail.modify"], email="x@example.com", display_name="X",
    )  # fmt: skip
    tokens = drained(store, f"user_tokens:{user.pk}")
    assert tokens["gmailRefreshToken"] == "1//refresh" and tokens["gmailEmail"] == "x@example.com"


def test_a_field_written_after_the_change_is_recorded_is_still_mirrored(mirror_on, user, store):
    """The monthly top-up sets last_top_up after its grant: the drain renders the committed state."""
    from datetime import UTC, datetime

    from credits.models import CreditAccount

    credit_services.ensure_account(user_id=user.pk)
    CreditAccount.objects.filter(user=user).update(created_at=datetime(2020, 1, 1, tzinfo=UTC))
    credit_services.monthly_top_up(user=user)
    record = drained(store, f"user_credits:{user.pk}")
    last_top_up = CreditAccount.objects.get(user=user).last_top_up
    assert record["lastTopUp"] == int(last_top_up.timestamp() * 1000) and record["currentBalance"] == 250


def test_a_rolled_back_change_is_not_mirrored(mirror_on, user):
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


def test_api_writes_reach_the_store_in_order(mirror_on, user, user_client, store):
    credit_services.grant(user=user, amount=1000, reason="welcome")
    for n in range(3):
        response = user_client.post(
            "/api/credits/deduct/", {"operation": "company_search", "idempotency_key": f"k{n}"}
        )
        assert response.status_code == 200
    stored = drained(store, f"user_credits:{user.pk}")
    assert stored["currentBalance"] == 970
    assert len(stored["transactions"]) == 4
    assert KvOutbox.objects.count() == 0
