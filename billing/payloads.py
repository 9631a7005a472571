"""Reading Stripe objects as Stripe delivers them, in both API layouts.

Stripe's 2025-03-31 API version ("basil") moved fields: the period from the subscription to its
items, `invoice.subscription` to `invoice.parent.subscription_details.subscription`, a line's
`price` / `proration` to `line.pricing.price_details.price` / `line.parent.*_details.proration`.
Every reader here accepts both, so an account on either version (or events re-sent after an
upgrade) is read the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from billing import plans


def jsonb_safe(value: Any) -> Any:
    """`value` with every string PostgreSQL's JSONB refuses made storable.

    JSONB refuses U+0000 and text that is not valid UTF-8 (lone surrogates, which JSON's
    `\\udXXX` escapes can produce). Such strings are escaped: NUL becomes the six characters
    `\\u0000`, a lone surrogate `\\udXXX`. Nothing is dropped; the exact bytes stay in
    `WebhookEvent.raw_body`.
    """
    if isinstance(value, str):
        if "\x00" in value or any("\ud800" <= ch <= "\udfff" for ch in value):
            value = value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\u0000")
        return value
    if isinstance(value, dict):
        return {jsonb_safe(k): jsonb_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonb_safe(v) for v in value]
    return value


def parse_body(raw: bytes) -> Any:
    """The JSON of a webhook body (any JSON value; the caller checks it is an event).

    Non-standard constants (NaN, Infinity) are kept as their text: JSONB cannot store them.
    """
    return json.loads(raw.decode("utf-8"), parse_constant=lambda name: name)


def ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=UTC) if value else None


def id_of(value: str | dict | None) -> str | None:
    """Stripe fields are ids, or objects when expanded."""
    if isinstance(value, dict):
        return value.get("id")
    return value or None


# --- subscriptions -------------------------------------------------------------------------
def subscription_items(subscription: dict) -> list[dict]:
    return (subscription.get("items") or {}).get("data") or []


def subscription_price_id(subscription: dict) -> str | None:
    items = subscription_items(subscription)
    return id_of(items[0].get("price")) if items else None


def subscription_period(subscription: dict) -> tuple[datetime | None, datetime | None]:
    """Before basil the period is on the subscription; since, on each item (the first one's)."""
    items = subscription_items(subscription)
    item = items[0] if items else {}
    start = subscription.get("current_period_start") or item.get("current_period_start")
    end = subscription.get("current_period_end") or item.get("current_period_end")
    return ts(start), ts(end)


# --- invoices ------------------------------------------------------------------------------
def invoice_subscription_details(invoice: dict) -> dict:
    parent = invoice.get("parent") or {}
    return parent.get("subscription_details") or invoice.get("subscription_details") or {}


def invoice_subscription_id(invoice: dict) -> str | None:
    return id_of(invoice.get("subscription")) or id_of(
        invoice_subscription_details(invoice).get("subscription")
    )


def invoice_metadata(invoice: dict) -> dict:
    """The subscription's metadata as the invoice carries it (basil: `parent.subscription_details`)."""
    return invoice_subscription_details(invoice).get("metadata") or {}


def is_discounted(invoice: dict) -> bool:
    return bool(invoice.get("discounts") or invoice.get("total_discount_amounts") or invoice.get("discount"))


@dataclass(frozen=True)
class Line:
    id: str
    amount: int
    price_id: str | None
    proration: bool
    period_start: datetime | None
    period_end: datetime | None

    @property
    def plan(self) -> str | None:
        return plans.plan_for_price(self.price_id)


def _line_price_id(line: dict) -> str | None:
    if line.get("price"):  # before basil
        return id_of(line["price"])
    details = (line.get("pricing") or {}).get("price_details") or {}
    return id_of(details.get("price")) or id_of(line.get("plan"))


def _line_is_proration(line: dict) -> bool:
    if line.get("proration"):  # before basil
        return True
    parent = line.get("parent") or {}
    return any(
        (parent.get(kind) or {}).get("proration")
        for kind in ("subscription_item_details", "invoice_item_details")
    )


def invoice_lines(invoice: dict) -> list[Line]:
    lines = []
    for raw in (invoice.get("lines") or {}).get("data") or []:
        period = raw.get("period") or {}
        lines.append(
            Line(
                id=str(raw.get("id") or ""),
                amount=int(raw.get("amount") or 0),
                price_id=_line_price_id(raw),
                proration=_line_is_proration(raw),
                period_start=ts(period.get("start")),
                period_end=ts(period.get("end")),
            )
        )
    return lines


# --- who -----------------------------------------------------------------------------------
def customer_email(obj: dict) -> str | None:
    """The customer's email where the object carries one (checkout session, invoice, expanded
    customer); None when it does not."""
    details = obj.get("customer_details") or {}
    customer = obj.get("customer")
    for candidate in (
        details.get("email"),
        obj.get("customer_email"),
        customer.get("email") if isinstance(customer, dict) else None,
    ):
        if candidate:
            return str(candidate)
    return None
