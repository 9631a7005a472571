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


# Stripe's API versions before and after 2025-03-31 ("basil") deliver different layouts.
CLASSIC, BASIL = "classic", "basil"
LAYOUTS = (CLASSIC, BASIL)
API_VERSIONS = {CLASSIC: "2024-06-20", BASIL: "2025-03-31.basil"}
# Monthly prices (cents) of the catalogue's plans, for Stripe-like amounts.
PRICE_CENTS = {"ugly-duckling": 1900, "duckin-awesome": 4900}
PERIOD_START, PERIOD_END = 1_730_419_200, 1_733_011_200


def subscription_object(
    sub_id: str = "sub_1",
    customer: str = "cus_1",
    status: str = "active",
    plan: str = "ugly-duckling",
    *,
    price: str | None = None,
    start: int = PERIOD_START,
    end: int = PERIOD_END,
    cancel_at_period_end: bool = False,
    cancel_at: int | None = None,
    metadata: dict | None = None,
    layout: str = BASIL,
) -> dict:
    item = {
        "id": f"si_{sub_id}",
        "object": "subscription_item",
        "price": {"id": price or price_of(plan), "object": "price", "lookup_key": None},
        "quantity": 1,
    }
    subscription = {
        "id": sub_id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "cancel_at_period_end": cancel_at_period_end,
        "cancel_at": cancel_at,
        "canceled_at": None,
        "metadata": metadata or {},
        "items": {"object": "list", "data": [item]},
    }
    if layout == BASIL:  # API 2025-03-31+: the period lives on the item.
        item.update(current_period_start=start, current_period_end=end)
        subscription["billing_mode"] = {"type": "flexible"}
    else:
        subscription.update(current_period_start=start, current_period_end=end)
    return subscription


def invoice_line(
    plan: str = "ugly-duckling",
    amount: int | None = None,
    *,
    price: str | None = None,
    proration: bool = False,
    subscription: str | None = "sub_1",
    start: int = PERIOD_START,
    end: int = PERIOD_END,
    line_id: str | None = None,
    layout: str = BASIL,
) -> dict:
    price_id = price or price_of(plan)
    line = {
        "id": line_id or f"il_{price_id}_{amount}_{int(proration)}",
        "object": "line_item",
        "amount": PRICE_CENTS.get(plan, 1000) if amount is None else amount,
        "currency": "usd",
        "period": {"start": start, "end": end},
        "quantity": 1,
    }
    if layout == BASIL:
        kind = "invoice_item_details" if proration else "subscription_item_details"
        line["pricing"] = {"type": "price_details", "price_details": {"price": price_id, "product": "prod_1"}}
        line["parent"] = {
            "type": kind,
            kind: {"proration": proration, "subscription": subscription, "invoice_item": None},
        }
    else:
        line.update(
            price={"id": price_id, "object": "price"},
            proration=proration,
            type="invoiceitem" if proration else "subscription",
            subscription=subscription,
        )
    return line


def invoice_object(
    invoice_id: str = "in_1",
    customer: str = "cus_1",
    subscription: str | None = "sub_1",
    plan: str = "ugly-duckling",
    *,
    billing_reason: str | None = None,
    lines: list[dict] | None = None,
    total: int | None = None,
    metadata: dict | None = None,
    customer_email: str | None = None,
    layout: str = BASIL,
) -> dict:
    if lines is None:
        lines = [invoice_line(plan, subscription=subscription, layout=layout)]
    amount = sum(line["amount"] for line in lines) if total is None else total
    invoice = {
        "id": invoice_id,
        "object": "invoice",
        "customer": customer,
        "customer_email": customer_email,
        "status": "paid",
        "total": amount,
        "amount_due": max(amount, 0),
        "amount_paid": max(amount, 0),
        "currency": "usd",
        "billing_reason": billing_reason or ("subscription_cycle" if subscription else "manual"),
        "attempt_count": 1,
        "discounts": [],
        "lines": {"object": "list", "data": lines},
    }
    details = {"subscription": subscription, "metadata": metadata or {}} if subscription else None
    if layout == BASIL:
        invoice["parent"] = (
            {"type": "subscription_details", "subscription_details": details} if details else None
        )
    else:
        invoice["subscription"] = subscription
        invoice["subscription_details"] = {"metadata": metadata or {}} if subscription else None
    return invoice


def deliver(client, event: dict, *, header: str | None = None, secret: str | None = None):
    payload, signature = signed_payload(event, secret=secret)
    extra = {"HTTP_STRIPE_SIGNATURE": header if header is not None else signature}
    return client.post(WEBHOOK_URL, data=payload, content_type="application/json", **extra)


def event(
    event_type: str,
    obj: dict,
    *,
    created: int | None = None,
    event_id: str | None = None,
    layout: str = BASIL,
) -> dict:
    evt = make_event(event_type, obj, created=created or int(time.time()), event_id=event_id)
    evt["api_version"] = API_VERSIONS[layout]
    return evt


@pytest.fixture
def customer_row(user) -> Subscription:
    """The user after a first checkout: a Stripe customer and no subscription yet."""
    return Subscription.objects.create(user=user, stripe_customer_id="cus_1")
