import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from credits import services


def sample(client, name: str, labels: dict) -> float:
    text = client.get("/metrics").content.decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


@pytest.fixture
def staff_client(staff_user):
    client = Client()
    client.force_login(staff_user)
    return client


@pytest.mark.django_db
def test_metrics_refuse_anonymous_and_non_staff(api_client, user):
    response = api_client.get("/metrics")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    client = Client()
    client.force_login(user)
    assert client.get("/metrics").status_code == 403
    token_client = APIClient()
    from accounts.services import issue_api_token

    token_client.credentials(HTTP_AUTHORIZATION=f"Token {issue_api_token(user=user)}")
    assert token_client.get("/metrics").status_code == 403


@pytest.mark.django_db
def test_metrics_accept_a_staff_token(staff_user):
    from accounts.services import issue_api_token

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issue_api_token(user=staff_user)}")
    assert client.get("/metrics").status_code == 200


@pytest.mark.django_db
def test_metrics_accept_the_bearer_token(settings):
    settings.METRICS_TOKEN = "scrape-secret"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert client.get("/metrics").status_code == 200
    client.credentials(HTTP_AUTHORIZATION="Bearer wrong")
    assert client.get("/metrics").status_code == 401


@pytest.mark.django_db(transaction=True)
def test_counters_move_by_exactly_one(staff_client):
    from accounts.tests.factories import UserFactory

    user = UserFactory()
    services.grant(user=user, amount=15, reason="opening")
    client = APIClient()
    client.force_authenticate(user)
    client.get("/api/credits/")  # warm the balance entry

    ok = {"type": "deduction", "result": "ok"}
    insufficient = {"type": "deduction", "result": "insufficient"}
    hit = {"family": "balance", "result": "hit"}
    before = {k: sample(staff_client, n, lbl) for k, n, lbl in [
        ("ok", "fivedocks_credit_operations_total", ok),
        ("insufficient", "fivedocks_credit_operations_total", insufficient),
        ("hit", "fivedocks_cache_requests_total", hit),
    ]}  # fmt: skip

    assert (
        client.post(
            "/api/credits/deduct/", {"operation": "company_search", "idempotency_key": "m1"}
        ).status_code
        == 200
    )
    assert (
        client.post(
            "/api/credits/deduct/", {"operation": "company_search", "idempotency_key": "m2"}
        ).status_code
        == 402
    )
    assert client.get("/api/credits/").json()["balance"] == 5  # served from the cache entry

    assert sample(staff_client, "fivedocks_credit_operations_total", ok) == before["ok"] + 1
    assert (
        sample(staff_client, "fivedocks_credit_operations_total", insufficient) == before["insufficient"] + 1
    )
    assert sample(staff_client, "fivedocks_cache_requests_total", hit) == before["hit"] + 1


@pytest.mark.django_db
def test_request_latency_and_query_metrics_are_recorded(staff_client):
    staff_client.get("/api/me/")
    text = staff_client.get("/metrics").content.decode()
    assert 'fivedocks_http_request_duration_seconds_count{method="GET",status="200",view="me"}' in text
    assert "fivedocks_db_queries_total" in text


@pytest.mark.django_db
def test_responses_carry_a_request_id(user_client):
    response = user_client.get("/api/me/", HTTP_X_REQUEST_ID="abc-123")
    assert response["X-Request-ID"] == "abc-123"
    assert len(user_client.get("/api/me/")["X-Request-ID"]) == 32


@pytest.mark.django_db
def test_kvmigrate_progress_and_quarantine_are_exposed(staff_client, tmp_path):
    from accounts.tests.factories import UserFactory
    from kvmigrate.tests.helpers import kvmigrate, write_dump

    user = UserFactory()
    dump = write_dump(
        tmp_path / "s.jsonl", {f"user_credits:{user.id}": {"currentBalance": 5}}, raw={"credits:x": "{"}
    )
    code, _ = kvmigrate("--source", str(dump))
    assert code == 3  # one record quarantined
    assert sample(staff_client, "fivedocks_kvmigrate_quarantined_records", {}) == 1
    assert sample(staff_client, "fivedocks_kvmigrate_moved_records", {}) == 1
    assert (
        sample(
            staff_client, "fivedocks_kvmigrate_last_run_records", {"domain": "credits", "outcome": "created"}
        )
        == 1
    )


@pytest.mark.django_db
def test_invented_methods_and_paths_add_no_series():
    from fivedocks.metrics import REGISTRY

    def series() -> int:
        return sum(
            len(family.samples) for family in REGISTRY.collect() if family.name.startswith("fivedocks_http_")
        )

    from django.http import HttpResponse
    from django.test import RequestFactory

    from fivedocks.middleware import ObservabilityMiddleware

    client = Client()
    paths = ("/api/me/", "/no/such/page/{}", "/api/no-such/{}", "/healthz")
    middleware = ObservabilityMiddleware(lambda request: HttpResponse(status=405))
    factory = RequestFactory()
    # Warm up the fixed label values these requests can reach.
    for path in paths:
        client.generic("FOO", path.format(0))
    middleware(factory.generic("FOO", "/"))
    before = series()
    # A few through the whole stack, then 3,000 through the middleware that records the series.
    for i in range(1, 40):
        client.generic(f"X{i}", paths[i % 4].format(i))
    for i in range(3000):
        middleware(factory.generic(f"INVENTED{i}", f"/no/such/page/{i}"))
    assert series() == before
