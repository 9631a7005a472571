"""Billing reads: a user's subscription and the staff report joining users, credits and plans."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import F, QuerySet

from billing import plans
from billing.models import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    Subscription,
    SubscriptionStatus,
    WebhookEvent,
    WebhookEventStatus,
)
from credits.models import CreditTransaction
from fivedocks import bulk
from fivedocks.replicas import read_alias


def has_active_subscription(user_id: int) -> bool:
    """An active or trialing subscription: the user's monthly credits come from Stripe's invoice
    (registered with credits as its paid-plan check, `credits/paid_plans.py`). A money decision:
    the primary."""
    return Subscription.objects.filter(user_id=user_id, status__in=ACTIVE_STATUSES).exists()


def get_subscription(*, user, replica: bool = False) -> Subscription | None:
    """The user's subscription; `replica=True` lets a display read come from a replica."""
    alias = read_alias(user_id=user.pk) if replica else "default"
    return Subscription.objects.using(alias).filter(user=user).first()


@dataclass(frozen=True)
class Cancellation:
    """A subscription that will end: at `cancel_at` (set in the portal under flexible billing
    mode, or by the API), or at the period's end (`cancel_at_period_end`, the classic portal)."""

    at: datetime | None
    at_period_end: bool


def cancellation(*, subscription: Subscription | None) -> Cancellation | None:
    """None unless the subscription is cancelling (still live, with an end date set). Also for the
    platform's legacy routes (`cancelAtPeriodEnd`)."""
    if subscription is None or subscription.status in TERMINAL_STATUSES:
        return None
    if subscription.status == SubscriptionStatus.NONE:
        return None
    if subscription.cancel_at:
        return Cancellation(at=subscription.cancel_at, at_period_end=subscription.cancel_at_period_end)
    if subscription.cancel_at_period_end:
        return Cancellation(at=subscription.current_period_end, at_period_end=True)
    return None


def subscription_summary(*, user) -> dict:
    """What the user's plan is worth: a free-tier answer when there is no (active) subscription.

    The plan's allowance applies while the status is active or trialing; any other status (past
    due, canceled, ...) falls back to the free tier's allowance. An unknown plan grants nothing
    until staff map it.
    """
    row = get_subscription(user=user, replica=True)
    status = row.status if row else SubscriptionStatus.NONE
    plan_key = row.plan_type if row else ""
    catalogue_plan = plans.get_plan(plan_key)
    entitled = status in ACTIVE_STATUSES
    ending = cancellation(subscription=row)
    if entitled:
        monthly = catalogue_plan["monthly_credits"] if catalogue_plan else 0
    else:
        monthly = plans.free_tier_credits()
    return {
        "status": status,
        "is_active": entitled,
        "plan": plan_key or None,
        "plan_name": (catalogue_plan or {}).get("name", plan_key) if entitled else "Free",
        "monthly_credits": monthly,
        "current_period_start": row.current_period_start if row else None,
        "current_period_end": row.current_period_end if row else None,
        "cancel_at_period_end": row.cancel_at_period_end if row else False,
        "cancelling": ending is not None,
        "cancel_at": ending.at if ending else None,
        "has_billing_account": bool(row and row.stripe_customer_id),
    }


def users_with_credits_above_and_active_subscription(*, min_credits: int) -> QuerySet:
    """Users whose balance is above `min_credits` (strictly) and whose subscription is active or
    trialing: one SQL query joining users, user_credits and subscriptions (inner joins), with
    the balance, status and plan annotated. Highest balance first."""
    return (
        get_user_model()
        .objects.using(read_alias())
        .filter(
            credit_account__balance__gt=min_credits,
            subscription__status__in=ACTIVE_STATUSES,
        )
        .annotate(
            balance=F("credit_account__balance"),
            subscription_status=F("subscription__status"),
            plan_type=F("subscription__plan_type"),
            current_period_end=F("subscription__current_period_end"),
        )
        .order_by("-balance", "id")
    )


