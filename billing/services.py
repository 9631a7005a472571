"""Every billing write: Stripe checkout and portal sessions, and the webhook event log.

Stripe calls happen outside database transactions (no lock is held while waiting on the
network) and are made so that a failure at any point leaves no inconsistent row:
- the customer id is stored only after Stripe created the customer (with an idempotency key, so
  a retry or a concurrent request gets the same customer back); a customer kept after a failed
  checkout-session call is simply reused by the next checkout;
- a checkout or portal session writes nothing locally.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import stripe
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, transaction
from django.utils import timezone

from billing import payloads, plans, selectors
from billing.models import LIVE_STATUSES, PriceMapping, Subscription, WebhookEvent, WebhookEventStatus
from billing.stripe_client import describe_error, get_client
from billing.webhook_handlers import HANDLERS, EventContext, Unmatched
from fivedocks import bulk, changes
from fivedocks.errors import Conflict, DomainError, UpstreamError, WritesFrozen
from fivedocks.metrics import WEBHOOK_EVENTS, bounded_label

logger = logging.getLogger(__name__)


class UnknownPlan(DomainError):
    """The plan is not in the catalogue."""

    code = "unknown_plan"


class AlreadySubscribed(Conflict):
    """The user already has a live subscription: change it in the billing portal."""

    code = "already_subscribed"


class NoBillingAccount(Conflict):
    """The user has no Stripe customer yet: start a checkout first."""

    code = "no_billing_account"


class InvalidWebhook(DomainError):
    """The webhook's signature or payload is not valid."""

    code = "invalid_webhook"


class NotReprocessable(Conflict):
    """Only a failed, unmatched (or never finished) event can be processed again."""

    code = "not_reprocessable"


class WebhookStorageFailed(DomainError):
    """The event could not be stored; Stripe will deliver it again."""

    status_code = 500
    code = "webhook_storage_failed"


class CannotLink(Conflict):
    """The event cannot be linked to this user."""

    code = "cannot_link"


# --- Checkout and portal ------------------------------------------------------------------
def _stripe_call(what: str, call, **kwargs):
    try:
        return call(**kwargs)
    except stripe.StripeError as exc:
        reason = describe_error(exc)
        logger.warning("stripe %s failed: %s", what, reason)
        raise UpstreamError(f"Could not {what}: {reason}") from exc


def ensure_customer(*, user) -> str:
    """The user's Stripe customer id, creating the customer once (then stored and reused)."""
    changes.guard_writes("billing")
    existing = (
        Subscription.objects.filter(user=user, stripe_customer_id__isnull=False)
        .values_list("stripe_customer_id", flat=True)
        .first()
    )
    if existing:
        return existing
    # Stripe keeps idempotency keys 24 hours: concurrent or retried calls return one customer.
    email_tag = hashlib.sha256(user.email.encode()).hexdigest()[:12]
    customer = _stripe_call(
        "create the Stripe customer",
        get_client().v1.customers.create,
        params={"email": user.email, "metadata": {"user_id": str(user.pk)}},
        options={"idempotency_key": f"fivedocks-customer-{user.pk}-{email_tag}"},
    )
    with transaction.atomic():
        Subscription.objects.get_or_create(user=user)
        row = Subscription.objects.select_for_update().get(user=user)
        if not row.stripe_customer_id:
            row.stripe_customer_id = customer.id
            row.save(update_fields=["stripe_customer_id", "updated_at"])
            changes.user_data_changed(domain="billing", user_id=user.pk)
        elif row.stripe_customer_id != customer.id:
            logger.warning(
                "user %s: kept customer %s, Stripe customer %s is unused",
                user.pk,
                row.stripe_customer_id,
                customer.id,
            )
        return row.stripe_customer_id


def start_checkout(*, user, plan: str) -> str:
    """A Stripe Checkout Session (subscription mode) for `plan`; returns its URL."""
    return create_checkout_session(user=user, plan=plan).url


