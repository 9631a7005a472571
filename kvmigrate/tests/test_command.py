"""`manage.py kvmigrate` on handwritten stores: what moves, what is quarantined, re-runs, dry runs."""

from __future__ import annotations

import copy
import functools
import json

import pytest
from django.core.management import call_command
from django.db import connection

from accounts.models import User
from billing.models import Subscription
from credits.models import CreditAccount, CreditTransaction
from credits.reconcile import find_mismatches
from gmail.models import GmailToken
from kvmigrate.codec import decode_value
from kvmigrate.models import MigratedRecord, MigrationRun, QuarantinedRecord
from kvmigrate.services import LOCK_ID
from notifications.models import UserNotification

from .helpers import kvmigrate, rows, snapshot, table_counts, write_dump
from .kvrecords import (
    PLAN_CREDITS,
    PLAN_GMAIL,
    PLAN_SUBSCRIPTION,
    REAL_TOKENS,
    real_credits,
    same_for_old_code,
)

pytestmark = pytest.mark.django_db

GOOD = {
    "user_credits:1": real_credits(),
    "user_tokens:1": REAL_TOKENS,
    "firebase_uid:fbUid1": 1,
    "user_credits:2": real_credits(
        currentBalance=-60,
        isBlocked=True,
        referralCode="DUCK-42",
        stripeCustomerId="cus_2",
        stripeSubscriptionId="sub_2",
    ),
    "credits:3": PLAN_CREDITS,
    "subscription:3": PLAN_SUBSCRIPTION,
    "gmail:3": PLAN_GMAIL,
    "notifications:3": {"shownNotifications": [1, "2"]},
    "user_credits:4": {"currentBalance": 250},
}
OTHER = {"session:abc": "plain text, not JSON", "User_credits:1": '"{}"', "cache:search/acme 1/page 1": "[1]"}
BAD = {
    "user_credits:5": ("raw", "{not json", "bad_json"),
    "user_credits:6": ([1, 2], None, "not_an_object"),
    "user_credits:abc": ({"currentBalance": 1}, None, "bad_id"),
    "credits:6": ({"currentBalance": "lots"}, None, "wrong_type:currentBalance"),
    "user_credits:7": ({"currentBalance": -5, "isBlocked": False}, None, "negative_balance_not_blocked"),
    "user_tokens:6": ({"gmailEmail": "x@example.com"}, None, "no_gmail_token"),
    "user_credits:999": ({"currentBalance": 1}, None, "unknown_user"),
    "firebase_uid:ghost": (999, None, "unknown_user"),
    "subscription:6": (
        {"status": "active", "currentPeriodEnd": "later"},
        None,
        "bad_timestamp:currentPeriodEnd",
    ),
    "notifications:6": ({"shown": []}, None, "missing:shownNotifications"),
    "user_credits:8": ({"currentBalance": 1, "note": "a\x00b"}, None, "bad_text"),
    "firebase_uid:fbUid1dup": (1, None, "conflict"),
    "credits:1": ({"currentBalance": 5}, None, "superseded"),
}


@pytest.fixture
def platform_users(db):
    return User.objects.bulk_create(
        [User(id=i, email=f"user{i}@example.com", password="!") for i in range(1, 9)]
    )


def store(tmp_path, **changes):
    records = {**copy.deepcopy(GOOD), **{k: v for k, (v, raw, _) in BAD.items() if raw is None}}
    records.update(changes)
    raw = {**OTHER, **{k: r for k, (_, r, _) in BAD.items() if r is not None}}
    return str(write_dump(tmp_path / "store.jsonl", records, raw=raw))


def report_of(tmp_path, *args) -> tuple[int, dict]:
    path = tmp_path / "report.json"
    code, _ = kvmigrate(*args, "--report", str(path))
    return code, json.loads(path.read_text())


