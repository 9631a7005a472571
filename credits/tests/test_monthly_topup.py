from datetime import date

import pytest
from django.core.management import call_command

from billing.models import Subscription
from credits import services
from credits.models import CreditAccount, CreditTransaction

pytestmark = pytest.mark.django_db


def test_free_tier_gets_its_allowance_once_per_month(user):
    first = services.monthly_top_up(user=user, month=date(2026, 11, 1))
    again = services.monthly_top_up(user=user, month=date(2026, 11, 20))
    assert first.balance == 250 and again.replayed
    services.monthly_top_up(user=user, month=date(2026, 12, 1))
    account = CreditAccount.objects.get(user=user)
    assert account.balance == 500 and account.last_top_up is not None
    assert CreditTransaction.objects.filter(user=user, type="allowance").count() == 2


def test_paid_plans_are_skipped(user):
    Subscription.objects.create(user=user, status="active", plan_type="ugly-duckling")
    assert services.monthly_top_up(user=user, month=date(2026, 11, 1)) is None
    assert not CreditTransaction.objects.filter(user=user).exists()


def test_top_up_unblocks_an_account_returning_to_zero(user):
    services.ensure_account(user_id=user.id)
    CreditAccount.objects.filter(user=user).update(balance=-200, is_blocked=True)
    services.monthly_top_up(user=user, month=date(2026, 11, 1))
    account = CreditAccount.objects.get(user=user)
    assert (account.balance, account.is_blocked) == (50, False)


def test_account_allowance_overrides_the_free_tier(user):
    services.ensure_account(user_id=user.id)
    CreditAccount.objects.filter(user=user).update(monthly_allowance=100)
    assert services.monthly_top_up(user=user, month=date(2026, 11, 1)).balance == 100


def test_command_is_safe_to_rerun(user, staff_user, capsys):
    call_command("credits_monthly_topup", "--month", "2026-11")
    call_command("credits_monthly_topup", "--month", "2026-11")
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("granted 2,") and out[1].startswith("granted 0, already granted this month 2")
    call_command("credits_reconcile")


def test_a_reserved_looking_client_key_does_not_block_the_top_up(user, user_client):
    services.grant(user=user, amount=100, reason="welcome")
    for key in ("monthly-allowance:2026-12", "easter-egg:1", "stripe-invoice:in_1"):
        response = user_client.post(
            "/api/credits/deduct/", {"operation": "company_search", "idempotency_key": key}, format="json"
        )
        assert response.status_code == 200, response.content
    result = services.monthly_top_up(user=user, month=date(2026, 12, 1))
    assert result is not None and not result.replayed and result.transaction.amount == 250
    keys = set(CreditTransaction.objects.filter(user=user).values_list("idempotency_key", flat=True))
    assert {"user:monthly-allowance:2026-12", "monthly-allowance:2026-12"} <= keys


def test_a_client_key_stored_before_the_namespace_still_replays(user, user_client):
    services.grant(user=user, amount=100, reason="welcome")
    # A deduction recorded by the previous version: the client's key stored as sent.
    first = services.deduct(user=user, operation="company_search", idempotency_key="legacy-1")
    response = user_client.post(
        "/api/credits/deduct/", {"operation": "company_search", "idempotency_key": "legacy-1"}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["replayed"] is True and body["transaction"]["id"] == first.transaction.pk
    assert CreditAccount.objects.get(user=user).balance == 90


def test_the_batch_carries_on_per_user_and_reports_failures(capsys):
    from accounts.tests.factories import UserFactory

    stuck, fine = UserFactory(), UserFactory()
    services.ensure_account(user_id=stuck.pk)
    CreditAccount.objects.filter(user=stuck).update(balance=services.MAX_BALANCE)  # a grant is refused
    with pytest.raises(SystemExit) as exit_info:
        call_command("credits_monthly_topup", "--month", "2026-12")
    assert exit_info.value.code == 1
    out, err = capsys.readouterr()
    assert "granted 1," in out and "failed 1" in out
    assert f"user {stuck.pk}:" in err
    assert CreditAccount.objects.get(user=fine).balance == 250


def test_the_longest_client_key_fits_with_its_prefix(user, user_client):
    services.grant(user=user, amount=100, reason="welcome")
    for length, expected in (
        (services.MAX_CLIENT_KEY_LENGTH, 200),
        (services.MAX_CLIENT_KEY_LENGTH + 1, 400),
    ):
        response = user_client.post(
            "/api/credits/deduct/",
            {"operation": "company_search", "idempotency_key": "k" * length},
            format="json",
        )
        assert response.status_code == expected, response.content
