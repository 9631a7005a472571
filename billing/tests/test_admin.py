"""Staff screens: subscription filters and search, plan mapping, read-only events, reprocess."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from accounts.tests.factories import UserFactory
from billing.models import PriceMapping, Subscription, WebhookEvent
from billing.tests.conftest import deliver, event, invoice_line, invoice_object, subscription_object
from credits.models import CreditAccount
from credits.tests.factories import CreditAccountFactory

pytestmark = pytest.mark.django_db

LIST = "/admin/billing/subscription/"


@pytest.fixture
def admin_client(staff_user):
    client = Client()
    client.force_login(staff_user)
    return client


def rows_of(page) -> str:
    return page.text.split("<tbody>")[1]


@pytest.fixture
def subscribers():
    soon = timezone.now() + dt.timedelta(days=3)
    far = timezone.now() + dt.timedelta(days=300)
    a = UserFactory(email="alice@example.com")
    b = UserFactory(email="bob@example.com")
    c = UserFactory(email="carol@example.com")
    Subscription.objects.create(
        user=a,
        stripe_customer_id="cus_alice",
        status="active",
        plan_type="ugly-duckling",
        current_period_end=soon,
    )
    Subscription.objects.create(
        user=b,
        stripe_customer_id="cus_bob",
        status="past_due",
        plan_type="duckin-awesome",
        current_period_end=far,
    )
    Subscription.objects.create(
        user=c, stripe_customer_id="cus_carol", status="active", plan_type="gold-legacy"
    )
    CreditAccountFactory(user=a, balance=150)
    CreditAccountFactory(user=b, balance=5000)
    CreditAccountFactory(user=c, balance=2000)
    return a, b, c


def test_subscription_filters_and_search(admin_client, subscribers):
    def emails(**query) -> set[str]:
        body = rows_of(admin_client.get(LIST, query))
        return {e for e in ("alice", "bob", "carol") if f"{e}@example.com" in body}

    assert emails() == {"alice", "bob", "carol"}
    assert emails(status="past_due") == {"bob"}
    assert emails(plan="ugly-duckling") == {"alice"}
    assert emails(plan="gold-legacy") == {"carol"}
    assert emails(q="cus_bob") == {"bob"}
    assert emails(q="carol@") == {"carol"}
    assert emails(active_credits_above="100") == {"alice", "carol"}
    assert emails(active_credits_above="1000") == {"carol"}
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    start, end = today.isoformat(), (today + dt.timedelta(days=7)).isoformat()
    assert emails(current_period_end__gte=start, current_period_end__lt=end) == {"alice"}
    page = admin_client.get(LIST)
    assert "gold-legacy (not in the catalogue)" in page.text


def test_only_the_plan_name_is_editable_and_goes_through_the_service(admin_client, subscribers):
    row = Subscription.objects.get(stripe_customer_id="cus_carol")
    url = f"{LIST}{row.pk}/change/"
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(url, {"plan_type": "duckin-awesome", "status": "canceled"})
    assert response.status_code == 302
    row.refresh_from_db()
    assert (row.plan_type, row.status) == ("duckin-awesome", "active")
    assert admin_client.get(f"{LIST}add/").status_code == 403
    assert admin_client.post(f"{LIST}{row.pk}/delete/").status_code == 403


def test_webhook_events_are_read_only_and_failed_ones_reprocess(admin_client, api_client, customer_row):
    deliver(api_client, event("customer.subscription.created", subscription_object(), created=1_730_500_000))
    paid = invoice_object("in_1", lines=[invoice_line(price="price_staff_only", amount=2500)])
    deliver(api_client, event("invoice.paid", paid))
    deliver(api_client, event("charge.refunded", {"id": "ch_1", "object": "charge"}))
    failed = WebhookEvent.objects.get(type="invoice.paid")
    assert failed.status == "failed"
    page = admin_client.get(f"/admin/billing/webhookevent/{failed.pk}/change/")
    assert page.status_code == 200 and "is not a known plan" in page.text and "in_1" in page.text
    assert admin_client.get("/admin/billing/webhookevent/add/").status_code == 403

    PriceMapping.objects.create(stripe_price_id="price_staff_only", plan="ugly-duckling")
    response = admin_client.post(
        "/admin/billing/webhookevent/",
        {
            "action": "reprocess",
            "_selected_action": [
                str(e.pk) for e in WebhookEvent.objects.exclude(type__startswith="customer.")
            ],
        },
        follow=True,
    )
    assert response.status_code == 200
    assert "Reprocessed 1; failed or unmatched again 0; skipped 1" in response.text
    failed.refresh_from_db()
    assert failed.status == "processed"
    assert CreditAccount.objects.get(user=customer_row.user).balance == 5000
