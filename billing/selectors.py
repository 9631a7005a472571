"""Billing reads: a user's subscription and the staff report joining users, credits and plans."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import F, QuerySet

from billing import plans
from billing.models import ACTIVE_STATUSES, Subscription, SubscriptionStatus
from fivedocks.replicas import read_alias


def get_subscription(*, user, replica: bool = False) -> Subscription | None:
    """The user's subscription; `replica=True` lets a display read come from a replica."""
    alias = read_alias(user_id=user.pk) if replica else "default"
    return Subscription.objects.using(alias).filter(user=user).first()


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
