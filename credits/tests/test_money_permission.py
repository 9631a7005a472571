"""Money moves only with credits.grant_credits, never to oneself, and large changes need two staff."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from accounts.tests.factories import UserFactory
from credits import services
from credits.models import CreditAccount, CreditTransaction, PendingCreditChange
from fivedocks.errors import PermissionRequired

pytestmark = pytest.mark.django_db


def _granter(**extra):
    staff = UserFactory(is_staff=True, **extra)
    staff.user_permissions.add(Permission.objects.get(codename="grant_credits"))
    return type(staff).objects.get(pk=staff.pk)  # a fresh object: no cached permissions


def _admin_client(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


def test_staff_without_the_permission_gets_403_on_every_money_path(user, api_client):
    staff = UserFactory(is_staff=True)
    api_client.force_authenticate(staff)
    response = api_client.post(
        "/api/credits/grant/", {"user_id": user.pk, "amount": 10**9, "reason": "mine"}, format="json"
    )
    assert response.status_code == 403, response.content
    assert response.json()["code"] == "permission_denied"
    admin = _admin_client(staff)
    url = f"/admin/credits/creditaccount/{user.pk}/change-credits/"
    assert admin.get(url).status_code == 403
    for kind, amount in (("bonus", "1000"), ("adjustment", "-5"), ("purchase", "7")):
        assert admin.post(url, {"kind": kind, "amount": amount, "reason": "x"}).status_code == 403
    # The service layer itself refuses, whatever path calls it.
    for call in (
        lambda: services.grant(user=user, amount=5, reason="x", created_by=staff),
        lambda: services.adjust(user=user, amount=5, reason="x", created_by=staff),
        lambda: services.refund(user=user, amount=5, reason="x", created_by=staff),
    ):
        with pytest.raises(PermissionRequired):
            call()
    assert not CreditTransaction.objects.exists()


def test_staff_cannot_grant_to_themselves(api_client):
    staff = _granter()
    api_client.force_authenticate(staff)
    response = api_client.post(
        "/api/credits/grant/", {"user_id": staff.pk, "amount": 100, "reason": "mine"}, format="json"
    )
    assert response.status_code == 403 and response.json()["code"] == "self_grant_refused"
    page = _admin_client(staff).post(
        f"/admin/credits/creditaccount/{staff.pk}/change-credits/",
        {"kind": "bonus", "amount": "100", "reason": "mine"},
    )
    assert page.status_code == 200 and "cannot grant or adjust their own" in page.content.decode()
    assert not CreditTransaction.objects.exists()


def test_a_granter_with_the_permission_grants_below_the_threshold(user, api_client, settings):
    settings.CREDITS_APPROVAL_THRESHOLD = 1000
    api_client.force_authenticate(_granter())
    response = api_client.post(
        "/api/credits/grant/", {"user_id": user.pk, "amount": 1000, "reason": "support"}, format="json"
    )
    assert response.status_code == 201 and response.json()["balance"] == 1000
    # A staff key lives in the client namespace too, and a retry replays.
    payload = {
        "user_id": user.pk,
        "amount": 5,
        "reason": "ticket 9",
        "idempotency_key": "monthly-allowance:2026-12",
    }
    first = api_client.post("/api/credits/grant/", payload, format="json")
    again = api_client.post("/api/credits/grant/", payload, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert CreditTransaction.objects.filter(idempotency_key="user:monthly-allowance:2026-12").count() == 1


def test_a_change_above_the_threshold_waits_for_a_second_staff_member(user, api_client, settings):
    settings.CREDITS_APPROVAL_THRESHOLD = 1000
    first, second = _granter(), _granter()
    api_client.force_authenticate(first)
    response = api_client.post(
        "/api/credits/grant/",
        {"user_id": user.pk, "amount": 5000, "reason": "refund of a big pack"},
        format="json",
    )
    assert response.status_code == 202, response.content
    pending_id = response.json()["id"]
    assert response.json()["status"] == "pending"
    assert not CreditTransaction.objects.exists()
    # Nobody can skip the rule by calling the service directly.
    with pytest.raises(services.ApprovalRequired):
        services.grant(user=user, amount=5000, reason="x", created_by=first)

    changelist = "/admin/credits/pendingcreditchange/"
    # The requester cannot approve their own request.
    _admin_client(first).post(changelist, {"action": "approve", "_selected_action": [pending_id]})
    assert PendingCreditChange.objects.get(pk=pending_id).status == "pending"
    # A staff member without the permission does not even see the action.
    bystander = UserFactory(is_staff=True)
    bystander.user_permissions.add(Permission.objects.get(codename="view_pendingcreditchange"))
    _admin_client(bystander).post(changelist, {"action": "approve", "_selected_action": [pending_id]})
    assert PendingCreditChange.objects.get(pk=pending_id).status == "pending"
    # A second staff member with the permission approves it: applied once.
    second.user_permissions.add(Permission.objects.get(codename="view_pendingcreditchange"))
    admin = _admin_client(second)
    assert admin.get(changelist).status_code == 200
    for _ in range(2):
        admin.post(changelist, {"action": "approve", "_selected_action": [pending_id]})
    pending = PendingCreditChange.objects.get(pk=pending_id)
    assert pending.status == "approved" and pending.decided_by_id == second.pk
    assert CreditAccount.objects.get(user=user).balance == 5000
    assert CreditTransaction.objects.get().created_by_id == second.pk


def test_a_large_admin_adjustment_becomes_a_pending_change(user, settings):
    settings.CREDITS_APPROVAL_THRESHOLD = 100
    services.grant(user=user, amount=500, reason="welcome")
    staff = _granter()
    staff.user_permissions.add(Permission.objects.get(codename="view_creditaccount"))
    response = _admin_client(staff).post(
        f"/admin/credits/creditaccount/{user.pk}/change-credits/",
        {"kind": "adjustment", "amount": "-400", "reason": "chargeback"},
        follow=True,
    )
    assert "second staff member" in response.content.decode()
    assert CreditAccount.objects.get(user=user).balance == 500
    assert PendingCreditChange.objects.get().amount == -400


def test_the_admin_follows_model_permissions():
    staff = UserFactory(is_staff=True)
    admin = _admin_client(staff)
    for url in (
        "/admin/credits/creditaccount/",
        "/admin/credits/credittransaction/",
        "/admin/kvmigrate/quarantinedrecord/",
        "/admin/gmail/gmailtoken/",
        "/admin/billing/subscription/",
    ):
        assert admin.get(url).status_code == 403, url
    staff.user_permissions.add(Permission.objects.get(codename="view_credittransaction"))
    assert admin.get("/admin/credits/credittransaction/").status_code == 200
    assert admin.get("/admin/credits/creditaccount/").status_code == 403
