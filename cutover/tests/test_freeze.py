import pytest

from credits import services as credit_services
from cutover import services

pytestmark = pytest.mark.django_db


def test_frozen_domain_answers_503_to_writes_and_200_to_reads(user, user_client):
    credit_services.grant(user=user, amount=100, reason="welcome")
    services.set_freeze(domain="credits", frozen=True, reason="final delta run", retry_after_seconds=20)
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
