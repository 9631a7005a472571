import pytest
from django.db import IntegrityError, transaction

from credits import selectors, services
from credits.models import CreditAccount, CreditTransaction

pytestmark = pytest.mark.django_db


def test_grant_creates_account_and_ledger_row(user):
    result = services.grant(user=user, amount=500, kind="purchase", reason="pack")
    assert result.balance == 500
    account = CreditAccount.objects.get(user=user)
    assert (account.balance, account.total_purchased, account.total_used) == (500, 500, 0)
    row = CreditTransaction.objects.get(user=user)
    assert (row.amount, row.type, row.balance_after) == (500, "purchase", 500)


def test_deduct_charges_the_operation_cost(user):
    services.grant(user=user, amount=100, reason="welcome")
    result = services.deduct(user=user, operation="company_and_contacts")
    assert result.balance == 30
    row = result.transaction
    assert (row.amount, row.type, row.balance_after) == (-70, "deduction", 30)
    assert row.metadata["operation"] == "company_and_contacts"
    assert CreditAccount.objects.get(user=user).total_used == 70


def test_insufficient_credits_changes_nothing(user):
    services.grant(user=user, amount=50, reason="welcome")
    with pytest.raises(services.InsufficientCredits):
        services.deduct(user=user, operation="contact_discovery")
    assert CreditAccount.objects.get(user=user).balance == 50
    assert CreditTransaction.objects.filter(user=user).count() == 1


def test_deduct_without_account_is_insufficient(user):
    with pytest.raises(services.InsufficientCredits):
        services.deduct(user=user, operation="company_search")
    assert selectors.get_balance(user_id=user.id).balance == 0


def test_unknown_operation(user):
    with pytest.raises(services.UnknownOperation):
        services.deduct(user=user, operation="teleport")


def test_replayed_key_returns_first_result_and_changes_nothing(user):
    services.grant(user=user, amount=100, reason="welcome")
    first = services.deduct(user=user, operation="company_search", idempotency_key="req-1")
    again = services.deduct(user=user, operation="company_search", idempotency_key="req-1")
    assert again.replayed and not first.replayed
    assert again.transaction.pk == first.transaction.pk
    assert CreditAccount.objects.get(user=user).balance == 90


def test_reusing_a_key_for_another_operation_conflicts(user):
    services.grant(user=user, amount=1000, reason="welcome")
    services.deduct(user=user, operation="company_search", idempotency_key="req-1")
    with pytest.raises(services.IdempotencyKeyReused):
        services.deduct(user=user, operation="full_search", idempotency_key="req-1")


def test_idempotency_key_is_per_user(user, staff_user):
    services.grant(user=user, amount=10, reason="x", idempotency_key="k")
    services.grant(user=staff_user, amount=10, reason="x", idempotency_key="k")
    assert CreditTransaction.objects.filter(idempotency_key="k").count() == 2


def test_refund_lowers_total_used(user):
    services.grant(user=user, amount=100, reason="welcome")
    services.deduct(user=user, operation="contact_discovery")
    services.refund(user=user, amount=60, reason="search failed")
    account = CreditAccount.objects.get(user=user)
    assert (account.balance, account.total_used) == (100, 0)


def test_adjust_needs_a_reason_and_cannot_go_below_zero(user, staff_user):
    services.grant(user=user, amount=10, reason="welcome")
    with pytest.raises(services.DomainError):
        services.adjust(user=user, amount=5, reason="  ", created_by=staff_user)
    with pytest.raises(services.InsufficientCredits):
        services.adjust(user=user, amount=-11, reason="typo", created_by=staff_user)
    result = services.adjust(user=user, amount=-10, reason="typo", created_by=staff_user)
    assert result.balance == 0
    assert result.transaction.created_by == staff_user


def test_negative_balance_only_on_a_blocked_account(user):
    services.ensure_account(user_id=user.id)
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditAccount.objects.filter(user=user).update(balance=-5)
    CreditAccount.objects.filter(user=user).update(balance=-5, is_blocked=True)


def test_grant_unblocks_an_account_returning_to_zero(user):
    services.ensure_account(user_id=user.id)
    CreditAccount.objects.filter(user=user).update(balance=-100, is_blocked=True)
    services.grant(user=user, amount=50, reason="partial")
    assert CreditAccount.objects.get(user=user).is_blocked
    services.grant(user=user, amount=50, reason="rest")
    account = CreditAccount.objects.get(user=user)
    assert (account.balance, account.is_blocked) == (0, False)


def test_a_blocked_negative_account_cannot_spend(user):
    services.ensure_account(user_id=user.id)
    CreditAccount.objects.filter(user=user).update(balance=-100, is_blocked=True)
    with pytest.raises(services.InsufficientCredits):
        services.deduct(user=user, operation="company_search")


def test_a_failed_outer_transaction_leaves_no_trace(user):
    with pytest.raises(RuntimeError), transaction.atomic():
        services.grant(user=user, amount=100, reason="welcome")
        raise RuntimeError("boom")
    assert not CreditTransaction.objects.filter(user=user).exists()
    assert selectors.get_balance(user_id=user.id).balance == 0


def test_a_change_beyond_the_bounds_is_a_domain_error_not_a_database_failure(user):
    # Found by fuzzing the API: 10**20 credits overflowed bigint and answered 500.
    with pytest.raises(services.AmountOutOfRange):
        services.grant(user=user, amount=10**20, reason="huge")
    with pytest.raises(services.AmountOutOfRange):
        services.adjust(user=user, amount=-(services.MAX_CHANGE + 1), reason="huge")
    assert not CreditTransaction.objects.filter(user=user).exists()


def test_the_balance_cannot_pass_its_maximum(user):
    services.ensure_account(user_id=user.id)
    CreditAccount.objects.filter(user=user).update(balance=services.MAX_BALANCE - 5)
    with pytest.raises(services.BalanceLimit):
        services.grant(user=user, amount=6, reason="one too many")
    result = services.grant(user=user, amount=5, reason="exactly the maximum")
    assert result.balance == services.MAX_BALANCE
