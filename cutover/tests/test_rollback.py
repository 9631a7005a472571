"""A rollback played end to end: migrate, change in fivedocks, mirror, the old code serves, delta back.

The old code is `oldcode` (the platform's REV rules for `user_credits:{id}`): it reads what the
mirror wrote and changes it the way the platform does. The delta run must bring back exactly
what it changed: one ledger row per legacy transaction, no compensating rows, totals right.
"""

from __future__ import annotations

import io
import re
import time

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from billing import services as billing_services
from billing.models import Subscription
from credits import services as credit_services
from credits.models import CreditAccount, CreditTransaction
from credits.reconcile import find_mismatches
from cutover.drain import drain
from cutover.models import KvOutbox
from kvmigrate.codec import encode_value
from kvmigrate.models import MigrationRun, RenderedEntry
from kvmigrate.replit_server import ReplitDBServer
from kvmigrate.tests.helpers import kvmigrate
from notifications import services as notification_services
from notifications.models import UserNotification

from . import oldcode

pytestmark = pytest.mark.django_db

MIGRATED, SUBSCRIBED = 11, 12


def legacy_record(*, balance: int, used: int, at: int) -> dict:
    """A record as the platform wrote it, topped up this month (so no top-up is due)."""
    return {
        "currentBalance": balance, "lastTopUp": at, "totalUsed": used, "isBlocked": False,
        "transactions": [
            {"type": "credit", "amount": 250, "description": "Welcome bonus - 250 free credits",
             "timestamp": at},
            {"type": "debit", "amount": used, "description": "company and contacts search",
             "timestamp": at + 1, "searchType": "company_and_contacts", "success": True},
        ],
        "monthlyAllowance": 250, "createdAt": at, "updatedAt": at + 1, "notifications": [None, 1],
    }  # fmt: skip


@pytest.fixture
def store():
    with ReplitDBServer(limits=False) as server:
        yield server


@pytest.fixture
def migrated(store, settings):
    """Step 1: a store with two platform users, migrated (mirror off during the move)."""
    User.objects.bulk_create(
        [User(id=uid, email=f"p{uid}@example.com", password="!") for uid in (MIGRATED, SUBSCRIBED)]
    )
    at = oldcode.now_ms() - 60_000
    subscribed = legacy_record(balance=5180, used=70, at=at)
    subscribed.update(
        stripeCustomerId="cus_rb", stripeSubscriptionId="sub_rb", subscriptionStatus="active",
        currentPlan="ugly-duckling", subscriptionStartDate=at, subscriptionEndDate=at + 30 * 86_400_000,
    )  # fmt: skip
    store.store.set_many(
        [
            (f"user_credits:{MIGRATED}", encode_value(legacy_record(balance=180, used=70, at=at))),
            (f"user_credits:{SUBSCRIBED}", encode_value(subscribed)),
        ]
    )
    code, out = kvmigrate("--source", store.url)
    assert code == 0, out
    settings.KV_MIRROR = frozenset({"credits", "billing", "gmail", "notifications"})
    return store


def ledger_rows() -> list[tuple]:
    return list(
        CreditTransaction.objects.order_by("id").values_list("id", "user_id", "type", "amount", "reason")
    )


def make_changes_in_fivedocks() -> User:
    """Step 2: a new user, grants, deductions, a top-up, flags, a subscription change."""
    new = User.objects.create_user(email="new@example.com", password="x")
    credit_services.grant(user=new, amount=500, reason="goodwill", kind="bonus")
    credit_services.monthly_top_up(user=new)
    credit_services.deduct(user=new, operation="individual_email")
    credit_services.deduct(user=new, operation="company_search")
    notification_services.claim_easter_egg(user=new, phrase="5ducks")
    notification_services.mark_shown(user=new, notification_id=2)
    migrated_user = User.objects.get(pk=MIGRATED)
    credit_services.deduct(user=migrated_user, operation="email_search")
    notification_services.mark_shown(user=migrated_user, notification_id=3)
    sub = Subscription.objects.get(user_id=SUBSCRIBED)
    billing_services.set_plan_type(subscription=sub, plan_type="duckin-awesome")
    return new


