"""Rows -> legacy records: the pure half of the round trip (transform then render gives it back)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from kvmigrate.render import render_history, render_user_credits, render_user_tokens
from kvmigrate.transforms import FlagRow, LedgerRow
from kvmigrate.transforms.base import same_json

from .kvrecords import PLAN_CREDITS, PLAN_GMAIL, REAL_TOKENS, real_credits, same_for_old_code, tf


def as_stored(out) -> list[LedgerRow]:
    """The ledger as PostgreSQL would hold it: an opening migration row, then history by time."""
    history = sorted(out.account.history, key=lambda r: (r.created_at, r.metadata["kv_index"]))
    opening = LedgerRow(
        amount=out.account.balance - sum(r.amount for r in history),
        type="migration",
        reason="",
        created_at=datetime(1970, 1, 1, tzinfo=UTC),
        idempotency_key="kv-migration:x",
        metadata={},
    )
    return [opening, *history]


def round_trip(key: str, record: dict) -> dict:
    out = tf(key, copy.deepcopy(record))
    return render_user_credits(
        account=out.account, ledger=as_stored(out), subscription=out.subscription, flags=out.flags or []
    )


MESSY = [
    real_credits(),
    {"currentBalance": 250},
    real_credits(currentBalance=-60, isBlocked=True),
    real_credits(
        currentBalance="180", createdAt=1727740800, updatedAt="2024-11-02T00:00:00.000Z", isBlocked=0
    ),
    real_credits(monthlyAllowance=None, lastTopUp=None, currentPlan=None, stripeCustomerId=""),
    real_credits(referralCode="DUCK42", preferences={"theme": "dark", "n": [1, None]}),
    real_credits(notifications=[0, 1, False, True, None], badges=None, easterEggs=[]),
    {
        "isBlocked": False,
        "transactions": [
            {"amount": 5, "type": "credit", "timestamp": 1730505600000, "description": "out of order keys"},
            {"type": "credit", "amount": 5},
            {"type": "credit", "amount": 5, "description": None, "timestamp": None},
            {
                "type": "debit",
                "amount": -7,
                "description": "neg",
                "timestamp": 1730505600,
                "searchType": None,
            },
            {
                "type": "debit",
                "amount": "70",
                "description": "str",
                "timestamp": "2024-11-01T00:00:00Z",
                "x": [1],
            },
        ],
        "currentBalance": 3,
        "totalUsed": "77",
        "subscriptionStatus": "Cancelled",
        "subscriptionEndDate": "1733011200",
    },
]


@pytest.mark.parametrize("record", MESSY, ids=range(len(MESSY)))
def test_transform_then_render_gives_the_record_back_value_for_value(record):
    back = round_trip("user_credits:7", record)
    # value for value and in the same field order, plus what the old code reads where it had none
    assert same_for_old_code("user_credits:7", back, record), (back, record)


def test_history_order_is_the_records_own_even_when_not_by_time():
    record = real_credits()
    record["transactions"].insert(
        0, {"type": "credit", "amount": 1000, "description": "🦆", "timestamp": 1730600000000}
    )
    assert same_for_old_code("user_credits:7", round_trip("user_credits:7", record), record)


def test_duplicate_entries_come_back_as_many_times():
    entry = {"type": "debit", "amount": 10, "description": "company search", "timestamp": 1730505600000}
    record = {"currentBalance": 0, "transactions": [entry, dict(entry), dict(entry)]}
    assert same_for_old_code("user_credits:7", round_trip("user_credits:7", record), record)


def test_app_changes_show_in_the_rendered_record():
    record = real_credits()
    out = tf("user_credits:7", copy.deepcopy(record))
    ledger = as_stored(out)
    ledger.append(
        LedgerRow(
            amount=-10,
            type="deduction",
            reason="company_search",
            created_at=datetime(2024, 12, 1, tzinfo=UTC),
            idempotency_key="api:1",
            metadata={"operation": "company_search"},
        )
    )
    out.account.balance = 170
    flags = [*out.flags, FlagRow("notification", 2), FlagRow("badge", 3)]
    flags.remove(FlagRow("notification", 1))
    back = render_user_credits(account=out.account, ledger=ledger, subscription=out.subscription, flags=flags)
    assert back["currentBalance"] == 170
    assert back["transactions"][-1] == {
        "type": "debit",
        "amount": 10,
        "description": "company search search",  # the platform's words (kvmigrate.legacy_text)
        "timestamp": 1733011200000,
        "searchType": "company_search",
        "success": True,
    }
    assert back["transactions"][:2] == record["transactions"]
    assert back["notifications"] == [None, None, 1, 1]
    assert back["badges"] == [1, None, None, 1]


def test_a_changed_value_wins_over_its_verbatim_form():
    record = real_credits(currentBalance="180")
    out = tf("user_credits:7", copy.deepcopy(record))
    out.account.balance = 90
    back = render_user_credits(
        account=out.account, ledger=as_stored(out), subscription=out.subscription, flags=out.flags
    )
    assert back["currentBalance"] == 90


def test_entries_of_an_older_kv_version_are_left_out():
    old = tf("user_credits:7", real_credits())
    newer = real_credits()
    newer["transactions"] = newer["transactions"][1:]
    out = tf("user_credits:7", newer)
    ledger = sorted(old.account.history, key=lambda r: r.created_at)
    assert render_history(ledger, out.account.metadata["kv"]["tx"]) == newer["transactions"]


def test_plan_layout_account_renders_in_the_platforms_shape():
    out = tf("credits:8", copy.deepcopy(PLAN_CREDITS))
    back = render_user_credits(account=out.account, ledger=as_stored(out))
    # the platform's own shape: every field its old code reads, in its order
    assert list(back) == [
        "currentBalance", "lastTopUp", "totalUsed", "isBlocked", "transactions", "monthlyAllowance",
        "createdAt", "updatedAt",
    ]  # fmt: skip
    assert back["monthlyAllowance"] == 250 and back["lastTopUp"] == back["createdAt"]
    assert all(type(back[name]) is int for name in ("lastTopUp", "createdAt", "updatedAt"))
    assert back["currentBalance"] == 500 and back["totalUsed"] == 4750 and back["isBlocked"] is False
    assert [(t["type"], t["amount"]) for t in back["transactions"]] == [
        ("credit", 250),
        ("credit", 5000),
        ("debit", 4500),
        ("debit", 260),
        ("credit", 10),
    ]


def test_subscription_or_flags_without_account_render_a_fresh_account():
    sub = tf(
        "subscription:8", {"status": "active", "planType": "ugly-duckling", "stripeCustomerId": "cus_9"}
    ).subscription
    changed = datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)
    back = render_user_credits(
        account=None, subscription=sub, flags=[FlagRow("notification", 1)], changed_at=changed
    )
    assert back == {
        "currentBalance": 0,
        "lastTopUp": 1796119200123,  # integer ms: the change that created the record
        "totalUsed": 0,
        "isBlocked": False,
        "transactions": [],
        "monthlyAllowance": 250,
        "createdAt": 1796119200123,
        "updatedAt": 1796119200123,
        "notifications": [None, 1],
        "stripeCustomerId": "cus_9",
        "subscriptionStatus": "active",
        "currentPlan": "ugly-duckling",
    }


@pytest.mark.parametrize(
    "record",
    [
        REAL_TOKENS,
        {
            k: v
            for k, v in REAL_TOKENS.items()
            if k not in ("gmailRefreshToken", "gmailEmail", "gmailDisplayName")
        },
        {**REAL_TOKENS, "gmailEmail": "", "tokenExpiry": "1730509200", "extraField": {"a": 1}},
        {"gmailRefreshToken": "1//r", "gmailAccessToken": None, "scopes": []},
    ],
)
def test_tokens_round_trip(record):
    back = render_user_tokens(tf("user_tokens:7", copy.deepcopy(record)).token)
    assert same_json(back, record) and list(back) == list(record)


def test_plan_gmail_renders_in_the_platforms_shape():
    back = render_user_tokens(tf("gmail:8", PLAN_GMAIL).token)
    assert back == {
        "gmailAccessToken": "ya29.plan-access",
        "gmailRefreshToken": "1//plan-refresh",
        "tokenExpiry": 1730509200000,
        "scopes": PLAN_GMAIL["scope"].split(),
        "gmailEmail": "plan@example.com",
    }
