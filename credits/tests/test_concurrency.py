"""Real concurrent transactions against PostgreSQL: no lost update, never below zero."""

import pytest
from django.db.models import Sum

from accounts.tests.factories import UserFactory
from credits import services
from credits.models import CreditAccount, CreditTransaction
from tests.concurrency import run_concurrently

WORKERS = 16


def _run_concurrently(fn, count: int) -> list:
    return run_concurrently(fn, count).values()


@pytest.mark.django_db(transaction=True)
def test_concurrent_deductions_never_overdraw():
    user = UserFactory()
    start, cost = 1000, 70  # company_and_contacts
    services.grant(user=user, amount=start, reason="opening")

    def deduct_many(i: int) -> tuple[int, list[str]]:
        ok, errors = 0, []
        for n in range(4):
            try:
                services.deduct(user=user, operation="company_and_contacts", idempotency_key=f"w{i}-{n}")
                ok += 1
            except services.InsufficientCredits:
                pass
            except Exception as exc:  # any other error fails the test
                errors.append(repr(exc))
        return ok, errors

    results = _run_concurrently(deduct_many, WORKERS)
    successes = sum(ok for ok, _ in results)
    errors = [e for _, errs in results for e in errs]
    assert errors == []
    assert successes == start // cost
    account = CreditAccount.objects.get(user=user)
    assert account.balance == start - successes * cost >= 0
    ledger_sum = CreditTransaction.objects.filter(user=user).aggregate(s=Sum("amount"))["s"]
    assert ledger_sum == account.balance
    assert account.total_used == successes * cost
    balances = sorted(
        CreditTransaction.objects.filter(user=user, type="deduction").values_list("balance_after", flat=True)
    )
    assert balances == [start - cost * k for k in range(successes, 0, -1)]  # each step exactly once


@pytest.mark.django_db(transaction=True)
def test_concurrent_replays_of_one_key_apply_once():
    user = UserFactory()
    services.grant(user=user, amount=500, reason="opening")

    def same_key(i: int):
        return services.deduct(user=user, operation="company_search", idempotency_key="same").transaction.pk

    ids = _run_concurrently(same_key, WORKERS)
    assert len(set(ids)) == 1
    assert CreditAccount.objects.get(user=user).balance == 490


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_writes_create_one_account():
    user = UserFactory()
    _run_concurrently(lambda i: services.grant(user=user, amount=10, reason=f"g{i}"), WORKERS)
    assert CreditAccount.objects.filter(user=user).count() == 1
    assert CreditAccount.objects.get(user=user).balance == 10 * WORKERS
