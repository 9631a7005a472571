"""Money-path throttles: one identity per client behind proxies, atomic counts, fail open."""

import threading
import uuid

import pytest
from django.db import connection
from rest_framework.settings import api_settings
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle

from accounts.tests.factories import UserFactory
from credits import services
from fivedocks.metrics import THROTTLE_FAIL_OPEN

REDIS_URL = "redis://127.0.0.1:6379/7"


@pytest.fixture
def rates():
    original = ScopedRateThrottle.THROTTLE_RATES

    def _set(**scoped):
        ScopedRateThrottle.THROTTLE_RATES = {**api_settings.DEFAULT_THROTTLE_RATES, **scoped}

    yield _set
    ScopedRateThrottle.THROTTLE_RATES = original


@pytest.fixture
def redis_cache(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"h17-throttle-{uuid.uuid4().hex}",
        }
    }
    yield


@pytest.mark.django_db
def test_x_forwarded_for_cannot_mint_identities(rates):
    rates(**{"stripe-webhook": "3/min"})
    client = APIClient()
    codes = [
        client.post(
            "/api/billing/webhook/",
            b"{}",
            content_type="application/json",
            HTTP_X_FORWARDED_FOR=f"10.0.0.{i}",
        ).status_code
        for i in range(6)
    ]
    assert codes[:3] == [400, 400, 400]  # unsigned: refused by the handler, but counted
    assert codes[3:] == [429, 429, 429]


@pytest.mark.django_db
def test_behind_a_declared_proxy_the_proxys_address_is_the_identity(rates, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    rates(**{"stripe-webhook": "2/min"})
    client = APIClient()

    def post(xff):
        return client.post(
            "/api/billing/webhook/", b"{}", content_type="application/json", HTTP_X_FORWARDED_FOR=xff
        ).status_code

    # The client may prepend anything; the address the proxy appended (the last) is the identity.
    assert [post(f"1.2.3.{i}, 203.0.113.7") for i in range(3)] == [400, 400, 429]
    assert post("203.0.113.8") == 400


def _deduct_concurrently(user, attempts: int, threads: int) -> list[int]:
    codes: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker(index: int) -> None:
        client = APIClient()
        client.force_authenticate(user)
        barrier.wait()
        try:
            for n in range(attempts // threads):
                code = client.post(
                    "/api/credits/deduct/",
                    {"operation": "company_search", "idempotency_key": f"c-{index}-{n}"},
                    format="json",
                ).status_code
                with lock:
                    codes.append(code)
        finally:
            connection.close()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return codes


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("store", ["postgresql", "redis"])
def test_deductions_are_counted_atomically_under_concurrency(store, rates, request):
    if store == "redis":
        request.getfixturevalue("redis_cache")
    rates(**{"credits-deduct": "20/min"})
    user = UserFactory()
    services.grant(user=user, amount=100_000, reason="welcome")
    codes = _deduct_concurrently(user, attempts=64, threads=8)
    assert codes.count(200) == 20, sorted(codes)
    assert codes.count(429) == 44


@pytest.mark.django_db
def test_a_cache_outage_fails_open_and_is_counted(rates, settings, user, user_client):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    rates(**{"credits-deduct": "1/min"})
    services.ensure_account(user_id=user.pk)
    before = THROTTLE_FAIL_OPEN.labels("credits-deduct")._value.get()
    codes = [
        user_client.post(
            "/api/credits/deduct/", {"operation": "company_search", "idempotency_key": f"o{i}"}, format="json"
        ).status_code
        for i in range(3)
    ]
    assert 429 not in codes  # not throttled (402: no credits; the deduction itself was tried)
    assert THROTTLE_FAIL_OPEN.labels("credits-deduct")._value.get() == before + 3
