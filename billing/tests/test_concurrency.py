"""Concurrent deliveries of one event (Stripe retries overlap): handled once, credited once."""

from __future__ import annotations

import pytest

from billing import services
from billing.models import Subscription, WebhookEvent
from billing.testing import signed_payload
from billing.tests.conftest import event, invoice_object
from credits.models import CreditAccount, CreditTransaction
from tests.concurrency import run_concurrently

THREADS = 6


@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_of_one_invoice_event_credit_once(user):
    Subscription.objects.create(
        user=user, stripe_customer_id="cus_1", status="active", plan_type="ugly-duckling"
    )
    payload, header = signed_payload(event("invoice.paid", invoice_object("in_c")))
    delivered = run_concurrently(lambda _: services.record_event(payload=payload, sig_header=header), THREADS)
    outcomes, errors = delivered.results, delivered.errors

    assert errors == []
    assert sum(not o.duplicate for o in outcomes) == 1
    assert all(o.event.status == "processed" for o in outcomes)
    stored = WebhookEvent.objects.get()
    assert stored.attempts == 1
    assert CreditAccount.objects.get(user=user).balance == 5000
    assert CreditTransaction.objects.filter(user=user).count() == 1
