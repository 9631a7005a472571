"""The plan catalogue (settings.BILLING_PLANS), staff's price mappings, and the free tier."""

from __future__ import annotations

from django.conf import settings

from billing.models import PriceMapping


def get_plan(key: str | None) -> dict | None:
    """The catalogue entry for a plan key, or None for a plan the catalogue does not know."""
    if not key:
        return None
    return settings.BILLING_PLANS.get(key)


def plan_for_price(price_id: str | None) -> str | None:
    """The plan key of a Stripe price: the catalogue's own price first, then staff's mapping
    (billing.models.PriceMapping). None for a price neither knows."""
    if not price_id:
        return None
    for key, plan in settings.BILLING_PLANS.items():
        if plan.get("stripe_price") == price_id:
            return key
    mapped = PriceMapping.objects.filter(stripe_price_id=price_id).values_list("plan", flat=True).first()
    return mapped if get_plan(mapped) else None


def monthly_credits(key: str) -> int:
    return int(settings.BILLING_PLANS[key]["monthly_credits"])


def free_tier_credits() -> int:
    return settings.FREE_TIER_MONTHLY_CREDITS
