"""Delta runs (cutover): only new, changed or gone records are touched; an unchanged store writes nothing."""

from __future__ import annotations

import json

import pytest

from accounts.models import User
from credits.models import CreditAccount, CreditTransaction

from .helpers import kvmigrate, rows, table_counts, write_dump
from .kvrecords import REAL_TOKENS, real_credits

pytestmark = pytest.mark.django_db


@pytest.fixture
def users(db):
    return User.objects.bulk_create(
        [User(id=i, email=f"u{i}@example.com", password="!") for i in range(1, 4)]
    )


def store(tmp_path, records) -> str:
    return str(write_dump(tmp_path / "store.jsonl", records))


def run(tmp_path, path) -> tuple[int, dict]:
    report = tmp_path / "report.json"
    code, _ = kvmigrate("--source", path, "--report", str(report))
    return code, json.loads(report.read_text())


def change_marks() -> dict:
    """Every row count and every 'when did this change' column a write would move."""
    return {
        "counts": table_counts(),
        "accounts": rows("SELECT max(last_updated), sum(balance) FROM user_credits"),
        "ledger": rows("SELECT max(id), max(created_at) FROM credit_transactions"),
        "subscriptions": rows("SELECT max(updated_at) FROM subscriptions"),
        "tokens": rows("SELECT max(updated_at) FROM gmail_tokens"),
        "flags": rows("SELECT max(id), max(shown_at) FROM user_notifications"),
        "fingerprints": rows(
            "SELECT md5(string_agg(key || fingerprint, ',' ORDER BY key)) FROM kvmigrate_records"
        ),
        "users": rows(
            "SELECT md5(string_agg(id || email || coalesce(firebase_uid, ''), ',' ORDER BY id)) FROM users"
        ),
    }


def test_a_delta_run_over_an_unchanged_store_writes_nothing(tmp_path, users):
    records = {"user_credits:1": real_credits(), "user_tokens:1": REAL_TOKENS, "firebase_uid:fb1": 1,
               "user_credits:2": real_credits(currentBalance=5, stripeCustomerId="cus_2")}  # fmt: skip
    path = store(tmp_path, records)
    code, first = run(tmp_path, path)
    assert code == 0, first["quarantined"]
    before = change_marks()
    code, report = run(tmp_path, path)
    assert code == 0
    after = change_marks()
    assert (
        after["counts"].pop("kvmigrate_runs") == before["counts"].pop("kvmigrate_runs") + 1
    )  # the run's own row
    assert after == before
    assert report["totals"]["created"] == report["totals"]["updated"] == 0
    assert report["totals"]["unchanged"] == report["totals"]["read"] > 0


def test_keys_gone_from_the_store_are_reported_never_deleted(tmp_path, users):
    records = {
        "user_credits:1": real_credits(),
        "user_credits:2": real_credits(currentBalance=5, stripeCustomerId="cus_2"),
        "user_tokens:1": REAL_TOKENS,
    }
    run(tmp_path, store(tmp_path, records))
    del records["user_credits:2"], records["user_tokens:1"]
    code, report = run(tmp_path, store(tmp_path, records))
    assert code == 0
    assert report["domains"]["credits"]["gone"] == 1 and report["domains"]["gmail"]["gone"] == 1
    assert {g["key"] for g in report["gone"]} == {"user_credits:2", "user_tokens:1"}
    assert CreditAccount.objects.filter(user_id=2).exists()  # still in PostgreSQL


def test_credits_changed_in_the_store_land_as_ledger_rows_that_explain_the_change(tmp_path, users):
    record = real_credits()
    path = store(tmp_path, {"user_credits:1": record})
    run(tmp_path, path)
    rows_before = CreditTransaction.objects.filter(user_id=1).count()
    # The old platform charged a search meanwhile, and also changed the balance without history.
    record["transactions"].append(
        {"type": "debit", "amount": 70, "description": "company and contacts search",
         "timestamp": 1730600000000, "searchType": "company_and_contacts", "success": True}
    )  # fmt: skip
    record["currentBalance"] -= 70 + 5
    record["totalUsed"] += 70
    code, report = run(tmp_path, store(tmp_path, {"user_credits:1": record}))
    assert code == 0 and report["domains"]["credits"]["updated"] == 1
    new_rows = list(CreditTransaction.objects.filter(user_id=1).order_by("id")[rows_before:])
    assert [(r.type, r.amount) for r in new_rows] == [("deduction", -70), ("migration", -5)]
    account = CreditAccount.objects.get(user_id=1)
    assert account.balance == record["currentBalance"] == new_rows[-1].balance_after
    assert (
        sum(CreditTransaction.objects.filter(user_id=1).values_list("amount", flat=True)) == account.balance
    )