def filter_subscriptions_active_with_credits_above(queryset: QuerySet, *, min_credits: int) -> QuerySet:
    """The same report's conditions, on a Subscription queryset (the admin's list filter)."""
    return queryset.filter(status__in=ACTIVE_STATUSES, user__credit_account__balance__gt=min_credits)


# Migrated activation bonuses are stamped with the time the platform granted them, which is when
# the subscription became active: at its period's start, give or take the webhook's delay.
PLATFORM_CREDIT_SLACK = timedelta(hours=1)


def platform_credit_for_period(
    *, subscription: Subscription, subscription_id: str, start: datetime, end: datetime
) -> CreditTransaction | None:
    """The platform's migrated activation bonus for this subscription and period, if any.

    The platform granted a plan's credits when a subscription became active (its
    "<plan> subscription activation bonus" ledger entries, migrated from the KV store with
    `metadata.source = "kv"`). It counts for the subscription the migrated record named (the
    row came from the KV store and still holds that subscription) and for the period its
    timestamp falls in.
    """
    if "kv" not in (subscription.metadata or {}) or subscription.stripe_subscription_id != subscription_id:
        return None
    return (
        CreditTransaction.objects.filter(
            user_id=subscription.user_id,
            metadata__source="kv",
            reason__icontains="subscription activation bonus",
            amount__gt=0,
            created_at__gte=start - PLATFORM_CREDIT_SLACK,
            created_at__lt=end,
        )
        .order_by("created_at", "id")
        .first()
    )


def unmatched_events(*, customer_id: str) -> QuerySet:
    """A customer's unmatched events, oldest first (the order they are re-processed in)."""
    return WebhookEvent.objects.filter(status=WebhookEventStatus.UNMATCHED, customer_id=customer_id).order_by(
        "created", "id"
    )


# --- for kvmigrate: who wrote each row, and the rows as the KV store had them ---------------------

_SUBSCRIPTIONS = Subscription._meta.db_table
# The columns `subscription_rows` returns, in order (the KV record's fields).
SUBSCRIPTION_ROW_FIELDS = (
    "stripe_customer_id", "stripe_subscription_id", "status", "plan_type", "current_period_start",
    "current_period_end", "cancel_at_period_end", "metadata",
)  # fmt: skip


def migrated_subscription_keys(*, user_ids: Sequence[int]) -> bulk.Pairs:
    """(user id, the KV key the row was migrated from; NULL: the app wrote it) of these users."""
    return bulk.Pairs(
        f"SELECT user_id, metadata #>> '{{kv,key}}' FROM {_SUBSCRIPTIONS} WHERE user_id = ANY(%s)",  # noqa: S608
        (list(user_ids),),
    )


def subscription_customers(*, customer_ids: Sequence[str]) -> bulk.Pairs:
    """(user id, Stripe customer id) of the subscriptions holding these customers."""
    return bulk.Pairs(
        f"SELECT user_id, stripe_customer_id FROM {_SUBSCRIPTIONS} WHERE stripe_customer_id = ANY(%s)",  # noqa: S608
        (list(customer_ids),),
    )


def subscription_rows(*, user_ids: Sequence[int]) -> dict[int, tuple]:
    """User id -> the values of SUBSCRIPTION_ROW_FIELDS (metadata decoded), one query for all."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT user_id, {', '.join(SUBSCRIPTION_ROW_FIELDS)} "  # noqa: S608 - names are ours
            f"FROM {_SUBSCRIPTIONS} WHERE user_id = ANY(%s)",
            [list(user_ids)],
        )
        return {row[0]: (*row[1:-1], _json(row[-1])) for row in cursor.fetchall()}


def _json(value: Any) -> Any:
    """A jsonb column read with a raw cursor comes back as text (Django's psycopg setup)."""
    return json.loads(value) if isinstance(value, str) else value