def test_every_kind_of_bad_record_is_quarantined_with_its_reason_while_the_rest_moves(
    tmp_path, platform_users
):
    code, report = report_of(tmp_path, "--source", store(tmp_path))
    assert code == 3
    quarantined = {q.key: q for q in QuarantinedRecord.objects.all()}
    assert {k: q.reason_code for k, q in quarantined.items()} == {k: c for k, (_, _, c) in BAD.items()}
    assert quarantined["user_credits:5"].raw_value == "{not json"
    assert decode_value(quarantined["credits:6"].raw_value) == {"currentBalance": "lots"}
    assert (
        "already moved from user_credits:1" in quarantined["credits:1"].reason
        or "wins" in quarantined["credits:1"].reason
    )
    assert quarantined["user_credits:8"].raw_value.count("\\u0000") == 1  # stored as the store had it
    # A token record's raw value holds secrets: encrypted at rest, quarantined or not.
    tokens = quarantined["user_tokens:6"]
    assert tokens.raw_encrypted and "x@example.com" not in tokens.raw_value
    assert decode_value(tokens.raw_text()) == {"gmailEmail": "x@example.com"}
    assert not quarantined["user_credits:5"].raw_encrypted
    # the rest moved, and verified
    assert set(CreditAccount.objects.values_list("user_id", flat=True)) == {1, 2, 3, 4}
    assert GmailToken.objects.count() == 2 and Subscription.objects.count() == 3
    assert User.objects.get(id=1).firebase_uid == "fbUid1"
    totals = report["totals"]
    assert totals["quarantined"] == len(BAD) and totals["mismatched"] == 0
    assert totals["verified"] == totals["created"] > 0
    assert report["domains"]["other"]["skipped"] == len(OTHER)
    assert {q["key"] for q in report["quarantined"]} == set(BAD)
    run = MigrationRun.objects.get()
    assert run.status == "attention" and run.finished_at is not None and run.counts == report["domains"]
    assert list(find_mismatches()) == []


def test_real_layout_record_fans_out(tmp_path, platform_users):
    kvmigrate("--source", store(tmp_path))
    account = CreditAccount.objects.get(user_id=1)
    assert (account.balance, account.total_used, account.is_blocked, account.monthly_allowance) == (
        180,
        70,
        False,
        250,
    )
    ledger = list(CreditTransaction.objects.filter(user_id=1).order_by("created_at", "id"))
    assert [(t.type, t.amount, t.balance_after) for t in ledger] == [
        ("bonus", 250, 250),
        ("deduction", -70, 180),
    ]
    assert (
        ledger[1].metadata["searchType"] == "company_and_contacts"
        and ledger[1].metadata["legacy_type"] == "debit"
    )
    sub = Subscription.objects.get(user_id=1)
    assert (sub.status, sub.plan_type, sub.stripe_customer_id) == ("active", "ugly-duckling", "cus_Q1a2b3")
    flags = set(UserNotification.objects.filter(user_id=1).values_list("kind", "notification_id"))
    assert flags == {("notification", 1), ("notification", 3), ("badge", 0), ("easter_egg", 2)}
    token = GmailToken.objects.get(user_id=1)
    assert token.access_token == REAL_TOKENS["gmailAccessToken"]
    assert token.refresh_token == REAL_TOKENS["gmailRefreshToken"]
    raw = rows("SELECT access_token, refresh_token FROM gmail_tokens WHERE user_id = 1")[0]
    assert REAL_TOKENS["gmailAccessToken"] not in raw[0] and REAL_TOKENS["gmailRefreshToken"] not in raw[1]
    blocked = CreditAccount.objects.get(user_id=2)
    assert (blocked.balance, blocked.is_blocked) == (-60, True)
    assert blocked.metadata["kv"]["extra"] == {"referralCode": "DUCK-42"}
    # 250 + 0 history: the opening migration row carries what the history does not explain
    minimal = list(CreditTransaction.objects.filter(user_id=4).values_list("type", "amount"))
    assert minimal == [("migration", 250)]


