"""One small function per Stripe event type, registered in HANDLERS.

Each handler gets the event's `data.object` (a dict, as stored) and the event's context, runs
inside the caller's transaction (a savepoint: a failure rolls back only the handler's writes),
returns a short note of what it did, and raises:
- `Unmatched` when nobody in fivedocks is the event's customer, subscription or user (another
  product on the same Stripe account, or a user staff have not linked yet): the event is kept
  as `unmatched`, answered 2xx, and re-processed when staff link it;
- `HandlerError` when the event cannot be applied yet (an unknown price, a customer clash): the
  event is marked failed, Stripe retries it, and staff can reprocess it.

Ordering: Stripe does not deliver events in order. A subscription's state is written together
with the `created` time of the event that set it (`stripe_event_created`); an older event never
overwrites it. Events of the same second: a `customer.subscription.created` (always the first
event of a subscription) or anything after a terminal status (canceled, incomplete_expired) is
refused, other same-second events apply in arrival order. Credits never depend on the stored
state: an invoice's grant is decided from the invoice alone (its billing reason and lines), and
is idempotent per invoice, so any delivery order grants the same.

The rules are written out in docs/billing.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model

from billing import payloads, plans, selectors
from billing.models import (
    ACTIVE_STATUSES,
    LIVE_STATUSES,
    TERMINAL_STATUSES,
    Subscription,
    SubscriptionStatus,
)
from billing.payloads import Line, id_of
from credits import services as credit_services
from fivedocks import changes


class HandlerError(Exception):
    """The event cannot be applied (yet); the message says why."""


class Unmatched(HandlerError):
    """No user of fivedocks is the event's customer, subscription or (trusted) metadata user."""


@dataclass(frozen=True)
class EventContext:
    event_id: str
    type: str
    created: datetime


Handler = Callable[[dict, EventContext], str]


# --- who the event is about ---------------------------------------------------------------
def _save(row: Subscription) -> None:
    """Save the subscription and say so to the KV mirror, in the handler's transaction."""
    row.save()
    changes.user_data_changed(domain="billing", user_id=row.user_id)


def _metadata_plan(metadata: dict) -> str | None:
    """The catalogue plan named by fivedocks' `plan` or the platform's `planId`."""
    for key in ("plan", "planId"):
        if plans.get_plan(metadata.get(key)):
            return metadata[key]
    return None


def _metadata_user_id(metadata: dict, *, email: str | None, price_id: str | None) -> int | None:
    """The user the metadata names, if it may be trusted.

    fivedocks' own `user_id` is written only by fivedocks' checkouts. The platform's `userId`
    (its checkouts before the cutover) may also be another product's key on the same Stripe
    account: it links only when `planId` or the price is a known plan, and, where the event
    carries the customer's email, that email is the user's. Otherwise the event is unmatched.
    """
    own = str(metadata.get("user_id") or "")
    if own.isdigit():
        return int(own)
    theirs = str(metadata.get("userId") or "")
    if not theirs.isdigit():
        return None
    if not (_metadata_plan(metadata) or plans.plan_for_price(price_id)):
        raise Unmatched(f"metadata userId {theirs} without a known planId or price: not the platform's")
    user = get_user_model().objects.filter(pk=int(theirs)).first()
    if user is None:
        raise Unmatched(f"metadata userId {theirs}: no such user")
    if email and user.email.strip().lower() != email.strip().lower():
        raise Unmatched(f"metadata userId {theirs}: the event's customer email is not the user's")
    return user.pk


def _locked_row_for_user(user_id: int) -> Subscription:
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None:
        raise Unmatched(f"user {user_id} does not exist")
    Subscription.objects.get_or_create(user=user)
    return Subscription.objects.select_for_update().get(user=user)


