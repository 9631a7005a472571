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