def test_plan_layout_records(tmp_path, platform_users):
    kvmigrate("--source", store(tmp_path))
    account = CreditAccount.objects.get(user_id=3)
    assert (account.balance, account.total_purchased, account.total_used) == (500, 5000, 4750)
    assert sum(CreditTransaction.objects.filter(user_id=3).values_list("amount", flat=True)) == 500
    sub = Subscription.objects.get(user_id=3)
    assert (sub.status, sub.plan_type, sub.cancel_at_period_end) == ("canceled", "duckin-awesome", True)
    token = GmailToken.objects.get(user_id=3)
    assert token.scopes == PLAN_GMAIL["scope"].split() and token.refresh_token == "1//plan-refresh"
    assert set(UserNotification.objects.filter(user_id=3).values_list("notification_id", flat=True)) == {1, 2}


def test_a_rerun_is_a_no_op(tmp_path, platform_users):
    path = store(tmp_path)
    kvmigrate("--source", path)
    before, counts = snapshot(), table_counts()
    stamps = (
        sorted(MigratedRecord.objects.values_list("key", "updated_at")),
        sorted(Subscription.objects.values_list("user_id", "updated_at")),
        sorted(GmailToken.objects.values_list("user_id", "updated_at")),
        sorted(CreditAccount.objects.values_list("user_id", "last_updated")),
    )
    code, report = report_of(tmp_path, "--source", path)
    assert code == 3  # the same quarantined records, still there
    assert snapshot() == before
    after = table_counts()
    assert after.pop("kvmigrate_runs") == counts.pop("kvmigrate_runs") + 1 and after == counts
    assert stamps == (
        sorted(MigratedRecord.objects.values_list("key", "updated_at")),
        sorted(Subscription.objects.values_list("user_id", "updated_at")),
        sorted(GmailToken.objects.values_list("user_id", "updated_at")),
        sorted(CreditAccount.objects.values_list("user_id", "last_updated")),
    )
    assert report["totals"]["created"] == report["totals"]["updated"] == 0
    assert report["totals"]["unchanged"] > 0 and report["totals"]["mismatched"] == 0


def test_a_record_changed_in_the_store_is_updated_and_its_ledger_appended(tmp_path, platform_users):
    kvmigrate("--source", store(tmp_path))
    changed = real_credits(currentBalance=170, totalUsed=80, updatedAt=1730600000000)
    changed["transactions"].append(
        {"type": "debit", "amount": 10, "description": "company search", "timestamp": 1730600000000,
         "searchType": "company_search", "success": True}
    )  # fmt: skip
    _, report = report_of(tmp_path, "--source", store(tmp_path, **{"user_credits:1": changed}))
    assert report["domains"]["credits"]["updated"] == 1 and report["domains"]["credits"]["mismatched"] == 0
    ledger = list(CreditTransaction.objects.filter(user_id=1).order_by("id").values_list("type", "amount"))
    assert ledger == [("bonus", 250), ("deduction", -70), ("deduction", -10)]
    assert CreditAccount.objects.get(user_id=1).balance == 170
    assert list(find_mismatches()) == []
    call_command("credits_reconcile")


def test_dry_run_writes_nothing(tmp_path, platform_users):
    users_csv = tmp_path / "users.csv"
    users_csv.write_text("id,email,username,created_at\n50,new@example.com,new,2024-09-01T00:00:00Z\n")
    before = table_counts()
    sequence = rows("SELECT pg_sequence_last_value(pg_get_serial_sequence('users', 'id')::regclass)")
    code, report = report_of(
        tmp_path, "--source", store(tmp_path), "--dry-run", "--users-from", str(users_csv)
    )
    assert code == 3 and report["dry_run"] is True and report["run"] is None
    assert report["totals"]["created"] > 0  # it did the work...
    assert table_counts() == before  # ...and kept none of it
    assert rows("SELECT pg_sequence_last_value(pg_get_serial_sequence('users', 'id')::regclass)") == sequence
    assert not MigrationRun.objects.exists()


def test_verify_only_finds_what_changed_in_postgresql(tmp_path, platform_users):
    path = store(tmp_path)
    kvmigrate("--source", path)
    CreditAccount.objects.filter(user_id=1).update(balance=999)
    GmailToken.objects.filter(user_id=3).delete()
    UserNotification.objects.filter(user_id=1, kind="badge").delete()
    code, report = report_of(tmp_path, "--source", path, "--verify-only")
    assert code == 3
    mismatched = {(m["key"], m["domain"]): m["fields"] for m in report["mismatched"]}
    assert "balance" in mismatched[("user_credits:1", "credits")]
    assert "ledger: does not sum to the balance" in mismatched[("user_credits:1", "credits")]
    assert mismatched[("user_credits:1", "notifications")] == ["badge:0"]
    assert {(m["key"], m["domain"]) for m in report["missing"]} == {("gmail:3", "gmail")}
    assert MigrationRun.objects.order_by("-id").first().mode == "verify"
    assert report["totals"]["created"] == 0