def _locked_row(
    *,
    subscription_id: str | None,
    customer_id: str | None,
    metadata: dict | None = None,
    email: str | None = None,
    price_id: str | None = None,
) -> Subscription:
    """The user's row, found by subscription id, then customer id, then a trusted user id in the
    metadata; Unmatched when none. (A checkout's `client_reference_id` alone is not trusted: any
    product on the account may set it; fivedocks' checkouts also write `user_id`.)"""
    rows = Subscription.objects.select_for_update()
    row = None
    if subscription_id:
        row = rows.filter(stripe_subscription_id=subscription_id).first()
    if row is None and customer_id:
        row = rows.filter(stripe_customer_id=customer_id).first()
    if row is None:
        user_id = _metadata_user_id(metadata or {}, email=email, price_id=price_id)
        if user_id is not None:
            row = _locked_row_for_user(user_id)
    if row is None:
        raise Unmatched(f"unknown customer {customer_id!r} / subscription {subscription_id!r}")
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


def _remember(row: Subscription, key: str, value: dict, ctx: EventContext) -> None:
    """Keep `value` under `metadata[key]` unless a newer event's is already there (any delivery
    order leaves the latest)."""
    stored = row.metadata.get(key)
    at = ctx.created.isoformat()
    if isinstance(stored, dict) and str(stored.get("at") or "") > at:
        return
    row.metadata[key] = {**value, "event_id": ctx.event_id, "at": at}


def _resolve_plan(row: Subscription, *, price_id: str | None, metadata: dict, lookup_key: str | None) -> str:
    """The plan of a price (catalogue, then staff's mappings). An unknown price never overwrites
    the plan the row has (staff may have set it); it is remembered in `metadata.unmapped_price`."""
    plan = plans.plan_for_price(price_id)
    if plan:
        row.metadata.pop("unmapped_price", None)
        return plan
    if price_id:
        row.metadata["unmapped_price"] = price_id
    if row.plan_type:
        return row.plan_type
    return _metadata_plan(metadata) or lookup_key or price_id or ""


# --- checkout and subscriptions -----------------------------------------------------------
def checkout_session_completed(session: dict, ctx: EventContext) -> str:
    """Links the Stripe customer and the new subscription to the user who checked out."""
    if session.get("mode") != "subscription":
        return f"nothing to do for a {session.get('mode')!r} checkout"
    metadata = session.get("metadata") or {}
    subscription_id = id_of(session.get("subscription"))
    row = _locked_row(
        subscription_id=subscription_id,
        customer_id=id_of(session.get("customer")),
        metadata=metadata,
        email=payloads.customer_email(session),
    )
    _remember(row, "last_checkout_session", {"id": session.get("id")}, ctx)
    note = f"checkout {session.get('id')} linked to user {row.user_id}"
    # The subscription's own events carry its state; this only links a subscription not seen yet.
    if subscription_id and row.stripe_subscription_id != subscription_id:
        if row.status in LIVE_STATUSES and row.stripe_subscription_id:
            note += f"; kept the live subscription {row.stripe_subscription_id}"
        else:
            row.stripe_subscription_id = subscription_id
            row.plan_type = _metadata_plan(metadata) or row.plan_type
            note += f"; subscription {subscription_id}"
    _save(row)
    return note