def create_checkout_session(
    *, user, plan: str, success_url: str | None = None, cancel_url: str | None = None
):
    """The Stripe Checkout Session for `plan` (its `url` and `id`).

    `success_url`/`cancel_url` default to BILLING_SUCCESS_URL/BILLING_CANCEL_URL; the platform's
    own checkout route sends the user back to the page they came from.
    """
    changes.guard_writes("billing")
    catalogue_plan = plans.get_plan(plan)
    if catalogue_plan is None:
        raise UnknownPlan(f"Unknown plan {plan!r}; known: {', '.join(sorted(settings.BILLING_PLANS))}.")
    status = Subscription.objects.filter(user=user).values_list("status", flat=True).first()
    if status in LIVE_STATUSES:
        raise AlreadySubscribed(f"You already have a subscription ({status}); change it in the portal.")
    customer_id = ensure_customer(user=user)
    metadata = {"user_id": str(user.pk), "plan": plan}
    session = _stripe_call(
        "start the checkout",
        get_client().v1.checkout.sessions.create,
        params={
            "mode": "subscription",
            "customer": customer_id,
            "client_reference_id": str(user.pk),
            "line_items": [{"price": catalogue_plan["stripe_price"], "quantity": 1}],
            "success_url": success_url or settings.BILLING_SUCCESS_URL,
            "cancel_url": cancel_url or settings.BILLING_CANCEL_URL,
            "metadata": metadata,
            "subscription_data": {"metadata": metadata},
        },
    )
    return session


def create_portal_session(*, user) -> str:
    """A Stripe billing-portal session for the user's customer; returns its URL."""
    customer_id = (
        Subscription.objects.filter(user=user, stripe_customer_id__isnull=False)
        .values_list("stripe_customer_id", flat=True)
        .first()
    )
    if not customer_id:
        raise NoBillingAccount()
    session = _stripe_call(
        "open the billing portal",
        get_client().v1.billing_portal.sessions.create,
        params={"customer": customer_id, "return_url": settings.BILLING_PORTAL_RETURN_URL},
    )
    return session.url


@transaction.atomic
def set_plan_type(*, subscription: Subscription, plan_type: str) -> Subscription:
    """Staff mapping of a plan name (e.g. a legacy one the catalogue does not know). A later event
    with a price no mapping knows keeps it (webhook_handlers._resolve_plan)."""
    changes.guard_writes("billing")
    row = Subscription.objects.select_for_update().get(pk=subscription.pk)
    row.plan_type = plan_type.strip()
    row.save(update_fields=["plan_type", "updated_at"])
    changes.user_data_changed(domain="billing", user_id=row.user_id)
    return row


@transaction.atomic
def map_price(*, stripe_price_id: str, plan: str, note: str = "") -> PriceMapping:
    """Staff: Stripe price -> catalogue plan, kept in `stripe_price_mappings`.

    Subscriptions whose last event named this price (and no plan) take the plan now; events
    resolve the price through the mapping from now on. Failed invoice events can then be
    reprocessed (admin).
    """
    changes.guard_writes("billing")
    price_id = stripe_price_id.strip()
    if not price_id:
        raise DomainError("A Stripe price id is required.")
    if plans.get_plan(plan) is None:
        raise UnknownPlan(f"Unknown plan {plan!r}; known: {', '.join(sorted(settings.BILLING_PLANS))}.")
    mapping, _ = PriceMapping.objects.update_or_create(
        stripe_price_id=price_id, defaults={"plan": plan, "note": note.strip()}
    )
    for row in Subscription.objects.select_for_update().filter(metadata__unmapped_price=price_id):
        row.metadata.pop("unmapped_price", None)
        row.plan_type = plan
        row.save(update_fields=["plan_type", "metadata", "updated_at"])
        changes.user_data_changed(domain="billing", user_id=row.user_id)
    return mapping


# --- Webhooks -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RecordedEvent:
    event: WebhookEvent
    duplicate: bool  # True: the event was already handled; nothing was done this time


DONE = (WebhookEventStatus.PROCESSED, WebhookEventStatus.IGNORED)


