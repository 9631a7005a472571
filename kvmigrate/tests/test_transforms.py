"""Transforms against ../shared/kv-format.md: every tolerate line and every rejection (no database)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kvmigrate.transforms import FlagRow, Reject
from kvmigrate.transforms.base import parse_int, parse_ts, same_json, to_ms
from kvmigrate.transforms.credits import credit_kind

from .kvrecords import PLAN_CREDITS, PLAN_GMAIL, PLAN_SUBSCRIPTION, REAL_TOKENS, real_credits, tf


def ms(y, mo, d, h=0, mi=0, s=0):
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def reject_code(key, value) -> str:
    with pytest.raises(Reject) as info:
        tf(key, value)
    return info.value.code


# --- user_credits (real layout) -----------------------------------------------------------------


def test_user_credits_fans_out_into_account_history_subscription_and_flags():
    out = tf("user_credits:7", real_credits())
    assert out.user_id == 7 and out.family == "user_credits" and out.layout == "real"
    assert out.domains == ("credits", "billing", "notifications")
    account = out.account
    assert (account.balance, account.total_used, account.is_blocked, account.monthly_allowance) == (
        180,
        70,
        False,
        250,
    )
    assert account.total_purchased is None  # the real layout has none: the ledger's purchases
    assert account.last_top_up == ms(2024, 11, 1)
    assert account.created_at == ms(2024, 10, 1)
    assert account.last_updated == ms(2024, 11, 2)
    welcome, search = account.history
    assert (welcome.amount, welcome.type, welcome.reason) == (
        250,
        "bonus",
        "Welcome bonus - 250 free credits",
    )
    assert welcome.metadata == {
        "source": "kv",
        "key": "user_credits:7",
        "kv_index": 0,
        "legacy_type": "credit",
    }
    assert (search.amount, search.type, search.created_at) == (-70, "deduction", ms(2024, 11, 2))
    assert search.metadata["legacy_type"] == "debit"
    assert search.metadata["searchType"] == "company_and_contacts" and search.metadata["success"] is True
    assert welcome.idempotency_key.startswith("kv:") and welcome.idempotency_key != search.idempotency_key
    kv = account.metadata["kv"]
    assert kv["key"] == "user_credits:7" and kv["layout"] == "real"
    assert kv["fields"] == list(real_credits())
    assert kv["tx"] == [welcome.idempotency_key[3:], search.idempotency_key[3:]]
    assert kv["flags"] == {"notifications": [None, 1, None, 1], "badges": [1], "easterEggs": [None, None, 1]}
    assert "extra" not in kv and "verbatim" not in kv
    sub = out.subscription
    assert (sub.stripe_customer_id, sub.stripe_subscription_id, sub.status, sub.plan_type) == (
        "cus_Q1a2b3",
        "sub_1P9x8y",
        "active",
        "ugly-duckling",
    )
    assert (sub.current_period_start, sub.current_period_end) == (ms(2024, 11, 1), ms(2024, 12, 1))
    assert sub.cancel_at_period_end is False
    assert out.flags == [
        FlagRow("notification", 1),
        FlagRow("notification", 3),
        FlagRow("badge", 0),
        FlagRow("easter_egg", 2),
    ]
    assert out.flags_at == ms(2024, 11, 2)


def test_negative_balance_on_a_blocked_account_is_legal_data():
    out = tf("user_credits:7", real_credits(currentBalance=-60, isBlocked=True))
    assert out.account.balance == -60 and out.account.is_blocked is True


@pytest.mark.parametrize("blocked", [False, ...])
def test_negative_balance_not_blocked_is_rejected(blocked):
    assert reject_code("user_credits:7", real_credits(currentBalance=-1, isBlocked=blocked)) == (
        "negative_balance_not_blocked"
    )


def test_minimal_record_tolerates_missing_arrays_and_optional_fields():
    out = tf("user_credits:9", {"currentBalance": 250})
    assert out.domains == ("credits",)
    assert out.subscription is None and out.flags is None
    account = out.account
    assert (account.balance, account.total_used, account.is_blocked) == (250, 0, False)
    assert account.monthly_allowance is None and account.last_top_up is None and account.created_at is None
    assert account.history == []


def test_unknown_extra_fields_are_kept():
    record = real_credits(referralCode="DUCK42", preferences={"theme": "dark"})
    record["transactions"][1]["requestId"] = "r-1"
    out = tf("user_credits:7", record)
    assert out.account.metadata["kv"]["extra"] == {"referralCode": "DUCK42", "preferences": {"theme": "dark"}}
    assert out.account.history[1].metadata["extra"] == {"requestId": "r-1"}


def test_only_flag_arrays_present_gives_flags_only_for_them():
    out = tf("user_credits:7", {"currentBalance": 1, "badges": [1]})
    assert out.flags == [FlagRow("badge", 0)]
    assert out.account.metadata["kv"]["flags"] == {"badges": [1]}


def test_flag_values_zero_false_and_null_mean_not_shown():
    out = tf("user_credits:7", {"currentBalance": 1, "notifications": [0, False, None, True, 1, 1.0]})
    assert [f.notification_id for f in out.flags] == [3, 4, 5]


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"notifications": {"1": 1}}, "wrong_type:notifications"),
        ({"badges": [2]}, "wrong_type:badges[]"),
        ({"easterEggs": ["yes"]}, "wrong_type:easterEggs[]"),
    ],
)
def test_bad_flag_arrays_are_rejected(changes, code):
    assert reject_code("user_credits:7", real_credits(**changes)) == code


def test_transaction_order_is_kept_in_kv_index_and_prepended_entries_work():
    record = real_credits()
    record["transactions"].insert(
        0, {"type": "credit", "amount": 1000, "description": "🦆 5ducks", "timestamp": 1730600000000}
    )
    out = tf("user_credits:7", record)
    assert [row.metadata["kv_index"] for row in out.account.history] == [0, 1, 2]
    assert out.account.history[0].type == "bonus"


@pytest.mark.parametrize(
    ("description", "kind"),
    [
        ("Welcome bonus - 250 free credits", "bonus"),
        ("🎉 Found the 5ducks easter egg", "bonus"),
        (
            "Monthly top-up for November 2024 (The Duckling subscription (2,000 base + 3,000 bonus))",
            "purchase",
        ),
        ("Monthly top-up for November 2024 (free tier)", "allowance"),
        ("Monthly allowance - 250 credits", "allowance"),
        ("Ugly Duckling plan - 5000 monthly credits", "purchase"),
        ("Easter egg: 5ducks - 1000 bonus credits", "bonus"),
        ("ugly-duckling subscription activation bonus", "purchase"),
        ("Purchased 5000 credits", "purchase"),
        ("Admin goodwill", "bonus"),
    ],
)
def test_credit_entries_map_to_what_they_were(description, kind):
    assert credit_kind(description) == kind


def test_identical_entries_get_distinct_stable_idempotency_keys():
    entry = {"type": "debit", "amount": 10, "description": "company search", "timestamp": 1730505600000}
    record = {"currentBalance": 0, "transactions": [dict(entry), dict(entry), dict(entry)]}
    keys = [row.idempotency_key for row in tf("user_credits:7", record).account.history]
    assert len(set(keys)) == 3
    # stable across runs and across the position of the copies
    record["transactions"].insert(1, {"type": "credit", "amount": 5, "description": "x", "timestamp": 1})
    again = [row.idempotency_key for row in tf("user_credits:7", record).account.history]
    assert set(keys) <= set(again)


def test_debit_amount_written_negative_is_still_a_deduction_and_kept_verbatim():
    record = {
        "currentBalance": 0,
        "transactions": [{"type": "debit", "amount": -70, "description": "d", "timestamp": 1730505600000}],
    }
    (row,) = tf("user_credits:7", record).account.history
    assert row.amount == -70 and row.metadata["verbatim"] == {"amount": -70}


def test_entry_without_timestamp_or_description_moves_with_a_fallback_time():
    record = {
        "currentBalance": 5,
        "createdAt": 1727740800000,
        "transactions": [{"type": "credit", "amount": 5}],
    }
    (row,) = tf("user_credits:7", record).account.history
    assert row.created_at == ms(2024, 10, 1) and row.reason == ""
    assert row.metadata["fields"] == ["type", "amount"]


@pytest.mark.parametrize(
    ("record", "code"),
    [
        ({}, "missing:currentBalance"),
        ({"currentBalance": "lots"}, "wrong_type:currentBalance"),
        ({"currentBalance": 1.5}, "wrong_type:currentBalance"),
        ({"currentBalance": True}, "wrong_type:currentBalance"),
        ({"currentBalance": None}, "wrong_type:currentBalance"),
        ({"currentBalance": 2**63}, "out_of_range:currentBalance"),
        ({"currentBalance": 1, "totalUsed": -5}, "out_of_range:totalUsed"),
        ({"currentBalance": 1, "isBlocked": "maybe"}, "wrong_type:isBlocked"),
        ({"currentBalance": 1, "monthlyAllowance": 2**40}, "out_of_range:monthlyAllowance"),
        ({"currentBalance": 1, "createdAt": "yesterday"}, "bad_timestamp:createdAt"),
        ({"currentBalance": 1, "updatedAt": -1}, "bad_timestamp:updatedAt"),
        ({"currentBalance": 1, "lastTopUp": 10**20}, "bad_timestamp:lastTopUp"),
        ({"currentBalance": 1, "transactions": {"0": {}}}, "wrong_type:transactions"),
        ({"currentBalance": 1, "transactions": ["credit 5"]}, "wrong_type:transactions[]"),
        ({"currentBalance": 1, "transactions": [{"amount": 5}]}, "missing:transactions[].type"),
        ({"currentBalance": 1, "transactions": [{"type": "credit"}]}, "missing:transactions[].amount"),
        (
            {"currentBalance": 1, "transactions": [{"type": "gift", "amount": 5}]},
            "bad_value:transactions[].type",
        ),
        (
            {"currentBalance": 1, "transactions": [{"type": "credit", "amount": "5x"}]},
            "wrong_type:transactions[].amount",
        ),
        (
            {"currentBalance": 1, "transactions": [{"type": "credit", "amount": 5, "description": 7}]},
            "wrong_type:transactions[].description",
        ),
        (
            {"currentBalance": 1, "transactions": [{"type": "credit", "amount": 5, "timestamp": "soon"}]},
            "bad_timestamp:transactions[].timestamp",
        ),
        ({"currentBalance": 1, "subscriptionStatus": "expired"}, "bad_value:subscriptionStatus"),
        ({"currentBalance": 1, "stripeCustomerId": 42}, "wrong_type:stripeCustomerId"),
        ({"currentBalance": 1, "currentPlan": "x" * 101}, "too_long:currentPlan"),
        ({"currentBalance": 1, "subscriptionEndDate": "never"}, "bad_timestamp:subscriptionEndDate"),
        ({"currentBalance": 1, "note": "a\x00b"}, "bad_text"),
        ({"currentBalance": 1, "note": "\ud800"}, "bad_text"),
    ],
)
def test_user_credits_rejections(record, code):
    assert reject_code("user_credits:7", record) == code


@pytest.mark.parametrize("value", [[1, 2], "plain text", 42, None])
def test_user_credits_must_be_an_object(value):
    assert reject_code("user_credits:7", value) == "not_an_object"


@pytest.mark.parametrize("ident", ["abc", "", "-7", "07", "7.0", " 7", "7/8", "٧"])
def test_known_prefix_with_a_non_integer_id_is_bad_id(ident):
    assert reject_code(f"user_credits:{ident}", {"currentBalance": 1}) == "bad_id"


def test_reject_detail_names_the_field_and_index():
    with pytest.raises(Reject) as info:
        tf(
            "user_credits:7",
            {
                "currentBalance": 1,
                "transactions": [{"type": "credit", "amount": 1}, {"type": "x", "amount": 1}],
            },
        )
    assert "transactions[1].type" in info.value.detail


# --- numbers, timestamps (tolerated forms) --------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [(180, 180), (180.0, 180), ("180", 180), (" -5 ", -5), ("1e3", 1000)]
)
def test_numbers_as_numeric_strings_and_integral_floats(value, expected):
    assert parse_int(value, "x") == expected


@pytest.mark.parametrize(
    "value",
    [1730419200000, 1730419200, "1730419200000", "1730419200", "2024-11-01T00:00:00Z",
     "2024-11-01T00:00:00.000Z", "2024-11-01T01:00:00+01:00", "2024-11-01 00:00:00", 1730419200.0],
)  # fmt: skip
def test_timestamps_in_ms_seconds_and_iso(value):
    assert parse_ts(value, "t") == ms(2024, 11, 1)


def test_to_ms_is_exact():
    assert to_ms(parse_ts(1730419200123, "t")) == 1730419200123
    assert isinstance(to_ms(parse_ts(1730419200123, "t")), int)


def test_same_json_tells_booleans_from_numbers():
    assert same_json(1, 1.0) and not same_json(1, True) and not same_json(0, None)
    assert same_json({"a": [1, None]}, {"a": [1.0, None]}) and not same_json({"a": 1}, {"a": "1"})


def test_non_canonical_values_are_kept_verbatim():
    record = real_credits(
        currentBalance="180", createdAt=1727740800, updatedAt="2024-11-02T00:00:00Z", isBlocked=0
    )
    out = tf("user_credits:7", record)
    assert out.account.balance == 180 and out.account.created_at == ms(2024, 10, 1)
    assert out.account.metadata["kv"]["verbatim"] == {
        "currentBalance": "180",
        "createdAt": 1727740800,
        "updatedAt": "2024-11-02T00:00:00Z",
        "isBlocked": 0,
    }


# --- subscription ------------------------------------------------------------------------------


def test_subscription_fields_absent_on_the_free_tier():
    record = real_credits(
        stripeCustomerId=..., stripeSubscriptionId=..., subscriptionStatus=..., currentPlan=...,
        subscriptionStartDate=..., subscriptionEndDate=...,
    )  # fmt: skip
    assert tf("user_credits:7", record).subscription is None


def test_customer_without_subscription_has_status_none():
    record = {"currentBalance": 1, "stripeCustomerId": "cus_1"}
    sub = tf("user_credits:7", record).subscription
    assert (sub.stripe_customer_id, sub.status, sub.plan_type, sub.stripe_subscription_id) == (
        "cus_1",
        "none",
        "",
        "",
    )


def test_plan_absent_after_a_cancel():
    record = real_credits(subscriptionStatus="canceled", currentPlan=...)
    sub = tf("user_credits:7", record).subscription
    assert sub.status == "canceled" and sub.plan_type == ""


def test_plan_subscription_record():
    out = tf("subscription:8", PLAN_SUBSCRIPTION)
    assert out.domains == ("billing",) and out.layout == "plan"
    sub = out.subscription
    assert sub.status == "canceled"  # British spelling accepted
    assert sub.plan_type == "duckin-awesome"
    assert sub.current_period_start == ms(2024, 11, 1)  # epoch seconds (Stripe's)
    assert sub.current_period_end == ms(2024, 12, 1)  # ISO 8601
    assert sub.cancel_at_period_end is True
    assert sub.metadata["kv"]["verbatim"]["status"] == "cancelled"


def test_plan_subscription_unknown_plan_is_kept_and_extras_too():
    out = tf("subscription:8", {**PLAN_SUBSCRIPTION, "planType": "golden-goose", "coupon": "X"})
    assert out.subscription.plan_type == "golden-goose"
    assert out.subscription.metadata["kv"]["extra"] == {"coupon": "X"}


@pytest.mark.parametrize(
    ("record", "code"),
    [
        ({"planType": "x", "status": "zombie"}, "bad_value:status"),
        ({"status": 3}, "wrong_type:status"),
        ({"status": "active", "cancelAtPeriodEnd": "soon"}, "wrong_type:cancelAtPeriodEnd"),
        ({"status": "active", "currentPeriodEnd": "later"}, "bad_timestamp:currentPeriodEnd"),
        ({"coupon": "X"}, "missing:status"),
        (["active"], "not_an_object"),
    ],
)
def test_plan_subscription_rejections(record, code):
    assert reject_code("subscription:8", record) == code


# --- gmail ---------------------------------------------------------------------------------


def test_user_tokens_record():
    out = tf("user_tokens:7", REAL_TOKENS)
    assert out.domains == ("gmail",)
    token = out.token
    assert token.access_token == "ya29.a0Af-test-access" and token.refresh_token == "1//0g-test-refresh"
    assert token.expires_at == datetime(2024, 11, 2, 1, 0, tzinfo=UTC)
    assert token.scopes == REAL_TOKENS["scopes"]
    assert (token.email, token.display_name) == ("someone@example.com", "Some One")
    assert token.created_at == ms(2024, 10, 1) and token.updated_at == ms(2024, 11, 2)


def test_user_tokens_tolerates_missing_refresh_email_and_name():
    record = {
        k: v
        for k, v in REAL_TOKENS.items()
        if k not in ("gmailRefreshToken", "gmailEmail", "gmailDisplayName")
    }
    token = tf("user_tokens:7", record).token
    assert token.refresh_token is None and token.email == "" and token.display_name == ""


def test_refresh_token_without_access_token_moves():
    token = tf("gmail:8", {"refreshToken": "1//r"}).token
    assert token.access_token is None and token.refresh_token == "1//r"


@pytest.mark.parametrize(
    "record",
    [
        {"email": "a@b.c"},
        {"accessToken": "", "refreshToken": "  "},
        {"accessToken": None, "refreshToken": None},
    ],
)
def test_neither_token_is_quarantined(record):
    assert reject_code("gmail:8", record) == "no_gmail_token"


def test_plan_gmail_scope_as_string_or_list():
    token = tf("gmail:8", PLAN_GMAIL).token
    assert token.scopes == PLAN_GMAIL["scope"].split()
    assert token.expires_at == datetime(2024, 11, 2, 1, 0, tzinfo=UTC)
    assert tf("gmail:8", {**PLAN_GMAIL, "scope": ["a", "b"]}).token.scopes == ["a", "b"]


@pytest.mark.parametrize(
    ("record", "code"),
    [
        ({"accessToken": 5}, "wrong_type:accessToken"),
        ({"accessToken": "a", "scope": 5}, "wrong_type:scope"),
        ({"accessToken": "a", "scope": ["a", 5]}, "wrong_type:scope[]"),
        ({"accessToken": "a", "expiresAt": "tomorrow"}, "bad_timestamp:expiresAt"),
        ({"accessToken": "a", "email": "x" * 255}, "too_long:email"),
        ("ya29", "not_an_object"),
    ],
)
def test_gmail_rejections(record, code):
    assert reject_code("gmail:8", record) == code


# --- notifications (plan) -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [{"shownNotifications": [1, "3", 3]}, [1, 3], ["1", 3.0]])
def test_plan_notifications_object_or_bare_list(value):
    out = tf("notifications:8", value)
    assert out.domains == ("notifications",)
    assert out.flags == [FlagRow("notification", 1), FlagRow("notification", 3)]


def test_plan_notifications_extra_fields_kept():
    out = tf("notifications:8", {"shownNotifications": [], "lastSeen": 5})
    assert out.flags == [] and out.flags_extra == {"lastSeen": 5}


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ({"shown": [1]}, "missing:shownNotifications"),
        ({"shownNotifications": 1}, "wrong_type:shownNotifications"),
        ([-1], "out_of_range:value[]"),
        (["one"], "wrong_type:value[]"),
        ("1,3", "not_an_object"),
    ],
)
def test_plan_notifications_rejections(value, code):
    assert reject_code("notifications:8", value) == code


# --- plan credits ------------------------------------------------------------------------------


def test_plan_credits_record():
    out = tf("credits:8", PLAN_CREDITS)
    assert out.domains == ("credits",) and out.layout == "plan"
    account = out.account
    assert (account.balance, account.total_purchased, account.total_used) == (500, 5000, 4750)
    assert account.last_updated == ms(2024, 11, 2)
    assert [(r.type, r.amount) for r in account.history] == [
        ("purchase", 5000),
        ("bonus", 250),
        ("deduction", -4500),  # a deduction written negative
        ("deduction", -260),  # and one written positive: always stored negative
        ("refund", 10),
    ]
    assert account.history[0].metadata["legacy_type"] == "purchase"


def test_plan_credits_numbers_as_strings_and_timestamps_in_seconds():
    record = {"currentBalance": "500", "totalUsed": "0", "lastUpdated": "1730505600", "transactions": []}
    account = tf("credits:8", record).account
    assert account.balance == 500 and account.last_updated == ms(2024, 11, 2)


@pytest.mark.parametrize(
    ("record", "code"),
    [
        (
            {"currentBalance": 1, "transactions": [{"type": "gift", "amount": 1}]},
            "bad_value:transactions[].type",
        ),
        ({"currentBalance": 1, "totalPurchased": "many"}, "wrong_type:totalPurchased"),
        ({"currentBalance": -5}, "negative_balance_not_blocked"),
        ({"totalUsed": 5}, "missing:currentBalance"),
    ],
)
def test_plan_credits_rejections(record, code):
    assert reject_code("credits:8", record) == code


# --- firebase_uid --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [7, "7", 7.0])
def test_firebase_uid_maps_to_the_user(value):
    out = tf("firebase_uid:aB3dE5fG7hI9", value)
    assert out.domains == ("accounts",) and out.user_id == 7
    assert (out.firebase.uid, out.firebase.user_id) == ("aB3dE5fG7hI9", 7)


@pytest.mark.parametrize(
    ("key", "value", "code"),
    [
        ("firebase_uid:", 7, "bad_id"),
        ("firebase_uid: padded ", 7, "bad_id"),
        ("firebase_uid:" + "u" * 129, 7, "bad_id"),
        ("firebase_uid:abc", "seven", "wrong_type:value"),
        ("firebase_uid:abc", {"userId": 7}, "wrong_type:value"),
        ("firebase_uid:abc", 0, "out_of_range:value"),
        ("firebase_uid:abc", -3, "out_of_range:value"),
    ],
)
def test_firebase_uid_rejections(key, value, code):
    assert reject_code(key, value) == code
