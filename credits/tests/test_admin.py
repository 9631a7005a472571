import pytest
from django.test import Client

from credits import services
from credits.models import CreditTransaction

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(staff_user):
    client = Client()
    client.force_login(staff_user)
    return client


def test_accounts_list_search_and_filter(admin_client, user, staff_user):
    services.grant(user=user, amount=500, reason="welcome")
    services.grant(user=staff_user, amount=5, reason="welcome")
    page = admin_client.get("/admin/credits/creditaccount/", {"q": user.email})
    assert page.status_code == 200
    assert user.email in page.text and staff_user.email not in page.text.split("<tbody>")[1]
    page = admin_client.get("/admin/credits/creditaccount/", {"balance_range": "101-1000"})
    body = page.text.split("<tbody>")[1]
    assert user.email in body and staff_user.email not in body


def test_account_page_shows_ledger_read_only(admin_client, user):
    services.grant(user=user, amount=500, reason="welcome pack")
    page = admin_client.get(f"/admin/credits/creditaccount/{user.id}/change/")
    assert page.status_code == 200
    assert "welcome pack" in page.text
    assert "Grant or adjust credits" in page.text
    assert admin_client.get("/admin/credits/credittransaction/add/").status_code == 403
    row = CreditTransaction.objects.get(user=user)
    assert admin_client.post(f"/admin/credits/credittransaction/{row.pk}/delete/").status_code == 403


def test_grant_through_the_admin_form_requires_a_reason(admin_client, user, staff_user):
    url = f"/admin/credits/creditaccount/{user.id}/change-credits/"
    page = admin_client.post(url, {"kind": "bonus", "amount": "250", "reason": ""})
    assert page.status_code == 200 and "This field is required" in page.text
    assert not CreditTransaction.objects.filter(user=user).exists()
    response = admin_client.post(url, {"kind": "bonus", "amount": "250", "reason": "support ticket 12"})
    assert response.status_code == 302
    row = CreditTransaction.objects.get(user=user)
    assert (row.amount, row.reason, row.created_by) == (250, "support ticket 12", staff_user)


def test_negative_adjustment_below_zero_is_refused(admin_client, user):
    services.grant(user=user, amount=10, reason="welcome")
    url = f"/admin/credits/creditaccount/{user.id}/change-credits/"
    page = admin_client.post(url, {"kind": "adjustment", "amount": "-20", "reason": "typo"})
    assert page.status_code == 200
    assert "balance is lower" in page.text
    assert CreditTransaction.objects.filter(user=user).count() == 1


def test_an_amount_beyond_the_bound_is_a_form_error(admin_client, user):
    url = f"/admin/credits/creditaccount/{user.id}/change-credits/"
    page = admin_client.post(url, {"kind": "bonus", "amount": str(10**20), "reason": "huge"})
    assert page.status_code == 200
    assert "Ensure this value is less than or equal to" in page.text
    assert not CreditTransaction.objects.filter(user=user).exists()


def test_non_staff_cannot_see_credit_admin(user):
    client = Client()
    client.force_login(user)
    response = client.get("/admin/credits/creditaccount/")
    assert response.status_code == 302  # to the admin login
