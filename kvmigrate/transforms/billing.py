"""Subscriptions: the real layout's fields inside `user_credits:`, and the plan's `subscription:`."""

from __future__ import annotations

from typing import Any

from .base import Reject, SubscriptionRow, Verbatim, parse_bool, parse_str, parse_ts, to_ms, wrong_type

# Stripe's statuses (billing.models.SubscriptionStatus) plus "none": no subscription yet.
STATUSES = (
    "none", "active", "trialing", "past_due", "canceled", "unpaid", "incomplete",
    "incomplete_expired", "paused",
)  # fmt: skip
ALIASES = {"cancelled": "canceled"}  # the British spelling some tools wrote

# real-layout name -> column
REAL_FIELDS = {
    "stripeCustomerId": "stripe_customer_id",
    "stripeSubscriptionId": "stripe_subscription_id",
    "subscriptionStatus": "status",
    "currentPlan": "plan_type",
    "subscriptionStartDate": "current_period_start",
    "subscriptionEndDate": "current_period_end",
}
PLAN_FIELDS = {
    "stripeCustomerId": "stripe_customer_id",
    "stripeSubscriptionId": "stripe_subscription_id",
    "status": "status",
    "planType": "plan_type",
    "currentPeriodStart": "current_period_start",
    "currentPeriodEnd": "current_period_end",
    "cancelAtPeriodEnd": "cancel_at_period_end",
}
_MAX = {"stripe_customer_id": 255, "stripe_subscription_id": 255, "plan_type": 100}


def parse_status(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise wrong_type(path, value, "a subscription status")
    status = value.strip().lower()
    status = ALIASES.get(status, status)
    if status not in STATUSES:
        raise Reject(f"bad_value:{path}", f"{path} is {value!r}; known: {', '.join(STATUSES)}")
    return status


def subscription_from_record(key: str, layout: str, user_id: int, record: dict) -> SubscriptionRow | None:
    """The subscription the record describes, or None when it has none of the fields."""
    names = REAL_FIELDS if layout == "real" else PLAN_FIELDS
    present = [name for name in record if name in names]
    if not present:
        return None
    verbatim = Verbatim()
    values: dict[str, Any] = {
        "stripe_customer_id": None,
        "stripe_subscription_id": "",
        "status": "none",
        "plan_type": "",
        "current_period_start": None,
        "current_period_end": None,
        "cancel_at_period_end": False,
    }
    for name in present:
        column, value = names[name], record[name]
        if value is None:
            continue  # present but null: kept by `fields`, the column keeps its default
        if column == "status":
            values[column] = parse_status(value, name)
            verbatim.keep(name, value, values[column])
        elif column.startswith("current_period"):
            values[column] = parse_ts(value, name)
            verbatim.keep(name, value, to_ms(values[column]))
        elif column == "cancel_at_period_end":
            values[column] = parse_bool(value, name)
            verbatim.keep(name, value, values[column])
        else:
            text = parse_str(value, name, max_length=_MAX[column])
            if not text.strip():
                # An empty id is no id ("" would collide with every other empty customer id).
                verbatim[name] = value
                continue
            values[column] = text
    kv: dict[str, Any] = {"key": key, "layout": layout, "fields": present}
    if verbatim:
        kv["verbatim"] = dict(verbatim)
    if layout == "plan":
        extra = {name: value for name, value in record.items() if name not in names}
        if extra:
            kv["extra"] = extra
        kv["fields"] = list(record)
    return SubscriptionRow(user_id=user_id, metadata={"kv": kv}, **values)
