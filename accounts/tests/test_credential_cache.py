"""A warm authenticated read runs no query; revoking, rotating or deactivating is seen at once."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from rest_framework.test import APIClient

from accounts import credential_cache
from accounts.services import issue_api_token, revoke_api_token
from accounts.tokens import hash_key
from credits import services as credit_services

pytestmark = pytest.mark.django_db(transaction=True)  # on_commit evictions run as in production


def _client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_a_warm_balance_read_with_a_token_runs_no_query(user):
    credit_services.grant(user=user, amount=100, kind="bonus", reason="test", idempotency_key="t:1")
    client = _client(issue_api_token(user=user))
    assert client.get("/api/credits/").status_code == 200  # fills the credential and balance entries
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/api/credits/")
    assert response.status_code == 200 and response.json()["balance"] == 100
    assert [q["sql"] for q in queries.captured_queries] == []


@override_settings(AUTH_CREDENTIAL_CACHE=False)
def test_with_the_cache_off_every_request_looks_the_token_up(user):
    client = _client(issue_api_token(user=user))
    client.get("/api/credits/")
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/credits/").status_code == 200
    assert any("api_tokens" in q["sql"] for q in queries.captured_queries)


def test_the_cache_never_holds_the_key_itself(user):
    key = issue_api_token(user=user)
    cache_key = credential_cache.key_for("api-token", hash_key(key))
    assert key not in cache_key and hash_key(key) not in cache_key


def test_a_revoked_key_is_refused_at_once(user):
    key = issue_api_token(user=user)
    client = _client(key)
    assert client.get("/api/me/").status_code == 200
    revoke_api_token(user=user)
    assert client.get("/api/me/").status_code == 401


def test_a_rotated_key_is_refused_and_the_new_one_works(user):
    old = issue_api_token(user=user)
    assert _client(old).get("/api/me/").status_code == 200
    new = issue_api_token(user=user)
    assert _client(old).get("/api/me/").status_code == 401
    assert _client(new).get("/api/me/").status_code == 200


def test_a_deactivated_user_is_refused_at_once(user):
    client = _client(issue_api_token(user=user))
    assert client.get("/api/me/").status_code == 200
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert client.get("/api/me/").status_code == 401


def test_revoking_in_the_admin_goes_through_the_service(user, staff_user):
    from django.test import Client

    key = issue_api_token(user=user)
    assert _client(key).get("/api/me/").status_code == 200
    admin = Client()
    admin.force_login(staff_user)
    token_id = user.api_token.pk
    response = admin.post(f"/admin/accounts/apitoken/{token_id}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert _client(key).get("/api/me/").status_code == 401


def test_a_warm_read_builds_no_sql_for_its_user(user, monkeypatch):
    """Not even a query that cachalot would answer: compiling one was 43% of a warm read's CPU."""
    from django.db.models.sql.compiler import SQLCompiler

    client = _client(issue_api_token(user=user))
    assert client.get("/api/me/").status_code == 200
    compiled = []
    original = SQLCompiler.as_sql
    monkeypatch.setattr(
        SQLCompiler, "as_sql", lambda self, *a, **k: compiled.append(1) or original(self, *a, **k)
    )
    assert client.get("/api/me/").status_code == 200
    assert compiled == []


def test_a_change_to_users_in_raw_sql_is_seen_on_the_next_request(user):
    """The remembered row lives while cachalot's stamp of `users` is unchanged: any write moves it."""
    client = _client(issue_api_token(user=user))
    assert client.get("/api/me/").json()["email"] == user.email
    with connection.cursor() as cursor:
        cursor.execute("UPDATE users SET email = %s WHERE id = %s", ["renamed@example.com", user.pk])
    assert client.get("/api/me/").json()["email"] == "renamed@example.com"
    with connection.cursor() as cursor:
        cursor.execute("UPDATE users SET is_active = false WHERE id = %s", [user.pk])
    assert client.get("/api/me/").status_code == 401


def test_each_request_gets_its_own_user_instance(user):
    from accounts.selectors import active_user

    first = active_user(user.pk)
    first.email = "changed-in-memory@example.com"
    second = active_user(user.pk)
    assert second is not first and second.email == user.email
    assert second._state.adding is False and second._state.db == "default"
