"""The Stripe webhook: verification, store-before-act, once-only handling, ordering, failures."""

from __future__ import annotations

import json

import pytest
import stripe
from django.test import Client

from billing import services
from billing.models import Subscription, WebhookEvent
from billing.testing import signed_payload
from billing.tests.conftest import (
    WEBHOOK_URL,
    deliver,
    event,
    invoice_line,
    invoice_object,
    subscription_object,
)
from credits.models import CreditAccount, CreditTransaction

pytestmark = pytest.mark.django_db

T = 1_730_500_000


def balance(user) -> int:
    account = CreditAccount.objects.filter(user=user).first()
    return account.balance if account else 0


# --- verification -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "header",
    [
        None,  # missing
        "",
        "t=1,v1=deadbeef",
        "garbage",
    ],
)
def test_bad_or_missing_signature_is_400_and_nothing_is_stored(api_client, customer_row, header):
    evt = event("customer.subscription.updated", subscription_object())
    payload = json.dumps(evt).encode()
    extra = {} if header is None else {"HTTP_STRIPE_SIGNATURE": header}
    response = api_client.post(WEBHOOK_URL, data=payload, content_type="application/json", **extra)
    assert response.status_code == 400
    body = response.json()
    assert (
        body["code"] == "invalid_webhook" and body["status"] == 400 and "signature" in body["detail"].lower()
    )
    assert not WebhookEvent.objects.exists()
    assert Subscription.objects.get().status == "none"


def test_signature_with_another_secret_is_refused(api_client, customer_row):
    response = deliver(api_client, event("invoice.paid", invoice_object()), secret="whsec_not_ours")
    assert response.status_code == 400
    assert not WebhookEvent.objects.exists() and balance(customer_row.user) == 0


def test_tampered_payload_is_refused(api_client, customer_row):
    evt = event("invoice.paid", invoice_object())
    _, header = signed_payload(evt)
    evt["data"]["object"]["lines"]["data"][0]["pricing"]["price_details"]["price"] = "price_other"
    response = api_client.post(
        WEBHOOK_URL,
        data=json.dumps(evt).encode(),
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=header,
    )
    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


def test_a_signature_older_than_the_tolerance_is_refused(api_client, settings):
    evt = event("invoice.paid", invoice_object())
    payload = json.dumps(evt)
    header = stripe.WebhookSignature.generate_signature_header(
        payload, settings.STRIPE_WEBHOOK_SECRET, timestamp=T - 3600
    )
    response = api_client.post(
        WEBHOOK_URL, data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )
    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


def test_signed_payload_that_is_not_an_event_is_refused(api_client, settings):
    payload = json.dumps({"hello": "world"})
    header = stripe.WebhookSignature.generate_signature_header(payload, settings.STRIPE_WEBHOOK_SECRET)
    response = api_client.post(
        WEBHOOK_URL, data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )
    assert response.status_code == 400 and response.json()["code"] == "invalid_webhook"
    assert not WebhookEvent.objects.exists()


def test_webhook_needs_no_session_and_no_csrf_token(user, customer_row):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = deliver(client, event("customer.subscription.updated", subscription_object(), created=T))
    assert response.status_code == 200, response.content


# --- once only ----------------------------------------------------------------------------
def test_the_same_event_twice_is_handled_once(api_client, customer_row):
    evt = event("customer.subscription.updated", subscription_object(status="active"), created=T)
    first = deliver(api_client, evt)
    assert first.status_code == 200
    assert first.json() == {
        "received": True,
        "event_id": evt["id"],
        "status": "processed",
        "duplicate": False,
    }
    # Staff change the row meanwhile: a replay must not re-apply the event over it.
    Subscription.objects.filter(pk=customer_row.pk).update(status="past_due")
    second = deliver(api_client, evt)
    assert second.status_code == 200 and second.json()["duplicate"] is True
    stored = WebhookEvent.objects.get()
    assert stored.attempts == 1 and stored.status == "processed"
    assert Subscription.objects.get().status == "past_due"


