"""One small function per Stripe event type, registered in HANDLERS.

Each handler gets the event's `data.object` (a dict, as stored) and the event's context, runs
inside the caller's transaction (a savepoint: a failure rolls back only the handler's writes),
returns a short note of what it did, and raises HandlerError when the event cannot be applied
yet (the event is then marked failed and can be reprocessed).

Ordering: Stripe does not deliver events in order. A subscription's state is written together
with the `created` time of the event that set it (`stripe_event_created`); an older event never
overwrites it. Events of the same second: a `customer.subscription.created` (always the first
event of a subscription) or anything after a terminal status (canceled, incomplete_expired) is
refused, other same-second events apply in arrival order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.contrib.auth import get_user_model

from billing import plans
from billing.models import (
    ACTIVE_STATUSES,
    LIVE_STATUSES,
    TERMINAL_STATUSES,
    Subscription,
    SubscriptionStatus,
)
from credits import services as credit_services
from fivedocks import changes


class HandlerError(Exception):
    """The event cannot be applied (yet); the message says why."""


@dataclass(frozen=True)
class EventContext:
    event_id: str
    type: str
    created: datetime


Handler = Callable[[dict, EventContext], str]


# --- helpers ------------------------------------------------------------------------------
def _ts(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=UTC) if value else None


def _id_of(value: str | dict | None) -> str | None:
    """Stripe fields are ids, or objects when expanded."""
    if isinstance(value, dict):
        return value.get("id")
    return value or None


def _locked_row_for_user(user_id: int | str) -> Subscription:
    User = get_user_model()  # noqa: N806
    user = User.objects.filter(pk=user_id).first()
    if user is None:
        raise HandlerError(f"user {user_id} does not exist")
    Subscription.objects.get_or_create(user=user)
    return Subscription.objects.select_for_update().get(user=user)


def _locked_row(*, subscription_id: str | None, customer_id: str | None, user_id: str | None) -> Subscription:
    """The user's row, found by subscription id, then customer id, then our user id in metadata."""
    rows = Subscription.objects.select_for_update()
    row = None
    if subscription_id:
        row = rows.filter(stripe_subscription_id=subscription_id).first()
    if row is None and customer_id:
        row = rows.filter(stripe_customer_id=customer_id).first()
    if row is None and user_id and str(user_id).isdigit():
        row = _locked_row_for_user(user_id)
    if row is None:
        raise HandlerError(
            f"no user for customer {customer_id!r} / subscription {subscription_id!r} (no user_id metadata)"
        )
    if customer_id:
        if not row.stripe_customer_id:
            row.stripe_customer_id = customer_id
        elif row.stripe_customer_id != customer_id:
            raise HandlerError(
                f"user {row.user_id} has customer {row.stripe_customer_id}, the event names {customer_id}"
            )
    return row


def _is_stale(row: Subscription, ctx: EventContext) -> bool:
    stored = row.stripe_event_created
    if stored is None or ctx.created > stored:
        return False
    if ctx.created < stored:
        return True
    return ctx.type == "customer.subscription.created" or row.status in TERMINAL_STATUSES


def _first_item(subscription: dict) -> dict:
    items = (subscription.get("items") or {}).get("data") or []
    return items[0] if items else {}


def _plan_from_subscription(subscription: dict, current: str) -> str:
    price = _first_item(subscription).get("price") or {}
    price_id = _id_of(price)
    return (
        plans.plan_for_price(price_id)
        or (subscription.get("metadata") or {}).get("plan")
        or (price.get("lookup_key") if isinstance(price, dict) else None)
        or price_id
        or current
    )


# --- handlers -----------------------------------------------------------------------------
def checkout_session_completed(session: dict, ctx: EventContext) -> str:
    """Links the Stripe customer and the new subscription to the user who checked out."""
    if session.get("mode") != "subscription":
        return f"nothing to do for a {session.get('mode')!r} checkout"
    metadata = session.get("metadata") or {}
    subscription_id = _id_of(session.get("subscription"))
    row = _locked_row(
        subscription_id=subscription_id,
        customer_id=_id_of(session.get("customer")),
        user_id=session.get("client_reference_id") or metadata.get("user_id"),
    )
    row.metadata["last_checkout_session"] = session.get("id")
    note = f"checkout {session.get('id')} linked to user {row.user_id}"
    # The subscription's own events carry its state; this only links a subscription not seen yet.
    if subscription_id and row.stripe_subscription_id != subscription_id:
        if row.status in LIVE_STATUSES and row.stripe_subscription_id:
            note += f"; kept the live subscription {row.stripe_subscription_id}"
        else:
            row.stripe_subscription_id = subscription_id
            row.plan_type = metadata.get("plan") or row.plan_type
            note += f"; subscription {subscription_id}"
    row.save()
    changes.user_data_changed(domain="billing", user_id=row.user_id)
    return note


