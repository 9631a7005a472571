import pytest
from django.core.management import call_command

from credits import services
from credits.models import CreditAccount

pytestmark = pytest.mark.django_db


def test_consistent_accounts_pass(user, staff_user, capsys):
    services.grant(user=user, amount=500, kind="purchase", reason="pack")
    services.deduct(user=user, operation="email_search")
    services.refund(user=user, amount=160, reason="failed")
    services.grant(user=staff_user, amount=5, reason="bonus")
    call_command("credits_reconcile")
    assert "OK: 2 accounts" in capsys.readouterr().out


def test_opening_totals_are_respected(user, capsys):
    services.grant(user=user, amount=100, kind="bonus", reason="x")
    CreditAccount.objects.filter(user=user).update(
        total_purchased=1000, opening_total_purchased=1000, total_used=70, opening_total_used=70
    )
    call_command("credits_reconcile")
    assert "OK" in capsys.readouterr().out


def test_tampered_balance_is_reported_with_exit_1(user, capsys):
    services.grant(user=user, amount=100, kind="purchase", reason="pack")
    CreditAccount.objects.filter(user=user).update(balance=150)
    with pytest.raises(SystemExit) as exit_info:
        call_command("credits_reconcile")
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert f"user {user.id}: balance is 150, the ledger says 100" in out