def test_a_rollback_end_to_end(migrated):
    store = migrated
    before = ledger_rows()
    new = make_changes_in_fivedocks()
    assert KvOutbox.objects.count() >= 9

    # 3. Drain the mirror.
    stats = drain(store.url)
    assert stats.written == 3 and KvOutbox.objects.count() == 0

    # 4. Every mirrored record, as the old code reads it.
    now = oldcode.now_ms()
    for user_id in (MIGRATED, SUBSCRIBED, new.pk):
        record = oldcode.read(store.store, user_id)
        assert oldcode.reading_problems(record) == [], user_id
        assert not oldcode.would_top_up(record, now), f"user {user_id} would get a free top-up"
        account = CreditAccount.objects.get(user_id=user_id)
        assert (record["currentBalance"], record["totalUsed"]) == (account.balance, account.total_used)
    fresh = oldcode.read(store.store, new.pk)
    assert fresh["monthlyAllowance"] == 250 and fresh["updatedAt"] >= fresh["lastTopUp"]
    descriptions = [t["description"] for t in fresh["transactions"]]
    month = time.strftime("%B %Y", time.gmtime(now / 1000))
    assert descriptions == [
        "goodwill",
        f"Monthly top-up for {month} (free tier)",
        "individual email search",
        "company search search",
        "🦆 Company mascot discovery",
    ]
    assert [t.get("searchType") for t in fresh["transactions"]][2:4] == ["individual_email", "company_search"]
    assert fresh["easterEggs"] == [1] and fresh["notifications"] == [None, None, 1]
    assert oldcode.read(store.store, SUBSCRIBED)["currentPlan"] == "duckin-awesome"
    assert oldcode.read(store.store, MIGRATED)["notifications"] == [None, 1, None, 1]

    # 5. Rollback: the old code serves again and changes records its own way.
    oldcode.deduct(store.store, MIGRATED, "individual_email")
    oldcode.claim_easter_egg(store.store, new.pk, 1)
    oldcode.deduct(store.store, new.pk, "company_search")
    totals = {uid: oldcode.read(store.store, uid)["totalUsed"] for uid in (MIGRATED, new.pk)}

    # 6. The delta run brings back exactly those changes.
    mirrored = ledger_rows()
    assert len(mirrored) == len(before) + 6
    code, out = kvmigrate("--source", store.url, "--report", "/tmp/h14rep.json")
    assert code == 0, out
    added = [row[1:] for row in ledger_rows()[len(mirrored) :]]
    assert sorted(added) == sorted(
        [
            (MIGRATED, "deduction", -20, "individual email search"),
            (new.pk, "bonus", 3000, "🇵🇸 Solidarity bonus"),
            (new.pk, "deduction", -10, "company search search"),
        ]
    )
    assert not CreditTransaction.objects.filter(type="migration", id__gt=mirrored[-1][0]).exists()
    for uid in (MIGRATED, new.pk):
        account = CreditAccount.objects.get(user_id=uid)
        record = oldcode.read(store.store, uid)
        assert (account.balance, account.total_used) == (record["currentBalance"], totals[uid])
    assert UserNotification.objects.filter(user=new, kind="easter_egg", notification_id=1).exists()
    assert list(find_mismatches()) == []
    out = io.StringIO()
    call_command("credits_reconcile", stdout=out)
    assert "OK" in out.getvalue()

    # Round trip, repeated: nothing more comes back, and the mirror writes the same records again.
    snapshot = store.store.snapshot()
    for _ in range(2):
        assert kvmigrate("--source", store.url)[0] == 0
        assert MigrationRun.objects.order_by("-id").first().total("created") == 0
        assert ledger_rows()[len(mirrored) + 3 :] == []
        for uid in (MIGRATED, new.pk):  # the records the old code changed, rendered again
            KvOutbox.objects.create(
                key=f"user_credits:{uid}", domain="credits", user_id=uid, created_at=_epoch()
            )
        drain(store.url)
        assert store.store.snapshot() == snapshot
    assert MigrationRun.objects.order_by("-id").first().total("updated") == 0


def _epoch():
    from datetime import UTC, datetime

    return datetime(2000, 1, 1, tzinfo=UTC)  # an old change: updatedAt keeps the record's own


def test_updated_at_moves_when_only_a_flag_changes(migrated):
    store = migrated
    user = User.objects.get(pk=MIGRATED)
    credit_services.deduct(user=user, operation="company_search")
    drain(store.url)
    first = oldcode.read(store.store, MIGRATED)["updatedAt"]
    time.sleep(0.01)
    notification_services.mark_shown(user=user, notification_id=4)
    drain(store.url)
    record = oldcode.read(store.store, MIGRATED)
    assert record["notifications"][4] == 1 and record["updatedAt"] > first


def test_entries_rendered_are_remembered_for_the_way_back(migrated):
    store = migrated
    user = User.objects.get(pk=MIGRATED)
    result = credit_services.deduct(user=user, operation="company_search")
    drain(store.url)
    remembered = RenderedEntry.objects.filter(user_id=MIGRATED)
    assert list(remembered.values_list("transaction_id", flat=True)) == [result.transaction.pk]


def test_a_deduction_with_the_mirror_on_runs_no_query_over_the_ledger(migrated):
    user = User.objects.get(pk=MIGRATED)
    with CaptureQueriesContext(connection) as queries:
        credit_services.deduct(user=user, operation="company_search")
    statements = [q["sql"] for q in queries.captured_queries]
    assert any("cutover_kv_outbox" in sql for sql in statements)  # the change is recorded...
    # The ledger row's INSERT (a CTE that sums the open holds first) writes the ledger; nothing
    # selects from it.
    reads = [sql for sql in statements if re.search(r"\bFROM\s+\"?credit_transactions\b", sql)]
    assert reads == []  # ...and nothing reads the ledger
    assert len(statements) <= 6, statements
