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
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import stripe
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing import plans
from billing.models import LIVE_STATUSES, Subscription, WebhookEvent, WebhookEventStatus
from billing.stripe_client import describe_error, get_client
from billing.webhook_handlers import HANDLERS, EventContext
from fivedocks.errors import Conflict, DomainError, UpstreamError
from fivedocks.metrics import WEBHOOK_EVENTS

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
    """Only a failed (or never finished) event can be processed again."""

    code = "not_reprocessable"


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
    """Staff mapping of a plan name (e.g. a legacy one the catalogue does not know)."""
    row = Subscription.objects.select_for_update().get(pk=subscription.pk)
    row.plan_type = plan_type.strip()
    row.save(update_fields=["plan_type", "updated_at"])
    return row


# --- Webhooks -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RecordedEvent:
    event: WebhookEvent
    duplicate: bool  # True: the event was already handled; nothing was done this time


DONE = (WebhookEventStatus.PROCESSED, WebhookEventStatus.IGNORED)


def _verify(payload: bytes, sig_header: str | None) -> dict:
    try:
        stripe.Webhook.construct_event(payload, sig_header, settings.STRIPE_WEBHOOK_SECRET)
        data = json.loads(payload)
    except stripe.SignatureVerificationError as exc:
        raise InvalidWebhook(f"Invalid Stripe signature: {exc.user_message or exc}") from None
    except ValueError:
        raise InvalidWebhook("The payload is not valid JSON.") from None
    is_event = isinstance(data, dict) and data.get("id") and data.get("type")
    if not is_event or not isinstance(data.get("created"), int):
        raise InvalidWebhook("The payload is not a Stripe event (id, type and created are required).")
    return data


def record_event(*, payload: bytes, sig_header: str | None) -> RecordedEvent:
    """Verify, store (before acting; the event id is unique), then handle a Stripe event once."""
    try:
        data = _verify(payload, sig_header)
    except Exception:
        WEBHOOK_EVENTS.labels("unknown", "invalid").inc()
        raise
    # get_or_create: a concurrent delivery of the same event finds the row the other one stored.
    row, created = WebhookEvent.objects.get_or_create(
        event_id=data["id"],
        defaults={
            "type": data["type"],
            "payload": data,
            "created": datetime.fromtimestamp(int(data["created"]), tz=UTC),
            "livemode": bool(data.get("livemode")),
        },
    )
    if not created and row.status in DONE:
        WEBHOOK_EVENTS.labels(row.type, "duplicate").inc()
        return RecordedEvent(row, duplicate=True)
    event, handled = _process(pk=row.pk)
    WEBHOOK_EVENTS.labels(event.type, event.status if handled else "duplicate").inc()
    return RecordedEvent(event, duplicate=not handled)


def reprocess_event(*, event: WebhookEvent) -> WebhookEvent:
    """Run a failed (or never finished) event's handler again."""
    if event.status in DONE:
        raise NotReprocessable(f"Event {event.event_id} is already {event.status}.")
    processed, _ = _process(pk=event.pk)
    return processed


def _process(*, pk: int) -> tuple[WebhookEvent, bool]:
    """Handle the event under a row lock; returns (event, whether this call handled it).

    The handler runs in a savepoint: when it fails, its writes roll back while the event's
    `failed` status and error still commit.
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
                    row.note = handler(row.payload["data"]["object"], context) or ""
            except Exception as exc:
                logger.exception("stripe event %s (%s) failed", row.event_id, row.type)
                row.status = WebhookEventStatus.FAILED
                row.error = f"{type(exc).__name__}: {exc}"
            else:
                row.status = WebhookEventStatus.PROCESSED
        row.processed_at = timezone.now()
        row.save()
        return row, True
