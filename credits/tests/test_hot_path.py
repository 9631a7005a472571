"""The lean write path (UPDATE, then the ledger INSERT; no replay lookup first) and the cache entry."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.tests.factories import UserFactory
from credits import cache as balance_cache
from credits import selectors, services
from credits.models import CreditAccount, CreditTransaction
from tests.concurrency import run_concurrently

pytestmark = pytest.mark.django_db


def test_the_returned_ledger_row_is_the_stored_one(user, staff_user):
    services.grant(user=user, amount=100, reason="welcome")
    result = services.deduct(
        user=user, operation="company_search", idempotency_key="req-1", metadata={"search": "acme"}
    )
    stored = CreditTransaction.objects.get(pk=result.transaction.pk)
    fields = ["id", "user_id", "amount", "type", "reason", "balance_after", "metadata", "idempotency_key"]
    assert [getattr(result.transaction, f) for f in fields] == [getattr(stored, f) for f in fields]
    assert result.transaction.created_at == stored.created_at
    assert stored.metadata == {"operation": "company_search", "search": "acme"}
    assert not result.transaction._state.adding

    adjusted = services.adjust(user=user, amount=5, reason="goodwill", created_by=staff_user)
    assert CreditTransaction.objects.get(pk=adjusted.transaction.pk).created_by == staff_user


def test_a_replay_changes_nothing_not_even_last_updated(user):
    services.grant(user=user, amount=100, reason="welcome")
    first = services.deduct(user=user, operation="company_search", idempotency_key="req-1")
    before = CreditAccount.objects.values().get(user=user)
    again = services.deduct(user=user, operation="company_search", idempotency_key="req-1")
    assert again.replayed and again.transaction.pk == first.transaction.pk
    assert again.balance == first.balance == 90
    assert CreditAccount.objects.values().get(user=user) == before
    assert CreditTransaction.objects.filter(user=user).count() == 2


def test_a_replay_returns_the_first_result_even_when_the_balance_is_now_too_low(user):
    services.grant(user=user, amount=70, reason="welcome")
    first = services.deduct(user=user, operation="contact_discovery", idempotency_key="req-1")
    assert first.balance == 10
    again = services.deduct(user=user, operation="contact_discovery", idempotency_key="req-1")
    assert again.replayed and again.transaction.pk == first.transaction.pk
    with pytest.raises(services.IdempotencyKeyReused):
        services.deduct(user=user, operation="full_search", idempotency_key="req-1")
    with pytest.raises(services.InsufficientCredits):
        services.deduct(user=user, operation="contact_discovery", idempotency_key="req-2")
    assert CreditAccount.objects.get(user=user).balance == 10


def test_reads_come_from_the_cache_and_follow_committed_writes(user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        services.grant(user=user, amount=100, reason="welcome")
    balance_cache.forget(user.id)
    assert selectors.get_balance(user_id=user.id).balance == 100  # from the database
    with CaptureQueriesContext(connection) as queries:
        snapshot = selectors.get_balance(user_id=user.id)
    assert len(queries) == 0
    assert (snapshot.balance, snapshot.total_purchased, snapshot.total_used) == (100, 0, 0)
    with django_capture_on_commit_callbacks(execute=True):
        services.deduct(user=user, operation="company_search")
    with CaptureQueriesContext(connection) as queries:
        assert selectors.get_balance(user_id=user.id).balance == 90
    assert len(queries) == 0


def test_a_database_read_never_replaces_a_newer_entry(user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        result = services.grant(user=user, amount=100, reason="welcome")
    stale = balance_cache.BalanceSnapshot(0, 0, 0, False, None)  # version 0, as read earlier
    balance_cache.store(user.id, stale)
    assert balance_cache.read(user.id).version == result.transaction.pk
    assert balance_cache.read(user.id).balance == 100


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_apply_once():
    user = UserFactory()
    services.grant(user=user, amount=1000, reason="welcome")
    outcomes = run_concurrently(
        lambda _: services.deduct(user=user, operation="company_search", idempotency_key="same"), 8
    )
    results, errors = outcomes.results, outcomes.errors
    assert errors == []
    assert len({r.transaction.pk for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert CreditAccount.objects.get(user=user).balance == 990
    assert CreditTransaction.objects.filter(user=user, type="deduction").count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_writes_create_one_account():
    user = UserFactory()
    errors = run_concurrently(
        lambda n: services.grant(user=user, amount=10, reason="welcome", idempotency_key=f"g{n}"), 8
    ).errors
    assert errors == []
    account = CreditAccount.objects.get(user=user)
    assert account.balance == 80
    assert sorted(CreditTransaction.objects.filter(user=user).values_list("balance_after", flat=True)) == [
        10,
        20,
        30,
        40,
        50,
        60,
        70,
        80,
    ]
