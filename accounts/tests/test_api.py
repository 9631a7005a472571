import pytest
from rest_framework.test import APIClient

from accounts.services import issue_api_token

pytestmark = pytest.mark.django_db


def test_me_requires_credentials(api_client):
    response = api_client.get("/api/me/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["code"] == "not_authenticated"
    assert set(response.json()) >= {"status", "code", "detail"}


def test_me_with_token_returns_own_data(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issue_api_token(user=user)}")
    response = client.get("/api/me/")
    assert response.status_code == 200
    assert response.json()["email"] == user.email
    assert response.json()["id"] == user.id


def test_me_with_session_login(user):
    client = APIClient()
    assert client.login(email=user.email, password="correct-horse-battery")
    assert client.get("/api/me/").json()["email"] == user.email


def test_bad_token_is_rejected_with_the_error_shape():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get("/api/me/")
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def test_unknown_api_path_is_json_404(user_client):
    response = user_client.get("/api/does-not-exist/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
