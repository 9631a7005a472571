"""The credential cache on real gunicorn workers: a revocation reaches every worker's entry.

Each worker remembers a credential in its own local-memory cache (accounts.credential_cache).
These tests warm the entry in every worker (each answers at least twice: filled, then hit), change
the credential from another process (`manage.py`, as an operator would), then call on new
connections until every worker refuses it; they fail if one still accepts it after
`STALE_BOUND` seconds (the entries' TTL is an hour: only the broadcast can end them).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from fiveducks.testing import FirebaseCerts
from tests.liveserver import LiveServer, gunicorn, manage, seeded_database
from tests.test_coherent_cache import _wait_listeners

pytestmark = pytest.mark.live

WORKERS = 2
STALE_BOUND = 5.0
WARM_BOUND = 30.0
HOLDS = "/api/service/credits/holds/"


@pytest.fixture(scope="module")
def firebase():
    with FirebaseCerts() as certs:
        yield certs


@pytest.fixture(scope="module")
def server(firebase):
    from django.conf import settings

    extra = {
        "STRIPE_WEBHOOK_SECRET": f"whsec_{uuid.uuid4().hex}",  # the seed's subscription needs one
        "SERVED_BY_HEADER": "1",
        "AUTH_CREDENTIAL_CACHE_TTL": "3600",
        "CACHALOT_TIMEOUT": "3600",
        "CACHE_URL": "locmemcache://fivedocks-credentials",
        "FIREBASE_PROJECT_ID": firebase.project_id,
        "FIREBASE_CERTS_URL": firebase.url,
    }
    name = f"test_fd_credentials_{uuid.uuid4().hex[:8]}"
    db = settings.DATABASES["default"]
    with seeded_database(db, name=name, extra_env=extra, collect_static=False) as (env, seeded):
        log = "credential-cache-2-workers.log"
        with gunicorn(env, workers=WORKERS, log_name=log) as live:  # needs `env`: not one `with`
            live.seed = seeded
            _wait_listeners(live, WORKERS)
            yield live


Call = Callable[[], requests.Response]


def _burst(call: Call, n: int = 8) -> list[requests.Response]:
    # A new connection every call (no session): the listening socket hands it to any worker.
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(lambda _: call(), range(n)))


def _warm(call: Call, expected: int) -> None:
    """Until every worker has answered `expected` at least twice (its entry filled, then hit)."""
    seen: dict[str, int] = {}
    deadline = time.monotonic() + WARM_BOUND
    while time.monotonic() < deadline:
        for response in _burst(call):
            assert response.status_code == expected, (response.status_code, response.text[:300])
            worker = response.headers["X-Served-By"]
            seen[worker] = seen.get(worker, 0) + 1
        if len(seen) >= WORKERS and min(seen.values()) >= 2:
            return
    raise AssertionError(f"calls reached {len(seen)} of {WORKERS} workers: {seen}")


def _until_every_worker_answers(call: Call, expected: int) -> None:
    latest: dict[str, int] = {}
    deadline = time.monotonic() + STALE_BOUND
    while time.monotonic() < deadline:
        for response in _burst(call):
            latest[response.headers["X-Served-By"]] = response.status_code
        if len(latest) >= WORKERS and set(latest.values()) == {expected}:
            return
    raise AssertionError(f"after {STALE_BOUND}s the workers answer {latest}, not all {expected}")


def _service_call(server: LiveServer, token: str) -> Call:
    def call() -> requests.Response:
        # Authenticated with bad input: 400, no hold made; 401 once the secret is refused.
        return requests.post(
            f"{server.url}{HOLDS}", json={}, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    return call


def test_a_revoked_or_disabled_service_secret_is_refused_by_every_worker(server: LiveServer):
    name = f"live-{uuid.uuid4().hex[:6]}"
    first = manage(server.env, "service_client", "create", name, "--scopes", "credits:charge").strip()
    _warm(_service_call(server, first), 400)
    second = manage(server.env, "service_client", "rotate", name).strip()
    _warm(_service_call(server, second), 400)
    manage(server.env, "service_client", "revoke-old", name)
    _until_every_worker_answers(_service_call(server, first), 401)
    _until_every_worker_answers(_service_call(server, second), 400)
    manage(server.env, "service_client", "set-scopes", name, "--scopes", "gmail:token")
    _until_every_worker_answers(_service_call(server, second), 403)
    manage(server.env, "service_client", "disable", name)
    _until_every_worker_answers(_service_call(server, second), 401)


def test_a_deactivated_firebase_user_is_refused_by_every_worker(server: LiveServer, firebase):
    member = server.seed["member"]
    token = firebase.mint(uid=f"uid-{uuid.uuid4().hex[:8]}", email=member["email"], email_verified=True)

    def call() -> requests.Response:
        return requests.get(
            f"{server.url}/api/credits/", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    _warm(call, 200)
    deactivate = "from accounts.models import User; u = User.objects.get(pk=%d); u.is_active = %s; u.save()"
    manage(server.env, "shell", "-c", deactivate % (member["id"], False))
    try:
        _until_every_worker_answers(call, 401)
    finally:
        manage(server.env, "shell", "-c", deactivate % (member["id"], True))
    _until_every_worker_answers(call, 200)