def _apply_subscription(subscription: dict, ctx: EventContext, *, status: str | None = None) -> str:
    row = _locked_row(
        subscription_id=subscription.get("id"),
        customer_id=_id_of(subscription.get("customer")),
        user_id=(subscription.get("metadata") or {}).get("user_id"),
    )
    if _is_stale(row, ctx):
        return f"stale: the stored state comes from a newer event ({row.stripe_event_created.isoformat()})"
    status = status or subscription.get("status")
    if status not in SubscriptionStatus.values or status == SubscriptionStatus.NONE:
        raise HandlerError(f"unknown subscription status {status!r}")
    current = row.stripe_subscription_id
    if (
        current
        and current != subscription.get("id")
        and row.status in LIVE_STATUSES
        and status not in LIVE_STATUSES
    ):
        return f"ignored: {subscription.get('id')} ({status}) is not the user's live subscription {current}"
    item = _first_item(subscription)
    row.stripe_subscription_id = subscription["id"]
    row.status = status
    row.plan_type = _plan_from_subscription(subscription, row.plan_type)
    row.current_period_start = _ts(
        subscription.get("current_period_start") or item.get("current_period_start")
    )
    row.current_period_end = _ts(subscription.get("current_period_end") or item.get("current_period_end"))
    row.cancel_at_period_end = bool(subscription.get("cancel_at_period_end"))
    price_id = _id_of(item.get("price"))
    if price_id:
        row.metadata["price_id"] = price_id
    row.stripe_event_created = ctx.created
    row.save()
    changes.user_data_changed(domain="billing", user_id=row.user_id)
    return f"user {row.user_id}: {row.plan_type or '-'} {status}"


def subscription_created(subscription: dict, ctx: EventContext) -> str:
    return _apply_subscription(subscription, ctx)


def subscription_updated(subscription: dict, ctx: EventContext) -> str:
    return _apply_subscription(subscription, ctx)


def subscription_deleted(subscription: dict, ctx: EventContext) -> str:
    return _apply_subscription(subscription, ctx, status=SubscriptionStatus.CANCELED)


def _invoice_subscription_id(invoice: dict) -> str | None:
    # API versions before 2025-03-31 have `subscription`; later ones `parent.subscription_details`.
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return _id_of(invoice.get("subscription")) or _id_of(details.get("subscription"))


def _invoice_plan(invoice: dict, row: Subscription) -> str:
    for line in (invoice.get("lines") or {}).get("data") or []:
        # `price` before API 2025-03-31, `pricing.price_details.price` after.
        price_details = (line.get("pricing") or {}).get("price_details") or {}
        plan_key = plans.plan_for_price(_id_of(line.get("price")) or price_details.get("price"))
        if plan_key:
            return plan_key
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    for candidate in ((details.get("metadata") or {}).get("plan"), row.plan_type):
        if plans.get_plan(candidate):
            return candidate
    raise HandlerError(
        f"plan {row.plan_type!r} of user {row.user_id} is not in BILLING_PLANS: no allowance to grant "
        "(set a catalogue plan on the subscription, then reprocess)"
    )


def invoice_paid(invoice: dict, ctx: EventContext) -> str:
    """Grants the plan's monthly credits, once per invoice (the invoice id is the idempotency key)."""
    subscription_id = _invoice_subscription_id(invoice)
    if not subscription_id:
        return "not a subscription invoice: no credits"
    row = _locked_row(
        subscription_id=subscription_id, customer_id=_id_of(invoice.get("customer")), user_id=None
    )
    plan_key = _invoice_plan(invoice, row)
    plan = plans.get_plan(plan_key)
    amount = int(plan["monthly_credits"])
    result = credit_services.grant(
        user=row.user,
        amount=amount,
        kind="purchase",
        reason=f"{plan.get('name', plan_key)} monthly credits (invoice {invoice['id']})",
        idempotency_key=f"stripe-invoice:{invoice['id']}",
        metadata={
            "source": "stripe",
            "invoice_id": invoice["id"],
            "stripe_event_id": ctx.event_id,
            "subscription_id": subscription_id,
            "plan": plan_key,
            "amount_paid": invoice.get("amount_paid"),
            "currency": invoice.get("currency"),
        },
    )
    row.metadata["last_paid_invoice"] = invoice["id"]
    row.save(update_fields=["metadata", "stripe_customer_id", "updated_at"])
    changes.user_data_changed(domain="billing", user_id=row.user_id)
    entry = result.transaction
    if result.replayed:
        return f"user {row.user_id}: invoice already credited (credit transaction {entry.pk})"
    return f"user {row.user_id}: {entry.amount} credits ({plan_key}), credit transaction {entry.pk}"


def invoice_payment_failed(invoice: dict, ctx: EventContext) -> str:
    """Records the failure; an active subscription becomes past_due (unless a newer state is stored)."""
    subscription_id = _invoice_subscription_id(invoice)
    row = _locked_row(
        subscription_id=subscription_id, customer_id=_id_of(invoice.get("customer")), user_id=None
    )
    row.metadata["last_payment_failure"] = {
        "invoice_id": invoice.get("id"),
        "subscription_id": subscription_id,
        "attempt_count": invoice.get("attempt_count"),
        "amount_due": invoice.get("amount_due"),
        "next_payment_attempt": invoice.get("next_payment_attempt"),
        "event_id": ctx.event_id,
        "at": ctx.created.isoformat(),
    }
    note = f"user {row.user_id}: payment failure recorded"
    same_subscription = not subscription_id or row.stripe_subscription_id in ("", subscription_id)
    if same_subscription and row.status in ACTIVE_STATUSES and not _is_stale(row, ctx):
        row.status = SubscriptionStatus.PAST_DUE
        row.stripe_event_created = ctx.created
        note += ", status past_due"
    row.save()
    changes.user_data_changed(domain="billing", user_id=row.user_id)
    return note


HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": checkout_session_completed,
    "customer.subscription.created": subscription_created,
    "customer.subscription.updated": subscription_updated,
    "customer.subscription.deleted": subscription_deleted,
    "invoice.paid": invoice_paid,
    "invoice.payment_failed": invoice_payment_failed,
}
