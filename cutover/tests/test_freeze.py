"""The write freeze holds in the services: API, admin, commands and direct service calls alike."""

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from accounts.models import User
from credits import services as credit_services
from credits.models import CreditAccount, CreditTransaction
from cutover import services
from fivedocks.errors import WritesFrozen
from kvmigrate.codec import encode_value
from kvmigrate.replit_server import ReplitDBServer
from kvmigrate.tests.helpers import kvmigrate
from notifications import services as notification_services

pytestmark = pytest.mark.django_db


@pytest.fixture
def frozen_credits(user):
    credit_services.grant(user=user, amount=100, reason="welcome")
    services.set_freeze(domain="credits", frozen=True, reason="final delta run", retry_after_seconds=20)


def test_frozen_domain_answers_503_to_writes_and_200_to_reads(frozen_credits, user, user_client):
    response = user_client.post(
        "/api/credits/deduct/", {"operation": "company_search", "idempotency_key": "f1"}
    )
    assert response.status_code == 503
    assert response["Retry-After"] == "20"
    body = response.json()
    assert body["code"] == "writes_frozen" and "final delta run" in body["detail"]
    assert user_client.get("/api/credits/").status_code == 200
    assert user_client.get("/api/credits/").json()["balance"] == 100
    # Other domains are not frozen.
    assert user_client.post("/api/notifications/1/shown/").status_code == 201


def test_a_service_call_is_refused_with_a_clear_message(frozen_credits, user):
    for call in (
        lambda: credit_services.deduct(user=user, operation="company_search"),
        lambda: credit_services.grant(user=user, amount=5, reason="goodwill"),
        lambda: credit_services.adjust(user=user, amount=-5, reason="fix"),
        lambda: credit_services.monthly_top_up(user=user),
        lambda: notification_services.claim_easter_egg(user=user, phrase="5ducks"),  # grants credits
    ):
        with pytest.raises(WritesFrozen, match=r"Writes to credits are paused .*final delta run"):
            call()
    assert CreditAccount.objects.get(user=user).balance == 100
    assert CreditTransaction.objects.filter(user=user).count() == 1


def test_an_admin_grant_is_refused_with_a_clear_message(frozen_credits, user, staff_user):
    from django.test import Client

    client = Client()
    client.force_login(staff_user)
    url = reverse("admin:credits_creditaccount_change_credits", args=[user.pk])
    response = client.post(url, {"kind": "bonus", "amount": 50, "reason": "goodwill"})
    assert response.status_code == 200  # the form again, with the error
    assert "Writes to credits are paused" in response.content.decode()
    assert CreditAccount.objects.get(user=user).balance == 100
    assert client.get(reverse("admin:credits_creditaccount_change", args=[user.pk])).status_code == 200


def test_the_monthly_top_up_command_is_refused_with_a_clear_message(frozen_credits):
    with pytest.raises(CommandError, match="Writes to credits are paused"):
        call_command("credits_monthly_topup", stdout=io.StringIO())
    assert not CreditTransaction.objects.filter(type="allowance").exists()
    call_command("credits_reconcile", stdout=io.StringIO())  # reads keep working


def test_kvmigrate_loads_are_exempt(settings):
    """The runbook's last delta run moves the store while every domain is frozen."""
    for domain in ("credits", "billing", "gmail", "notifications"):
        services.set_freeze(domain=domain, frozen=True, reason="final delta run")
    User.objects.create(id=31, email="p31@example.com", password="!")
    record = {"currentBalance": 40, "totalUsed": 0, "isBlocked": False, "transactions": [], "badges": [1]}
    with ReplitDBServer(limits=False) as store:
        store.store.set_many([("user_credits:31", encode_value(record))])
        code, out = kvmigrate("--source", store.url)
    assert code == 0, out
    assert CreditAccount.objects.get(user_id=31).balance == 40
    # ...and only they: the same write through a service is refused.
    with pytest.raises(WritesFrozen):
        credit_services.grant(user=User.objects.get(pk=31), amount=1, reason="x")


def test_unfrozen_domain_works_normally(user, user_client):
    credit_services.grant(user=user, amount=100, reason="welcome")
    services.set_freeze(domain="credits", frozen=True)
    services.set_freeze(domain="credits", frozen=False)
    response = user_client.post(
        "/api/credits/deduct/", {"operation": "company_search", "idempotency_key": "f1"}
    )
    assert response.status_code == 200


def test_freeze_from_settings(user_client, settings):
    settings.WRITES_FROZEN = ["notifications"]
    response = user_client.post("/api/notifications/1/shown/")
    assert response.status_code == 503
    assert response["Retry-After"] == str(settings.WRITES_FROZEN_RETRY_AFTER)
    assert user_client.get("/api/notifications/").status_code == 200


def test_unknown_domain_is_refused():
    with pytest.raises(services.DomainError):
        services.set_freeze(domain="nonsense", frozen=True)
