"""Handwritten KV records for the tests: the contract's examples and their messy variants."""

from __future__ import annotations

import copy

from kvmigrate.transforms import transform

REAL_CREDITS = {
    "currentBalance": 180,
    "lastTopUp": 1730419200000,
    "totalUsed": 70,
    "isBlocked": False,
    "monthlyAllowance": 250,
    "createdAt": 1727740800000,
    "updatedAt": 1730505600000,
    "transactions": [
        {
            "type": "credit",
            "amount": 250,
            "description": "Welcome bonus - 250 free credits",
            "timestamp": 1727740800000,
        },
        {
            "type": "debit",
            "amount": 70,
            "description": "company and contacts search",
            "timestamp": 1730505600000,
            "searchType": "company_and_contacts",
            "success": True,
        },
    ],
    "notifications": [None, 1, None, 1],
    "badges": [1],
    "easterEggs": [None, None, 1],
    "stripeCustomerId": "cus_Q1a2b3",
    "stripeSubscriptionId": "sub_1P9x8y",
    "subscriptionStatus": "active",
    "currentPlan": "ugly-duckling",
    "subscriptionStartDate": 1730419200000,
    "subscriptionEndDate": 1733011200000,
}

REAL_TOKENS = {
    "gmailAccessToken": "ya29.a0Af-test-access",
    "gmailRefreshToken": "1//0g-test-refresh",
    "tokenExpiry": 1730509200000,
    "scopes": [
        "https://www.googleapis.com/auth/gmail.modify",
        "https://www.googleapis.com/auth/userinfo.email",
        "https://www.googleapis.com/auth/userinfo.profile",
    ],
    "createdAt": 1727740800000,
    "updatedAt": 1730505600000,
    "gmailEmail": "someone@example.com",
    "gmailDisplayName": "Some One",
}

PLAN_CREDITS = {
    "currentBalance": 500,
    "totalPurchased": 5000,
    "totalUsed": 4750,
    "lastUpdated": 1730505600000,
    "transactions": [
        {"type": "purchase", "amount": 5000, "description": "ugly-duckling", "timestamp": 1730419200000},
        {"type": "bonus", "amount": 250, "description": "welcome", "timestamp": 1727740800000},
        {"type": "deduction", "amount": -4500, "description": "full searches", "timestamp": 1730500000000},
        {"type": "deduction", "amount": 260, "description": "searches", "timestamp": 1730500001000},
        {"type": "refund", "amount": 10, "description": "failed search", "timestamp": 1730500002000},
    ],
}

PLAN_SUBSCRIPTION = {
    "stripeCustomerId": "cus_plan1",
    "stripeSubscriptionId": "sub_plan1",
    "status": "cancelled",
    "planType": "duckin-awesome",
    "currentPeriodStart": 1730419200,
    "currentPeriodEnd": "2024-12-01T00:00:00Z",
    "cancelAtPeriodEnd": True,
}

PLAN_GMAIL = {
    "accessToken": "ya29.plan-access",
    "refreshToken": "1//plan-refresh",
    "expiresAt": 1730509200,
    "email": "plan@example.com",
    "scope": "https://www.googleapis.com/auth/gmail.modify https://www.googleapis.com/auth/userinfo.email",
}


def real_credits(**changes) -> dict:
    record = copy.deepcopy(REAL_CREDITS)
    for name, value in changes.items():
        if value is ...:
            record.pop(name, None)
        else:
            record[name] = value
    return record


def split_key(key: str) -> tuple[str, str, int | None]:
    """A test-local stand-in for codec.parse_key + its strict user id."""
    prefix, _, ident = key.partition(":")
    user_id = int(ident) if ident.isascii() and ident.isdigit() and not ident.startswith("0") else None
    return prefix, ident, user_id


def tf(key: str, value):
    prefix, ident, user_id = split_key(key)
    return transform(key, prefix, ident, user_id, value)


# The fields of `user_credits:{id}` the platform's old code reads: reverse and the mirror always
# write them (a store's record that lacked one, or held null, gets the platform's default).
READ_BY_OLD_CODE = (
    "currentBalance", "lastTopUp", "totalUsed", "isBlocked", "transactions", "monthlyAllowance",
    "createdAt", "updatedAt",
)  # fmt: skip


def same_for_old_code(key: str, rendered, original) -> bool:
    """A record given back value for value, plus the fields the old code reads where it had none.

    Every field of the original comes back equal and in its order (a null read by the old code
    may become its value); what is added is only the old code's missing fields, all non-null.
    """
    from kvmigrate.transforms.base import same_json

    if not key.startswith("user_credits:") or not isinstance(original, dict):
        return same_json(rendered, original) and (
            not isinstance(original, dict) or list(rendered) == list(original)
        )
    for name, value in original.items():
        if name in READ_BY_OLD_CODE and value is None:
            continue
        if name not in rendered or not same_json(rendered[name], value):
            return False
    if [name for name in rendered if name in original] != list(original):
        return False
    added = set(rendered) - set(original)
    return added <= set(READ_BY_OLD_CODE) and all(rendered.get(n) is not None for n in READ_BY_OLD_CODE)
