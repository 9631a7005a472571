"""Subscriptions (Stripe's word on each user's plan) and the log of every Stripe webhook event."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class SubscriptionStatus(models.TextChoices):
    # "none": the user has no Stripe subscription (free tier). The row exists only once a Stripe
    # customer was created for the user (at the first checkout) or a subscription was imported.
    NONE = "none", "No subscription (free tier)"
    # Stripe's own subscription statuses, spelled as Stripe spells them.
    ACTIVE = "active", "Active"
    TRIALING = "trialing", "Trialing"
    PAST_DUE = "past_due", "Past due"
    CANCELED = "canceled", "Canceled"
    UNPAID = "unpaid", "Unpaid"
    INCOMPLETE = "incomplete", "Incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired", "Incomplete (expired)"
    PAUSED = "paused", "Paused"


# Statuses that give the user the plan's benefits and count as "an active subscription" in reports.
ACTIVE_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING)
# Statuses of a Stripe subscription that still exists (a new checkout would bill the user twice).
LIVE_STATUSES = (
    SubscriptionStatus.ACTIVE,
    SubscriptionStatus.TRIALING,
    SubscriptionStatus.PAST_DUE,
    SubscriptionStatus.UNPAID,
    SubscriptionStatus.PAUSED,
)
# Statuses a Stripe subscription never leaves.
TERMINAL_STATUSES = (SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED)


class Subscription(models.Model):
    """One per user: the Stripe customer and the state of the user's current subscription."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="subscription"
    )
    # NULL until a Stripe customer exists; unique when set (PostgreSQL allows many NULLs).
    stripe_customer_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    stripe_subscription_id = models.CharField(max_length=255, blank=True, default="", db_index=True)
    status = models.CharField(
        max_length=32, choices=SubscriptionStatus.choices, default=SubscriptionStatus.NONE
    )
    # Free text: a plan name the catalogue (settings.BILLING_PLANS) does not know is kept as is.
    plan_type = models.CharField(max_length=100, blank=True, default="")
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    # Stripe's `cancel_at`: the portal under flexible billing mode cancels at a date without
    # `cancel_at_period_end`. Either one means the subscription is cancelling (selectors).
    cancel_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # `created` of the Stripe event that last set the state: an older event never overwrites it.
    stripe_event_created = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "subscriptions"
        ordering = ["id"]
        indexes = [
            models.Index(fields=["status"], name="subscriptions_status_idx"),
            models.Index(fields=["current_period_end"], name="subscriptions_period_end_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=SubscriptionStatus.values), name="subscriptions_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}: {self.plan_type or 'free'} ({self.status})"


class WebhookEventStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    PROCESSED = "processed", "Processed"
    FAILED = "failed", "Failed"
    IGNORED = "ignored", "Ignored (no handler)"
    # The event's customer / subscription / user is not (yet) known to fivedocks: kept, answered
    # 2xx, shown to staff, who link it to a user (which re-processes it).
    UNMATCHED = "unmatched", "Unmatched (unknown customer)"


class WebhookEvent(models.Model):
    """A verified Stripe event, stored before it is acted on (the event id is unique)."""

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100, db_index=True)
    # The body exactly as Stripe signed it, stored before anything is parsed into JSONB.
    raw_body = models.BinaryField(null=True, blank=True, editable=False)
    # The parsed event, with the characters PostgreSQL's JSONB refuses (NUL, lone surrogates)
    # escaped as text (billing.payloads.jsonb_safe); handlers read this.
    payload = models.JSONField()
    created = models.DateTimeField(help_text="When Stripe created the event.")
    livemode = models.BooleanField(default=False)
    received_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(
        max_length=16, choices=WebhookEventStatus.choices, default=WebhookEventStatus.RECEIVED
    )
    error = models.TextField(blank=True, default="")
    # What the handler did or why it did nothing (e.g. "stale: older than the stored state").
    note = models.TextField(blank=True, default="")
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # The Stripe customer the event is about (for unmatched events: what staff link).
    customer_id = models.CharField(max_length=255, blank=True, default="", db_index=True)

    class Meta:
        db_table = "stripe_webhook_events"
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["status", "received_at"], name="webhook_events_status_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=WebhookEventStatus.values), name="webhook_events_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type} ({self.status})"


class PriceMapping(models.Model):
    """Staff's word on a Stripe price the catalogue (settings.BILLING_PLANS) does not list.

    Events resolve a price through the catalogue first, then this table; a price neither knows
    never overwrites the plan a subscription already has.
    """

    stripe_price_id = models.CharField(max_length=255, unique=True)
    plan = models.CharField(max_length=100, help_text="A plan key of the catalogue (BILLING_PLANS).")
    note = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "stripe_price_mappings"
        ordering = ["stripe_price_id"]

    def __str__(self) -> str:
        return f"{self.stripe_price_id} → {self.plan}"
