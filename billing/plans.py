"""The plan catalogue (settings.BILLING_PLANS) and the free tier's allowance."""

from __future__ import annotations

from django.conf import settings


def get_plan(key: str | None) -> dict | None:
    """The catalogue entry for a plan key, or None for a plan the catalogue does not know."""
    if not key:
        return None
    return settings.BILLING_PLANS.get(key)


def plan_for_price(price_id: str | None) -> str | None:
    """The plan key whose Stripe price is `price_id`."""
    if not price_id:
        return None
    for key, plan in settings.BILLING_PLANS.items():
        if plan.get("stripe_price") == price_id:
            return key
    return None


def free_tier_credits() -> int:
    return settings.FREE_TIER_MONTHLY_CREDITS