def _verify(payload: bytes, sig_header: str | None) -> dict:
    """Check the signature on the exact bytes, then that they are one Stripe event object."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidWebhook("The payload is not UTF-8 text.") from None
    try:
        stripe.WebhookSignature.verify_header(
            text, sig_header or "", settings.STRIPE_WEBHOOK_SECRET, stripe.Webhook.DEFAULT_TOLERANCE
        )
    except stripe.SignatureVerificationError as exc:
        raise InvalidWebhook(f"Invalid Stripe signature: {exc.user_message or exc}") from None
    try:
        data = payloads.parse_body(payload)
    except ValueError:
        raise InvalidWebhook("The payload is not valid JSON.") from None
    if not isinstance(data, dict):
        raise InvalidWebhook(f"The payload is a JSON {type(data).__name__}, not a Stripe event object.")
    obj = (data.get("data") or {}).get("object") if isinstance(data.get("data"), dict) else None
    valid = (
        isinstance(data.get("id"), str)
        and data["id"]
        and isinstance(data.get("type"), str)
        and data["type"]
        and type(data.get("created")) is int
        and isinstance(obj, dict)
    )
    if not valid:
        raise InvalidWebhook(
            "The payload is not a Stripe event (id, type, created and data.object are required)."
        )
    return data


def _event_customer(data: dict) -> str:
    obj = data["data"]["object"]
    if obj.get("object") == "customer":
        return str(obj.get("id") or "")
    return str(payloads.id_of(obj.get("customer")) or "")[:255]


def _store(*, data: dict, payload: bytes) -> tuple[WebhookEvent, bool]:
    """Store the event (get_or_create on the unique id: a concurrent delivery finds the other's row).

    The raw body goes in with the parsed payload made JSONB-safe. Should the JSONB still be
    refused, the raw body is stored alone (payload `{}`, status failed with the reason):
    nothing Stripe sent is lost, and reprocessing re-reads the raw body.
    """
    fields = {
        "type": data["type"][:100],
        "created": datetime.fromtimestamp(int(data["created"]), tz=UTC),
        "livemode": bool(data.get("livemode")),
        "raw_body": payload,
        "customer_id": _event_customer(data),
    }
    try:
        with transaction.atomic():
            return WebhookEvent.objects.get_or_create(
                event_id=data["id"][:255], defaults={**fields, "payload": payloads.jsonb_safe(data)}
            )
    except DatabaseError as exc:
        logger.exception("stripe event %s: payload not storable as JSONB", data.get("id"))
        reason = f"payload not storable: {type(exc).__name__}: {exc}"
    try:
        with transaction.atomic():
            return WebhookEvent.objects.get_or_create(
                event_id=data["id"][:255],
                defaults={**fields, "payload": {}, "status": WebhookEventStatus.FAILED, "error": reason},
            )
    except DatabaseError as exc:
        logger.exception("stripe event %s could not be stored", data.get("id"))
        raise WebhookStorageFailed(
            f"Event {data['id']} could not be stored ({type(exc).__name__}); Stripe will deliver it again."
        ) from exc


def record_event(*, payload: bytes, sig_header: str | None) -> RecordedEvent:
    """Verify, store (raw body first; the event id is unique), then handle a Stripe event once."""
    try:
        data = _verify(payload, sig_header)
    except Exception:
        WEBHOOK_EVENTS.labels("unknown", "invalid").inc()
        raise
    # Frozen: 503 before the event is stored, so Stripe delivers it again after the freeze.
    changes.guard_writes("billing")
    row, created = _store(data=data, payload=payload)
    if not created and row.status in DONE:
        WEBHOOK_EVENTS.labels(bounded_label(row.type, HANDLERS), "duplicate").inc()
        return RecordedEvent(row, duplicate=True)
    event, handled = _process(pk=row.pk)
    WEBHOOK_EVENTS.labels(bounded_label(event.type, HANDLERS), event.status if handled else "duplicate").inc()
    return RecordedEvent(event, duplicate=not handled)


def reprocess_event(*, event: WebhookEvent) -> WebhookEvent:
    """Run a failed, unmatched (or never finished) event's handler again."""
    changes.guard_writes("billing")
    if event.status in DONE:
        raise NotReprocessable(f"Event {event.event_id} is already {event.status}.")
    processed, _ = _process(pk=event.pk)
    return processed


def link_unmatched_event(*, event: WebhookEvent, user) -> list[WebhookEvent]:
    """Staff: the event's Stripe customer is this user's. Stores the link on the user's row, then
    re-processes every unmatched event of that customer, oldest first; returns them."""
    changes.guard_writes("billing")
    if event.status != WebhookEventStatus.UNMATCHED:
        raise CannotLink(f"Event {event.event_id} is {event.status}, not unmatched.")
    customer_id = event.customer_id
    if not customer_id:
        raise CannotLink(f"Event {event.event_id} names no Stripe customer to link.")
    with transaction.atomic():
        Subscription.objects.get_or_create(user=user)
        row = Subscription.objects.select_for_update().get(user=user)
        owner = Subscription.objects.filter(stripe_customer_id=customer_id).exclude(pk=row.pk).first()
        if owner is not None:
            raise CannotLink(f"Customer {customer_id} already belongs to user {owner.user_id}.")
        if row.stripe_customer_id and row.stripe_customer_id != customer_id:
            raise CannotLink(f"User {user.pk} already has the Stripe customer {row.stripe_customer_id}.")
        if not row.stripe_customer_id:
            row.stripe_customer_id = customer_id
            row.save(update_fields=["stripe_customer_id", "updated_at"])
            changes.user_data_changed(domain="billing", user_id=row.user_id)
    return [reprocess_event(event=pending) for pending in selectors.unmatched_events(customer_id=customer_id)]


def _event_object(row: WebhookEvent) -> dict:
    if row.payload:
        return row.payload["data"]["object"]
    # The JSONB was refused when stored: read the raw body (kept exactly as Stripe sent it).
    assert row.raw_body is not None  # stored whenever the payload is not
    return payloads.jsonb_safe(payloads.parse_body(bytes(row.raw_body)))["data"]["object"]


def _process(*, pk: int) -> tuple[WebhookEvent, bool]:
    """Handle the event under a row lock; returns (event, whether this call handled it).

    The handler runs in a savepoint: when it fails, its writes roll back while the event's
    `failed` (or `unmatched`) status and reason still commit.
    """
    with transaction.atomic():
        row = WebhookEvent.objects.select_for_update().get(pk=pk)
        if row.status in DONE:  # a concurrent delivery got there first
            return row, False
        row.attempts += 1
        row.error = ""
        row.note = ""
        handler = HANDLERS.get(row.type)
        if handler is None:
            row.status = WebhookEventStatus.IGNORED
            row.note = "no handler for this event type"
        else:
            context = EventContext(event_id=row.event_id, type=row.type, created=row.created)
            try:
                with transaction.atomic():
                    row.note = handler(_event_object(row), context) or ""
                if not row.payload:
                    row.note = f"read from the raw body (JSONB refused the payload); {row.note}"
            except WritesFrozen:
                raise  # another domain (credits) is frozen: 503, Stripe delivers it again later
            except Unmatched as exc:
                row.status = WebhookEventStatus.UNMATCHED
                row.note = f"unmatched: {exc}"
            except Exception as exc:
                logger.exception("stripe event %s (%s) failed", row.event_id, row.type)
                row.status = WebhookEventStatus.FAILED
                row.error = f"{type(exc).__name__}: {exc}"
            else:
                row.status = WebhookEventStatus.PROCESSED
        row.processed_at = timezone.now()
        row.save()
        return row, True


# --- subscriptions moved from the KV store (kvmigrate) --------------------------------------------


class MigratedSubscription(Protocol):
    """A subscription from the legacy store (kvmigrate.transforms.SubscriptionRow has this shape)."""

    user_id: int
    stripe_customer_id: str | None
    stripe_subscription_id: str
    status: str
    plan_type: str
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    metadata: dict | str  # a dict, or its JSON already encoded (kvmigrate does it ahead of the batch)


_SUBSCRIPTIONS = Subscription._meta.db_table
_MIGRATED_SUBSCRIPTION_COLUMNS = (
    "user_id", "stripe_customer_id", "stripe_subscription_id", "status", "plan_type", "current_period_start",
    "current_period_end", "cancel_at_period_end", "metadata", "created_at", "updated_at",
)  # fmt: skip
_JSON = DjangoJSONEncoder(ensure_ascii=False, separators=(",", ":"))


def load_migrated_subscriptions(
    *, subscriptions: Sequence[MigratedSubscription], existing: Collection[int]
) -> None:
    """Write one batch of migrated subscriptions (one per user) in bulk, in the caller's transaction.

    `existing`: the users whose row the caller found (`selectors.migrated_subscription_keys`, same
    transaction): theirs are updated (created_at kept), the others copied in. kvmigrate decided
    which record may write which row. The KV mirror is not told: the store is the source here.
    Frozen like every write; kvmigrate calls it inside `fivedocks.changes.freeze_exempt()`.
    """
    changes.guard_writes("billing")
    if not subscriptions:
        return
    now = timezone.now()
    rows = [
        (s.user_id, s.stripe_customer_id, s.stripe_subscription_id, s.status, s.plan_type,
         s.current_period_start, s.current_period_end, s.cancel_at_period_end,
         s.metadata if isinstance(s.metadata, str) else _JSON.encode(s.metadata), now, now)
        for s in subscriptions
    ]  # fmt: skip
    with transaction.atomic(savepoint=False):  # no savepoint: a round trip less per batch
        bulk.upsert_rows(
            _SUBSCRIPTIONS, _MIGRATED_SUBSCRIPTION_COLUMNS, rows, existing=existing, keep=("created_at",)
        )
        bulk.invalidate_on_commit(_SUBSCRIPTIONS)
