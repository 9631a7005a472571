"""Billing test helpers: the Stripe stand-in fixture and Stripe-shaped webhook objects."""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from billing.models import Subscription
from billing.testing import make_event, signed_payload, stripe_stand_in  # noqa: F401 - a fixture

WEBHOOK_URL = "/api/billing/webhook/"


def price_of(plan: str) -> str:
    return settings.BILLING_PLANS[plan]["stripe_price"]


def subscription_object(
    sub_id: str = "sub_1",
    customer: str = "cus_1",
    status: str = "active",
    plan: str = "ugly-duckling",
    *,
    price: str | None = None,
    start: int = 1_730_419_200,
    end: int = 1_733_011_200,
    cancel_at_period_end: bool = False,
    metadata: dict | None = None,
) -> dict:
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "cancel_at_period_end": cancel_at_period_end,
        "metadata": metadata or {},
        "items": {
            "object": "list",
            "data": [
                {
                    "id": f"si_{sub_id}",
                    "object": "subscription_item",
                    "price": {"id": price or price_of(plan), "object": "price", "lookup_key": None},
                    "quantity": 1,
                    # API 2025-03-31+: the period lives on the item.
                    "current_period_start": start,
                    "current_period_end": end,
                }
            ],
        },
    }


def invoice_object(
    invoice_id: str = "in_1",
    customer: str = "cus_1",
    subscription: str = "sub_1",
    plan: str = "ugly-duckling",
) -> dict:
    return {
        "id": invoice_id,
        "object": "invoice",
        "customer": customer,
        "status": "paid",
        "amount_paid": 1900,
        "currency": "usd",
        "billing_reason": "subscription_cycle",
        "attempt_count": 1,
        "parent": {"type": "subscription_details", "subscription_details": {"subscription": subscription}},
        "lines": {
            "object": "list",
            "data": [
                {"id": "il_1", "object": "line_item", "pricing": {"price_details": {"price": price_of(plan)}}}
            ],
        },
    }


def deliver(client, event: dict, *, header: str | None = None, secret: str | None = None):
    payload, signature = signed_payload(event, secret=secret)
    extra = {"HTTP_STRIPE_SIGNATURE": header if header is not None else signature}
    return client.post(WEBHOOK_URL, data=payload, content_type="application/json", **extra)


def event(event_type: str, obj: dict, *, created: int | None = None, event_id: str | None = None) -> dict:
    return make_event(event_type, obj, created=created or int(time.time()), event_id=event_id)


@pytest.fixture
def customer_row(user) -> Subscription:
    """The user after a first checkout: a Stripe customer and no subscription yet."""
    return Subscription.objects.create(user=user, stripe_customer_id="cus_1")
