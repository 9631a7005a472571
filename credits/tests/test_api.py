import pytest

from credits import services
from credits.models import CreditTransaction

pytestmark = pytest.mark.django_db


def test_balance_of_a_new_user_is_zero(user_client):
    body = user_client.get("/api/credits/").json()
    assert body["balance"] == 0 and body["total_used"] == 0


def test_balance_and_totals(user, user_client):
    services.grant(user=user, amount=300, kind="purchase", reason="pack")
    body = user_client.get("/api/credits/").json()
    assert (body["balance"], body["total_purchased"]) == (300, 300)


def test_balance_body_is_the_serializers_for_each_caller(user, user_client, staff_user):
    """The view shares one serializer between requests: each caller still gets exactly what a
    fresh BalanceSerializer gives for their own balance (holds and a last update included)."""
    from rest_framework.test import APIClient

    from credits import selectors
    from credits.serializers import BalanceSerializer

    services.grant(user=user, amount=120, kind="purchase", reason="pack")
    services.open_hold(user=user, amount=20, idempotency_key="h")
    staff_client = APIClient()
    staff_client.force_authenticate(staff_user)
    for who, client in [(user, user_client), (staff_user, staff_client), (user, user_client)]:
        expected = BalanceSerializer(selectors.balance_from_database(user_id=who.pk)).data
        assert client.get("/api/credits/").json() == dict(expected)
    assert user_client.get("/api/credits/").json()["available"] == 100
    assert staff_client.get("/api/credits/").json()["balance"] == 0


def test_anonymous_is_refused(api_client):
    for method, url in [
        ("get", "/api/credits/"),
        ("get", "/api/credits/transactions/"),
        ("post", "/api/credits/deduct/"),
        ("post", "/api/credits/grant/"),
    ]:
        response = getattr(api_client, method)(url)
        assert response.status_code == 401, url


def test_deduct_returns_the_new_balance(user, user_client):
    services.grant(user=user, amount=100, reason="welcome")
    response = user_client.post(
        "/api/credits/deduct/", {"operation": "company_search", "idempotency_key": "a1"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["balance"] == 90 and body["replayed"] is False
    assert body["transaction"]["amount"] == -10


def test_deduct_replayed_key_returns_the_first_result(user, user_client):
    services.grant(user=user, amount=100, reason="welcome")
    first = user_client.post("/api/credits/deduct/", {"operation": "company_search", "idempotency_key": "a1"})
    second = user_client.post(
        "/api/credits/deduct/", {"operation": "company_search", "idempotency_key": "a1"}
    )
    assert second.status_code == 200
    assert second.json()["replayed"] is True
    assert second.json()["transaction"]["id"] == first.json()["transaction"]["id"]
    assert second.json()["balance"] == 90
    assert user_client.get("/api/credits/").json()["balance"] == 90


def test_deduct_insufficient_is_402(user, user_client):
    services.grant(user=user, amount=5, reason="welcome")
    response = user_client.post(
        "/api/credits/deduct/", {"operation": "company_search", "idempotency_key": "a1"}
    )
    assert response.status_code == 402
    assert response.json()["code"] == "insufficient_credits"
    assert CreditTransaction.objects.filter(user=user, type="deduction").count() == 0


def test_deduct_unknown_operation_is_400(user_client):
    response = user_client.post("/api/credits/deduct/", {"operation": "teleport", "idempotency_key": "a1"})
    assert response.status_code == 400
    assert response.json()["code"] == "unknown_operation"


def test_deduct_without_key_is_400(user_client):
    response = user_client.post("/api/credits/deduct/", {"operation": "company_search"})
    assert response.status_code == 400
    assert "idempotency_key" in response.json()["fields"]


def test_key_reused_for_another_operation_is_409(user, user_client):
    services.grant(user=user, amount=1000, reason="welcome")
    user_client.post("/api/credits/deduct/", {"operation": "company_search", "idempotency_key": "a1"})
    response = user_client.post("/api/credits/deduct/", {"operation": "full_search", "idempotency_key": "a1"})
    assert response.status_code == 409


def test_transactions_are_own_only_newest_first(user, staff_user, user_client):
    services.grant(user=user, amount=100, reason="first")
    services.deduct(user=user, operation="company_search")
    services.grant(user=staff_user, amount=999, reason="someone else's")
    body = user_client.get("/api/credits/transactions/").json()
    assert body["count"] == 2
    assert [row["reason"] for row in body["results"]] == ["company_search", "first"]


def test_transactions_filter_by_type_and_bad_dates(user, user_client):
    services.grant(user=user, amount=100, reason="first")
    services.deduct(user=user, operation="company_search")
    body = user_client.get("/api/credits/transactions/?type=deduction").json()
    assert [row["type"] for row in body["results"]] == ["deduction"]
    response = user_client.get("/api/credits/transactions/?created_from=not-a-date")
    assert response.status_code == 400
    response = user_client.get(
        "/api/credits/transactions/?created_from=2026-02-01T00:00:00Z&created_to=2026-01-01T00:00:00Z"
    )
    assert response.status_code == 400


def test_grant_is_staff_only(user, user_client, staff_client):
    payload = {"user_id": user.id, "amount": 50, "reason": "goodwill"}
    assert user_client.post("/api/credits/grant/", payload).status_code == 403
    response = staff_client.post("/api/credits/grant/", payload)
    assert response.status_code == 201
    assert response.json()["balance"] == 50


def test_grant_to_unknown_user_is_404(staff_client):
    response = staff_client.post("/api/credits/grant/", {"user_id": 999999, "amount": 5, "reason": "x"})
    assert response.status_code == 404


def test_grant_rejects_non_positive_amount(user, staff_client):
    response = staff_client.post("/api/credits/grant/", {"user_id": user.id, "amount": 0, "reason": "x"})
    assert response.status_code == 400


def test_grant_amount_beyond_the_bound_is_400_not_500(user, staff_client):
    payload = {"user_id": user.id, "amount": 10**20, "reason": "x"}
    response = staff_client.post("/api/credits/grant/", payload, format="json")
    assert response.status_code == 400
    assert "amount" in response.json()["fields"]


def test_endpoints_are_in_the_schema(user_client):
    paths = user_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    for path in [
        "/api/credits/",
        "/api/credits/transactions/",
        "/api/credits/deduct/",
        "/api/credits/grant/",
    ]:
        assert path in paths


def test_deductions_are_throttled_with_a_clear_429(user, user_client, settings):
    from rest_framework.settings import api_settings
    from rest_framework.throttling import ScopedRateThrottle

    services.grant(user=user, amount=1000, reason="welcome")
    rates = {**api_settings.DEFAULT_THROTTLE_RATES, "credits-deduct": "3/min"}
    original = ScopedRateThrottle.THROTTLE_RATES
    ScopedRateThrottle.THROTTLE_RATES = rates
    try:
        codes = [
            user_client.post(
                "/api/credits/deduct/", {"operation": "company_search", "idempotency_key": f"t{i}"}
            )
            for i in range(4)
        ]
    finally:
        ScopedRateThrottle.THROTTLE_RATES = original
    assert [r.status_code for r in codes] == [200, 200, 200, 429]
    assert codes[-1].json()["code"] == "throttled"
    assert int(codes[-1]["Retry-After"]) > 0
