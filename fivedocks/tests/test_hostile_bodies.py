"""Hostile request bodies and headers get a 4xx in the one error shape, never a 500 or HTML."""

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

ERROR_KEYS = {"status", "code", "detail"}


def test_deeply_nested_json_is_400(user_client):
    for depth in (5_000, 200_000):
        body = "[" * depth + "]" * depth
        response = user_client.post("/api/credits/deduct/", body, content_type="application/json")
        assert response.status_code == 400, response.content[:200]
        assert response.json()["code"] == "parse_error"
    nested_object = '{"a":' * 50_000 + "1" + "}" * 50_000
    response = user_client.post(
        "/api/notifications/easter-eggs/claim/", nested_object, content_type="application/json"
    )
    assert response.status_code == 400


def test_an_oversized_body_under_api_is_json_413(user_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = '{"operation": "company_search", "idempotency_key": "' + "x" * 20_000 + '"}'
    response = user_client.post("/api/credits/deduct/", body, content_type="application/json")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response.json().keys() >= ERROR_KEYS and response.json()["code"] == "request_too_large"


def test_too_many_fields_under_api_is_json_400(user_client, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 100
    body = "&".join(f"f{i}=1" for i in range(500))
    response = user_client.post(
        "/api/credits/deduct/", body, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "too_many_fields"


def test_a_bad_host_under_api_is_json_400():
    response = Client().get("/api/me/", HTTP_HOST="evil.example.com")
    assert response.status_code == 400
    assert response.json() == {
        "status": 400,
        "code": "bad_host",
        "detail": "The Host header is not one this server answers to.",
    }
    page = Client().get("/admin/login/", HTTP_HOST="evil.example.com")
    assert page.status_code == 400 and not page["Content-Type"].startswith("application/json")