def test_a_clean_store_exits_0_and_verifies_everything(tmp_path, platform_users):
    code, out = kvmigrate("--source", str(write_dump(tmp_path / "clean.jsonl", GOOD)))
    assert code == 0 and "everything moved and verified" in out
    assert MigrationRun.objects.get().status == "succeeded"
    assert "credits" in out and "verified" in out  # the summary table


@pytest.mark.parametrize(
    "args",
    [
        ["--only", "credits,bogus"],
        ["--batch-size", "0"],
        ["--reverse"],
        ["--target", "x.jsonl"],
        ["--reverse", "--target", "x.jsonl", "--verify-only"],
        ["--users-columns", "id,email"],
    ],
)
def test_bad_arguments_exit_2(tmp_path, platform_users, args):
    code, _ = kvmigrate("--source", str(write_dump(tmp_path / "s.jsonl", GOOD)), *args)
    assert code == 2
    assert not MigrationRun.objects.exists()


@pytest.mark.parametrize(
    "source",
    [
        "/nonexistent/store.jsonl",
        "ftp://example.com/store",
        "redis://127.0.0.1:9/0",
        "http://127.0.0.1:9/v0/secret",
    ],
)
def test_a_source_that_cannot_be_opened_exits_2_with_a_message(source, platform_users, monkeypatch):
    from kvmigrate.sources import replit

    # one try: no half minute of backoff against a closed port
    monkeypatch.setattr(replit, "RetryPolicy", functools.partial(replit.RetryPolicy, tries=1))
    code, out = kvmigrate("--source", source)
    assert code == 2
    assert out.strip() and "secret" not in out


def test_a_users_export_that_cannot_be_opened_exits_2(tmp_path, platform_users):
    code, out = kvmigrate(
        "--source", str(write_dump(tmp_path / "s.jsonl", GOOD)), "--users-from", "/nope.csv"
    )
    assert code == 2 and "/nope.csv" in out


def test_another_run_holding_the_lock_makes_this_one_fail_with_exit_1(tmp_path, platform_users):
    import psycopg

    settings = connection.settings_dict
    other = psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"],
        user=settings["USER"],
        dbname=settings["NAME"],
        autocommit=True,
    )
    try:
        other.execute("SELECT pg_advisory_lock(%s)", [LOCK_ID])
        code, out = kvmigrate("--source", str(write_dump(tmp_path / "s.jsonl", GOOD)))
        # Release before closing: a closed connection's server process lets go of its locks
        # only when it exits, a moment later, and the next test's run would find it held.
        other.execute("SELECT pg_advisory_unlock(%s)", [LOCK_ID])
    finally:
        other.close()
    assert code == 1 and "lock" in out


def test_only_moves_the_domains_asked_for_and_a_later_run_completes(tmp_path, platform_users):
    path = store(tmp_path)
    _, report = report_of(tmp_path, "--source", path, "--only", "billing,gmail")
    assert Subscription.objects.count() == 3 and GmailToken.objects.count() == 2
    assert not CreditAccount.objects.exists() and not UserNotification.objects.exists()
    assert set(report["domains"]) <= {"billing", "gmail", "credits", "notifications", "accounts", "other"}
    assert report["domains"]["billing"]["created"] == 3
    _, report = report_of(tmp_path, "--source", path)
    assert report["domains"]["billing"]["unchanged"] == 3 and report["domains"]["billing"]["created"] == 0
    assert report["domains"]["credits"]["created"] == 4
    assert report["totals"]["mismatched"] == 0


