"""The admin login (and the token endpoint's password login) lock out per account and address."""

import pytest
from django.test import Client
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"


def _try(client: Client, email: str, password: str, address: str = "192.0.2.10"):
    return client.post(LOGIN, {"username": email, "password": password}, REMOTE_ADDR=address)


def test_the_admin_login_locks_out_with_a_clear_message(staff_user, settings):
    settings.AXES_FAILURE_LIMIT = 3
    client = Client()
    for _ in range(2):
        assert _try(client, staff_user.email, "wrong").status_code == 200  # the form again
    locked = _try(client, staff_user.email, "wrong")
    assert locked.status_code == 429
    assert "Too many failed sign-in attempts" in locked.content.decode()
    assert int(locked["Retry-After"]) == 15 * 60
    # Even the right password is refused now, from this address...
    again = _try(client, staff_user.email, "correct-horse-battery")
    assert again.status_code == 429 and "_auth_user_id" not in client.session
    # ...but the same account from another address, and another account here, still sign in.
    assert (
        _try(Client(), staff_user.email, "correct-horse-battery", address="198.51.100.7").status_code == 302
    )


def test_another_account_from_the_same_address_is_not_locked(staff_user, settings):
    from accounts.tests.factories import UserFactory

    settings.AXES_FAILURE_LIMIT = 2
    other = UserFactory(is_staff=True, is_superuser=True)
    for _ in range(2):
        _try(Client(), staff_user.email, "wrong")
    assert _try(Client(), other.email, "correct-horse-battery").status_code == 302


def test_the_token_endpoint_locks_out_in_the_error_shape(user, settings):
    settings.AXES_FAILURE_LIMIT = 2
    client = APIClient()
    codes = [
        client.post("/api/auth/token/", {"email": user.email, "password": "nope"}, format="json").status_code
        for _ in range(3)
    ]
    assert codes[-1] == 429
    response = client.post(
        "/api/auth/token/", {"email": user.email, "password": "correct-horse-battery"}, format="json"
    )
    assert response.status_code == 429 and response.json()["code"] == "locked_out"