def test_invoice_paid_twice_grants_credits_once(api_client, customer_row):
    deliver(api_client, event("customer.subscription.created", subscription_object(), created=T))
    paid = event("invoice.paid", invoice_object("in_42"), created=T + 5)
    assert deliver(api_client, paid).status_code == 200
    assert deliver(api_client, paid).json()["duplicate"] is True
    # Stripe may also send a second, distinct event for the same invoice: the invoice id decides.
    again = event("invoice.paid", invoice_object("in_42"), created=T + 6)
    assert deliver(api_client, again).json()["status"] == "processed"
    user = customer_row.user
    assert balance(user) == 5000
    entry = CreditTransaction.objects.get(user=user)
    assert (entry.amount, entry.type, entry.idempotency_key) == (5000, "purchase", "stripe-invoice:in_42")
    assert entry.metadata["stripe_event_id"] == paid["id"]
    assert "already credited" in WebhookEvent.objects.get(event_id=again["id"]).note


def test_each_paid_invoice_grants_the_plans_allowance(api_client, customer_row):
    deliver(
        api_client,
        event("customer.subscription.created", subscription_object(plan="duckin-awesome"), created=T),
    )
    deliver(api_client, event("invoice.paid", invoice_object("in_1", plan="duckin-awesome"), created=T + 1))
    deliver(api_client, event("invoice.paid", invoice_object("in_2", plan="duckin-awesome"), created=T + 2))
    assert balance(customer_row.user) == 30000


# --- ordering -----------------------------------------------------------------------------
def test_an_older_subscription_update_never_overwrites_a_newer_one(api_client, customer_row):
    newer = event("customer.subscription.updated", subscription_object(status="past_due"), created=T + 60)
    older = event(
        "customer.subscription.updated",
        subscription_object(status="active", plan="duckin-awesome", cancel_at_period_end=True),
        created=T,
    )
    deliver(api_client, newer)
    response = deliver(api_client, older)
    assert response.status_code == 200 and response.json()["status"] == "processed"
    row = Subscription.objects.get()
    assert (row.status, row.plan_type, row.cancel_at_period_end) == ("past_due", "ugly-duckling", False)
    assert row.stripe_event_created.timestamp() == T + 60
    assert WebhookEvent.objects.get(event_id=older["id"]).note.startswith("stale")


def test_a_same_second_created_event_after_an_update_is_stale(api_client, customer_row):
    deliver(
        api_client, event("customer.subscription.updated", subscription_object(status="active"), created=T)
    )
    deliver(
        api_client,
        event("customer.subscription.created", subscription_object(status="incomplete"), created=T),
    )
    assert Subscription.objects.get().status == "active"


def test_deleted_then_an_older_update_stays_canceled(api_client, customer_row):
    deliver(api_client, event("customer.subscription.created", subscription_object(), created=T))
    deliver(
        api_client,
        event("customer.subscription.deleted", subscription_object(status="canceled"), created=T + 10),
    )
    deliver(
        api_client,
        event("customer.subscription.updated", subscription_object(status="active"), created=T + 10),
    )
    deliver(
        api_client,
        event("customer.subscription.updated", subscription_object(status="active"), created=T + 5),
    )
    assert Subscription.objects.get().status == "canceled"


def test_subscription_fields_are_recorded(api_client, customer_row):
    sub = subscription_object(status="trialing", plan="duckin-awesome", cancel_at_period_end=True)
    deliver(api_client, event("customer.subscription.created", sub, created=T))
    row = Subscription.objects.get()
    assert (row.stripe_subscription_id, row.status, row.plan_type) == ("sub_1", "trialing", "duckin-awesome")
    assert row.current_period_start.timestamp() == 1_730_419_200
    assert row.current_period_end.timestamp() == 1_733_011_200
    assert row.cancel_at_period_end is True


def test_an_unknown_price_is_kept_as_the_plan_name(api_client, customer_row):
    sub = subscription_object(price="price_legacy_gold")
    deliver(api_client, event("customer.subscription.created", sub, created=T))
    assert Subscription.objects.get().plan_type == "price_legacy_gold"