def test_unknown_users_are_quarantined_then_move_once_imported(tmp_path, platform_users):
    path = store(tmp_path)
    kvmigrate("--source", path)
    assert QuarantinedRecord.objects.get(key="user_credits:999").reason_code == "unknown_user"
    users_csv = tmp_path / "users.csv"
    users_csv.write_text("id,email,username,created_at\n999,late@example.com,late,2024-10-01T00:00:00Z\n")
    _, report = report_of(tmp_path, "--source", path, "--users-from", str(users_csv))
    assert report["domains"]["users"]["created"] == 1
    assert CreditAccount.objects.get(user_id=999).balance == 1
    assert User.objects.get(id=999).firebase_uid == "ghost"
    resolved = QuarantinedRecord.objects.get(key="user_credits:999")
    assert resolved.resolved_at is not None
    assert not QuarantinedRecord.objects.filter(reason_code="unknown_user", resolved_at__isnull=True).exists()


def test_real_layout_wins_over_plan_layout_whichever_comes_first(tmp_path, platform_users):
    # the plan record first, alone: it moves; then the real one takes the account over
    kvmigrate("--source", str(write_dump(tmp_path / "a.jsonl", {"credits:1": {"currentBalance": 5}})))
    assert CreditAccount.objects.get(user_id=1).balance == 5
    both = {"credits:1": {"currentBalance": 5}, "user_credits:1": real_credits()}
    path = str(write_dump(tmp_path / "b.jsonl", both))
    kvmigrate("--source", path)
    assert CreditAccount.objects.get(user_id=1).balance == 180
    code, report = report_of(tmp_path, "--source", path)  # the next run quarantines the loser
    assert QuarantinedRecord.objects.get(key="credits:1").reason_code == "superseded"
    assert code == 3 and report["totals"]["mismatched"] == 0
    assert list(find_mismatches()) == []


def test_a_record_postgresql_refuses_is_quarantined_and_the_batch_still_moves(tmp_path, platform_users):
    with connection.cursor() as cursor:  # a real refusal, by a trigger the transforms cannot know of
        cursor.execute(
            """CREATE FUNCTION refuse_user_2() RETURNS trigger AS $$
               BEGIN IF NEW.user_id = 2 THEN RAISE EXCEPTION 'user 2 is frozen'; END IF; RETURN NEW; END
               $$ LANGUAGE plpgsql"""
        )
        cursor.execute(
            "CREATE TRIGGER refuse_user_2 BEFORE INSERT ON user_credits "
            "FOR EACH ROW EXECUTE FUNCTION refuse_user_2()"
        )
    code, _ = report_of(tmp_path, "--source", str(write_dump(tmp_path / "s.jsonl", GOOD)))
    assert code == 3
    refused = QuarantinedRecord.objects.get(key="user_credits:2")
    assert refused.reason_code == "db_error" and "user 2 is frozen" in refused.reason
    assert set(CreditAccount.objects.values_list("user_id", flat=True)) == {1, 3, 4}
    assert GmailToken.objects.count() == 2


def test_reverse_gives_the_real_layout_records_back(tmp_path, platform_users):
    kvmigrate("--source", str(write_dump(tmp_path / "s.jsonl", GOOD)))
    back = tmp_path / "back.jsonl"
    code, out = kvmigrate("--reverse", "--target", str(back))
    assert code == 0 and "records written" in out
    written = {}
    for line in back.read_text().splitlines():
        item = json.loads(line)
        written[item["key"]] = item["value"]
    for key in ("user_credits:1", "user_tokens:1", "firebase_uid:fbUid1", "user_credits:2", "user_credits:4"):
        assert same_for_old_code(key, decode_value(written[key]), GOOD[key]), key
        assert written[key].startswith('"')  # JSON twice, as the platform stored it
    # plan-layout users come back in the platform's own layout
    user3 = decode_value(written["user_credits:3"])
    assert user3["currentBalance"] == 500 and user3["subscriptionStatus"] == "canceled"
    assert user3["notifications"] == [None, 1, 1]
    assert decode_value(written["user_tokens:3"])["gmailRefreshToken"] == "1//plan-refresh"
    assert MigrationRun.objects.order_by("-id").first().mode == "reverse"
