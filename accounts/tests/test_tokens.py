"""API keys are stored as SHA-256, obtained and revoked at /api/auth/token/, never shown to staff."""

import hashlib
import importlib

import pytest
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import ApiToken
from accounts.services import issue_api_token

pytestmark = pytest.mark.django_db


def _me(key: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get("/api/me/").status_code


def test_a_key_is_stored_only_as_its_sha256(user):
    key = issue_api_token(user=user)
    stored = ApiToken.objects.get(user=user)
    assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM api_tokens")
        assert key not in repr(cursor.fetchall())
    assert _me(key) == 200


def test_obtain_with_password_then_revoke(user):
    client = APIClient()
    response = client.post(
        "/api/auth/token/", {"email": user.email, "password": "correct-horse-battery"}, format="json"
    )
    assert response.status_code == 201
    key = response.json()["token"]
    assert _me(key) == 200
    # A new key replaces the old one.
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    newer = client.post("/api/auth/token/").json()["token"]
    assert newer != key and _me(key) == 401 and _me(newer) == 200
    client.credentials(HTTP_AUTHORIZATION=f"Token {newer}")
    assert client.delete("/api/auth/token/").status_code == 204
    assert _me(newer) == 401
    assert not ApiToken.objects.filter(user=user).exists()


def test_wrong_password_gets_no_key(user):
    response = APIClient().post("/api/auth/token/", {"email": user.email, "password": "wrong"}, format="json")
    assert response.status_code == 401 and response.json()["code"] == "authentication_failed"
    assert APIClient().post("/api/auth/token/", {}, format="json").status_code == 401
    assert not ApiToken.objects.exists()


def test_an_inactive_users_key_is_refused(user):
    key = issue_api_token(user=user)
    user.is_active = False
    user.save()
    assert _me(key) == 401


def test_no_clear_token_in_the_admin(user, staff_user):
    key = issue_api_token(user=user)
    admin = Client()
    admin.force_login(staff_user)
    token = ApiToken.objects.get(user=user)
    pages = [
        admin.get("/admin/accounts/apitoken/"),
        admin.get(f"/admin/accounts/apitoken/{token.pk}/change/"),
        admin.get(f"/admin/accounts/user/{user.pk}/change/"),
        admin.get("/admin/"),
    ]
    for page in pages:
        assert page.status_code == 200
        assert key not in page.content.decode()
        assert token.key_hash not in page.content.decode()
    assert admin.get("/admin/authtoken/tokenproxy/").status_code == 404
    assert admin.get("/admin/accounts/apitoken/add/").status_code == 403


def test_existing_drf_keys_are_migrated_as_hashes(user):
    """A database from before this change: DRF's table with a clear key. The migration hashes it
    (the client keeps its key), then drops the clear table."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamptz NOT NULL, "
            "user_id bigint NOT NULL UNIQUE REFERENCES users(id))"
        )
        cursor.execute(
            "INSERT INTO authtoken_token VALUES ('0123456789abcdef0123456789abcdef01234567', now(), %s)",
            [user.pk],
        )
        migration = importlib.import_module("accounts.migrations.0003_hash_existing_drf_tokens")
        cursor.execute(migration.FORWARD)
        cursor.execute("SELECT to_regclass('authtoken_token')")
        assert cursor.fetchone()[0] is None
    assert _me("0123456789abcdef0123456789abcdef01234567") == 200