def test_a_dead_old_subscription_does_not_cancel_the_live_one(api_client, customer_row):
    deliver(api_client, event("customer.subscription.created", subscription_object("sub_new"), created=T))
    old = subscription_object("sub_old", status="canceled")
    response = deliver(api_client, event("customer.subscription.deleted", old, created=T + 5))
    assert response.json()["status"] == "processed"
    row = Subscription.objects.get()
    assert (row.stripe_subscription_id, row.status) == ("sub_new", "active")


def test_subscription_found_by_user_metadata_when_no_row_exists(api_client, user):
    sub = subscription_object("sub_9", "cus_9", metadata={"user_id": str(user.pk), "plan": "ugly-duckling"})
    assert deliver(api_client, event("customer.subscription.created", sub, created=T)).status_code == 200
    row = Subscription.objects.get(user=user)
    assert (row.stripe_customer_id, row.stripe_subscription_id, row.status) == ("cus_9", "sub_9", "active")


# --- the other event types ----------------------------------------------------------------
def test_checkout_completed_links_the_subscription(api_client, customer_row):
    session = {
        "id": "cs_test_1",
        "object": "checkout.session",
        "mode": "subscription",
        "customer": "cus_1",
        "subscription": "sub_77",
        "client_reference_id": str(customer_row.user_id),
        "metadata": {"user_id": str(customer_row.user_id), "plan": "duckin-awesome"},
        "payment_status": "paid",
    }
    assert deliver(api_client, event("checkout.session.completed", session, created=T)).status_code == 200
    row = Subscription.objects.get()
    assert (row.stripe_subscription_id, row.plan_type) == ("sub_77", "duckin-awesome")
    assert row.status == "none"  # the subscription's own events carry its status
    assert row.metadata["last_checkout_session"]["id"] == "cs_test_1"


def test_payment_failed_marks_past_due_and_records_the_failure(api_client, customer_row):
    deliver(api_client, event("customer.subscription.created", subscription_object(), created=T))
    failed = invoice_object("in_9")
    failed.update(status="open", attempt_count=2, amount_due=1900, next_payment_attempt=T + 86400)
    assert deliver(api_client, event("invoice.payment_failed", failed, created=T + 10)).status_code == 200
    row = Subscription.objects.get()
    assert row.status == "past_due"
    assert row.metadata["last_payment_failure"]["invoice_id"] == "in_9"
    assert row.metadata["last_payment_failure"]["attempt_count"] == 2
    assert balance(customer_row.user) == 0


def test_an_older_payment_failure_is_recorded_but_keeps_a_newer_status(api_client, customer_row):
    deliver(api_client, event("customer.subscription.updated", subscription_object(), created=T + 100))
    deliver(api_client, event("invoice.payment_failed", invoice_object("in_9"), created=T))
    row = Subscription.objects.get()
    assert row.status == "active" and row.metadata["last_payment_failure"]["invoice_id"] == "in_9"


def test_unknown_event_type_is_stored_and_acknowledged(api_client):
    evt = event("customer.tax_id.created", {"id": "txi_1", "object": "tax_id"})
    response = deliver(api_client, evt)
    assert response.status_code == 200 and response.json()["status"] == "ignored"
    stored = WebhookEvent.objects.get()
    assert (stored.event_id, stored.type, stored.status) == (evt["id"], "customer.tax_id.created", "ignored")
    assert stored.payload == evt


# --- failures -----------------------------------------------------------------------------
def test_a_failing_handler_leaves_the_event_failed_and_reprocessable(api_client, customer_row):
    deliver(api_client, event("customer.subscription.created", subscription_object(), created=T))
    paid = invoice_object("in_5", lines=[invoice_line(price="price_unmapped", amount=2500)])
    response = deliver(api_client, event("invoice.paid", paid, created=T + 1))
    assert response.status_code == 500 and response.json()["code"] == "webhook_handler_failed"
    stored = WebhookEvent.objects.get(type="invoice.paid")
    assert stored.status == "failed" and stored.attempts == 1
    assert "'price_unmapped'" in stored.error and "is not a known plan" in stored.error
    # The cause is fixed (staff map the price); staff reprocess it.
    services.map_price(stripe_price_id="price_unmapped", plan="ugly-duckling")
    result = services.reprocess_event(event=stored)
    assert result.status == "processed" and result.attempts == 2 and result.error == ""
    assert balance(customer_row.user) == 5000
    with pytest.raises(services.NotReprocessable):
        services.reprocess_event(event=result)


