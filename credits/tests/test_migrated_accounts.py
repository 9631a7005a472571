"""services.load_migrated_accounts: the bulk write kvmigrate uses for accounts and their history."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.db import transaction

from credits import cache as balance_cache
from credits import services
from credits.models import CreditAccount, CreditTransaction
from credits.reconcile import find_mismatches
from fivedocks.errors import DomainError

pytestmark = pytest.mark.django_db


def at(day: int) -> datetime:
    return datetime(2024, 11, day, tzinfo=UTC)


@dataclass
class Entry:
    amount: int
    type: str
    created_at: datetime
    idempotency_key: str
    reason: str = "kv"
    metadata: dict = field(default_factory=lambda: {"source": "kv"})


@dataclass
class Account:
    user_id: int
    balance: int
    history: list
    total_used: int = 0
    total_purchased: int | None = None
    is_blocked: bool = False
    monthly_allowance: int | None = 250
    last_top_up: datetime | None = None
    created_at: datetime | None = field(default_factory=lambda: at(1))
    last_updated: datetime | None = field(default_factory=lambda: at(20))
    metadata: dict = field(default_factory=lambda: {"kv": {"key": "user_credits:x"}})
    migration_key: str = "kv-migration:user_credits:x:fp1"
    migration_metadata: dict = field(default_factory=lambda: {"key": "user_credits:x"})


def ledger(user) -> list[tuple]:
    rows = CreditTransaction.objects.filter(user=user).order_by("id")
    return [(r.type, r.amount, r.balance_after) for r in rows]


def load(*accounts):
    with transaction.atomic():
        return services.load_migrated_accounts(records=list(accounts))


def test_fresh_account_opens_with_a_migration_row_and_sums_to_the_balance(user):
    history = [
        Entry(-70, "deduction", at(5), "kv:b"),
        Entry(250, "bonus", at(2), "kv:a"),
    ]
    result = load(Account(user.id, 300, history, total_used=70))
    assert result.created == {user.id} and result.ledger_rows == 3
    assert ledger(user) == [("migration", 120, 120), ("bonus", 250, 370), ("deduction", -70, 300)]
    opening = CreditTransaction.objects.get(user=user, type="migration")
    assert opening.created_at == at(1)
    assert opening.metadata["discrepancy"] == 120 and opening.metadata["balance"] == 300
    account = CreditAccount.objects.get(user=user)
    assert (account.balance, account.total_used, account.opening_total_used) == (300, 70, 0)
    assert (account.total_purchased, account.monthly_allowance) == (0, 250)
    assert (account.created_at, account.last_updated) == (at(1), at(20))
    assert list(find_mismatches()) == []


def test_history_that_explains_the_balance_needs_no_migration_row(user):
    load(Account(user.id, 180, [Entry(250, "bonus", at(2), "kv:a"), Entry(-70, "deduction", at(3), "kv:b")]))
    assert [t for t, *_ in ledger(user)] == ["bonus", "deduction"]


def test_loading_the_same_records_again_adds_nothing(user):
    record = Account(user.id, 300, [Entry(250, "bonus", at(2), "kv:a")])
    load(record)
    before = ledger(user)
    result = load(record)
    assert result.created == frozenset() and result.ledger_rows == 0
    assert ledger(user) == before


def test_a_changed_record_appends_new_entries_and_closes_the_gap(user):
    load(Account(user.id, 250, [Entry(250, "bonus", at(2), "kv:a")], migration_key="m:fp1"))
    changed = Account(
        user.id,
        500,
        [Entry(250, "bonus", at(2), "kv:a"), Entry(-70, "deduction", at(21), "kv:c")],
        total_used=70,
        last_updated=at(22),
        migration_key="m:fp2",
    )
    result = load(changed)
    assert result.ledger_rows == 2
    assert ledger(user) == [("bonus", 250, 250), ("deduction", -70, 180), ("migration", 320, 500)]
    assert CreditTransaction.objects.get(user=user, type="migration").created_at == at(22)
    assert CreditAccount.objects.get(user=user).balance == 500
    assert list(find_mismatches()) == []


def test_rows_the_app_wrote_before_are_kept_and_balanced(user):
    services.grant(user=user, amount=40, kind="purchase", reason="app purchase")
    services.deduct(user=user, operation="company_search")
    load(Account(user.id, 1000, [Entry(250, "bonus", at(2), "kv:a")], total_used=500, total_purchased=700))
    rows = ledger(user)
    assert rows[:2] == [("purchase", 40, 40), ("deduction", -10, 30)]
    assert rows[2:] == [("bonus", 250, 280), ("migration", 720, 1000)]
    account = CreditAccount.objects.get(user=user)
    assert (account.total_purchased, account.opening_total_purchased) == (700, 660)
    assert (account.total_used, account.opening_total_used) == (500, 490)
    assert list(find_mismatches()) == []


def test_negative_balance_of_a_blocked_account_moves(user):
    load(Account(user.id, -60, [Entry(-310, "deduction", at(3), "kv:a")], is_blocked=True, total_used=310))
    account = CreditAccount.objects.get(user=user)
    assert (account.balance, account.is_blocked) == (-60, True)
    assert sum(a for _, a, _ in ledger(user)) == -60
    call_command("credits_reconcile")


def test_the_ledger_gap_after_app_writes_gets_its_own_row(user):
    record = Account(user.id, 100, [], migration_key="m:fp1")
    load(record)
    services.grant(user=user, amount=5, reason="app bonus")
    load(record)  # same store value, re-loaded (forced): the app's 5 is absorbed again
    assert CreditTransaction.objects.filter(user=user, type="migration").count() == 2
    assert CreditAccount.objects.get(user=user).balance == 100
    assert list(find_mismatches()) == []


def test_balance_cache_entries_are_forgotten_on_commit(user, django_capture_on_commit_callbacks):
    services.grant(user=user, amount=10, reason="x")
    balance_cache.store(user.id, balance_cache.BalanceSnapshot(10, 0, 0, False, None, version=1))
    with django_capture_on_commit_callbacks(execute=True):
        load(Account(user.id, 999, []))
    assert balance_cache.read(user.id) is None


def test_many_users_in_one_batch(django_user_model):
    users = [django_user_model.objects.create(email=f"m{i}@example.com") for i in range(5)]
    load(*[Account(u.id, 10 * i, [Entry(5, "bonus", at(2), "kv:a")]) for i, u in enumerate(users)])
    assert CreditAccount.objects.count() == 5
    assert list(find_mismatches()) == []


def test_a_user_twice_in_one_batch_is_refused(user):
    with pytest.raises(DomainError):
        load(Account(user.id, 1, []), Account(user.id, 2, []))