def _apply_subscription(subscription: dict, ctx: EventContext, *, status: str | None = None) -> str:
    metadata = subscription.get("metadata") or {}
    price_id = payloads.subscription_price_id(subscription)
    row = _locked_row(
        subscription_id=subscription.get("id"),
        customer_id=id_of(subscription.get("customer")),
        metadata=metadata,
        email=payloads.customer_email(subscription),
        price_id=price_id,
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
    items = payloads.subscription_items(subscription)
    price = (items[0].get("price") if items else None) or {}
    row.stripe_subscription_id = subscription["id"]
    row.status = status
    row.plan_type = _resolve_plan(
        row,
        price_id=price_id,
        metadata=metadata,
        lookup_key=price.get("lookup_key") if isinstance(price, dict) else None,
    )
    row.current_period_start, row.current_period_end = payloads.subscription_period(subscription)
    row.cancel_at_period_end = bool(subscription.get("cancel_at_period_end"))
    row.cancel_at = payloads.ts(subscription.get("cancel_at"))
    if price_id:
        row.metadata["price_id"] = price_id
    row.stripe_event_created = ctx.created
    _save(row)
    note = f"user {row.user_id}: {row.plan_type or '-'} {status}"
    if row.metadata.get("unmapped_price"):
        note += f" (price {row.metadata['unmapped_price']} is not mapped to a plan)"
    return note


def subscription_created(subscription: dict, ctx: EventContext) -> str:
    return _apply_subscription(subscription, ctx)


def subscription_updated(subscription: dict, ctx: EventContext) -> str:
    return _apply_subscription(subscription, ctx)


def subscription_deleted(subscription: dict, ctx: EventContext) -> str:
    return _apply_subscription(subscription, ctx, status=SubscriptionStatus.CANCELED)


# --- invoices -----------------------------------------------------------------------------
def _invoice_row(invoice: dict, lines: list[Line]) -> tuple[Subscription, str | None]:
    subscription_id = payloads.invoice_subscription_id(invoice)
    positive = [line for line in lines if line.amount > 0]
    row = _locked_row(
        subscription_id=subscription_id,
        customer_id=id_of(invoice.get("customer")),
        metadata=payloads.invoice_metadata(invoice),
        email=payloads.customer_email(invoice),
        price_id=positive[0].price_id if positive else None,
    )
    return row, subscription_id


def _plan_of(line: Line) -> str:
    plan = line.plan
    if plan is None:
        raise HandlerError(
            f"price {line.price_id!r} (line {line.id}) is not a known plan: map it to a plan in the "
            "admin (Stripe price mappings), then reprocess"
        )
    return plan


def _subscription_plan(invoice: dict, row: Subscription, subscription_id: str) -> str:
    plan = _metadata_plan(payloads.invoice_metadata(invoice))
    if plan:
        return plan
    if row.stripe_subscription_id == subscription_id and plans.get_plan(row.plan_type):
        return row.plan_type
    raise HandlerError(
        f"no plan for invoice {invoice.get('id')}: no priced line and plan {row.plan_type!r} of user "
        f"{row.user_id} is not in BILLING_PLANS (set a catalogue plan on the subscription, then reprocess)"
    )


def _grant(
    row: Subscription, invoice: dict, ctx: EventContext, *, amount: int, plan: str, why: str, **meta
) -> str:
    name = plans.get_plan(plan).get("name", plan)
    result = credit_services.grant(
        user=row.user,
        amount=amount,
        kind="purchase",
        reason=f"{name} {why} (invoice {invoice['id']})",
        idempotency_key=f"stripe-invoice:{invoice['id']}",
        metadata={
            "source": "stripe",
            "invoice_id": invoice["id"],
            "billing_reason": invoice.get("billing_reason"),
            "stripe_event_id": ctx.event_id,
            "subscription_id": payloads.invoice_subscription_id(invoice),
            "plan": plan,
            "amount_paid": invoice.get("amount_paid"),
            "currency": invoice.get("currency"),
            **meta,
        },
    )
    entry = result.transaction
    if result.replayed:
        return f"user {row.user_id}: invoice already credited (credit transaction {entry.pk})"
    return f"user {row.user_id}: {entry.amount} credits ({plan}, {why}), credit transaction {entry.pk}"


def _grant_period(row: Subscription, invoice: dict, lines: list[Line], subscription_id: str, ctx) -> str:
    """`subscription_create` / `subscription_cycle`: the plan's monthly allowance, once."""
    if int(invoice.get("total") or 0) == 0 and not payloads.is_discounted(invoice):
        return f"user {row.user_id}: $0 invoice (trial): no credits; the first paid invoice grants the month"
    main = [line for line in lines if line.amount > 0 and not line.proration]
    line = max(main, key=lambda item: item.amount) if main else None
    plan = _plan_of(line) if line else _subscription_plan(invoice, row, subscription_id)
    if (
        invoice.get("billing_reason") == "subscription_create"
        and line
        and line.period_start
        and line.period_end
    ):
        credited = selectors.platform_credit_for_period(
            subscription=row, subscription_id=subscription_id, start=line.period_start, end=line.period_end
        )
        if credited is not None:
            return (
                f"user {row.user_id}: period already credited by the platform "
                f"(migrated credit transaction {credited.pk}): no credits"
            )
    return _grant(row, invoice, ctx, amount=plans.monthly_credits(plan), plan=plan, why="monthly credits")


def _grant_upgrade(row: Subscription, invoice: dict, lines: list[Line], subscription_id: str, ctx) -> str:
    """`subscription_update`: an upgrade's difference of allowances, from the proration lines.

    The old plan is the negative proration line's ("unused time on ..."), the new plan the
    positive one's ("remaining time on ..."): never the stored state, so any delivery order
    grants the same. A downgrade grants nothing (the new allowance starts with the next cycle).
    A positive non-proration line means the change started a new period (billing cycle anchor
    reset): that period's full allowance is granted.
    """
    main = [line for line in lines if line.amount > 0 and not line.proration]
    if main:
        plan = _plan_of(max(main, key=lambda item: item.amount))
        return _grant(row, invoice, ctx, amount=plans.monthly_credits(plan), plan=plan, why="monthly credits")
    gained = [line for line in lines if line.proration and line.amount > 0]
    unused = [line for line in lines if line.proration and line.amount < 0]
    if not gained or not unused:
        return f"user {row.user_id}: plan change without both proration lines: no credits"
    new_plan = _plan_of(max(gained, key=lambda item: item.amount))
    old_plan = _plan_of(min(unused, key=lambda item: item.amount))
    difference = plans.monthly_credits(new_plan) - plans.monthly_credits(old_plan)
    if difference <= 0:
        return (
            f"user {row.user_id}: {old_plan} → {new_plan} is not an upgrade: no credits now, "
            "the new allowance starts with the next cycle"
        )
    return _grant(
        row, invoice, ctx, amount=difference, plan=new_plan, why=f"upgrade from {old_plan}", old_plan=old_plan
    )


def invoice_paid(invoice: dict, ctx: EventContext) -> str:
    """Credits by `billing_reason`, once per invoice (the invoice id is the idempotency key)."""
    lines = payloads.invoice_lines(invoice)
    row, subscription_id = _invoice_row(invoice, lines)
    if not subscription_id:
        _remember(row, "last_one_off_invoice", {"invoice_id": invoice.get("id"), "paid": True}, ctx)
        _save(row)
        return f"user {row.user_id}: one-off invoice (no subscription): no credits, status unchanged"
    reason = invoice.get("billing_reason")
    if reason in ("subscription_create", "subscription_cycle"):
        note = _grant_period(row, invoice, lines, subscription_id, ctx)
    elif reason == "subscription_update":
        note = _grant_upgrade(row, invoice, lines, subscription_id, ctx)
    else:
        note = f"user {row.user_id}: billing_reason {reason!r}: no credits"
    _remember(row, "last_paid_invoice", {"invoice_id": invoice.get("id")}, ctx)
    _save(row)
    return note


def invoice_payment_failed(invoice: dict, ctx: EventContext) -> str:
    """Records the failure on the customer. A subscription invoice's failure turns an active
    subscription past_due (unless a newer state is stored); a one-off invoice (no subscription)
    never changes a subscription's status."""
    lines = payloads.invoice_lines(invoice)
    row, subscription_id = _invoice_row(invoice, lines)
    failure = {
        "invoice_id": invoice.get("id"),
        "subscription_id": subscription_id,
        "attempt_count": invoice.get("attempt_count"),
        "amount_due": invoice.get("amount_due"),
        "next_payment_attempt": invoice.get("next_payment_attempt"),
    }
    _remember(row, "last_payment_failure", failure, ctx)
    if not subscription_id:
        _save(row)
        return f"user {row.user_id}: one-off invoice failed: recorded on the customer, status unchanged"
    note = f"user {row.user_id}: payment failure recorded"
    same_subscription = row.stripe_subscription_id in ("", subscription_id)
    if same_subscription and row.status in ACTIVE_STATUSES and not _is_stale(row, ctx):
        row.status = SubscriptionStatus.PAST_DUE
        row.stripe_event_created = ctx.created
        note += ", status past_due"
    _save(row)
    return note


HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": checkout_session_completed,
    "customer.subscription.created": subscription_created,
    "customer.subscription.updated": subscription_updated,
    "customer.subscription.deleted": subscription_deleted,
    "invoice.paid": invoice_paid,
    "invoice.payment_failed": invoice_payment_failed,
}