def test_stripe_redelivering_a_failed_event_retries_it(api_client, customer_row):
    paid = invoice_object("in_6", lines=[invoice_line(price="price_late", amount=2500)])
    evt = event("invoice.paid", paid, created=T)
    assert deliver(api_client, evt).status_code == 500
    services.map_price(stripe_price_id="price_late", plan="ugly-duckling")
    response = deliver(api_client, evt)
    assert response.status_code == 200 and response.json()["status"] == "processed"
    assert WebhookEvent.objects.get().attempts == 2 and balance(customer_row.user) == 5000


def test_a_failed_handler_writes_nothing_but_the_event_status(api_client, customer_row, monkeypatch):
    from billing import webhook_handlers

    def half_then_crash(obj, ctx):
        Subscription.objects.filter(pk=customer_row.pk).update(status="active", plan_type="half-written")
        raise RuntimeError("boom after a write")

    monkeypatch.setitem(webhook_handlers.HANDLERS, "customer.subscription.updated", half_then_crash)
    response = deliver(api_client, event("customer.subscription.updated", subscription_object(), created=T))
    assert response.status_code == 500
    row = Subscription.objects.get()
    assert (row.status, row.plan_type) == ("none", "")
    stored = WebhookEvent.objects.get()
    assert stored.status == "failed" and stored.error == "RuntimeError: boom after a write"


def test_an_unknown_plan_fails_until_staff_map_it(api_client, customer_row):
    deliver(
        api_client,
        event("customer.subscription.created", subscription_object(price="price_legacy"), created=T),
    )
    paid = invoice_object("in_7")
    paid["lines"]["data"][0]["pricing"]["price_details"]["price"] = "price_legacy"
    assert deliver(api_client, event("invoice.paid", paid, created=T + 1)).status_code == 500
    stored = WebhookEvent.objects.get(type="invoice.paid")
    assert "is not a known plan" in stored.error and balance(customer_row.user) == 0
    services.map_price(stripe_price_id="price_legacy", plan="duckin-awesome")
    assert Subscription.objects.get().plan_type == "duckin-awesome"  # the mapping applies at once
    assert services.reprocess_event(event=stored).status == "processed"
    assert balance(customer_row.user) == 15000


def test_an_ignored_event_cannot_be_reprocessed(api_client):
    deliver(api_client, event("charge.refunded", {"id": "ch_1", "object": "charge"}))
    with pytest.raises(services.NotReprocessable):
        services.reprocess_event(event=WebhookEvent.objects.get())


# --- metrics ------------------------------------------------------------------------------
def test_webhook_events_are_counted_by_type_and_result(api_client, customer_row):
    from fivedocks.metrics import WEBHOOK_EVENTS

    def count(type_: str, result: str) -> float:
        return WEBHOOK_EVENTS.labels(type_, result)._value.get()

    evt = event("customer.subscription.updated", subscription_object(status="active"), created=T + 50)
    before = (count(evt["type"], "processed"), count(evt["type"], "duplicate"), count("unknown", "invalid"))
    deliver(api_client, evt)
    deliver(api_client, evt)
    api_client.post(
        WEBHOOK_URL, data=b"{}", content_type="application/json", HTTP_STRIPE_SIGNATURE="t=1,v1=x"
    )
    after = (count(evt["type"], "processed"), count(evt["type"], "duplicate"), count("unknown", "invalid"))
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1]


def test_a_client_reference_id_alone_links_nobody(api_client, user):
    """Any product on the Stripe account may set `client_reference_id`: fivedocks' checkouts also
    write `user_id` in the metadata, and only that (or the platform's keys) is trusted."""
    session = {
        "id": "cs_other_product",
        "object": "checkout.session",
        "mode": "subscription",
        "customer": "cus_other_product",
        "subscription": "sub_other_product",
        "client_reference_id": str(user.pk),
        "metadata": {},
    }
    response = deliver(api_client, event("checkout.session.completed", session, created=T))
    assert response.status_code == 200 and response.json()["status"] == "unmatched"
    assert not Subscription.objects.filter(user=user).exists()
