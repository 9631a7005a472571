"""The default (local-memory) cache stays coherent across real gunicorn workers and instances.

Each worker keeps its own cache; every committed change reaches the others through PostgreSQL
NOTIFY and their listener threads (fivedocks/coherence.py). These tests warm the entry in every
worker, make one change through the API, then read on new connections (which land on every
worker) until every worker answers the new state; they fail if one is still stale after
`STALE_BOUND` seconds. `bench/coherence.py` measures the real window.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests
import stripe

from tests.liveserver import LiveServer, _connection_kwargs, free_port, gunicorn, manage, seeded_database

pytestmark = pytest.mark.live

STALE_BOUND = 5.0
WARM_BOUND = 30.0
WEBHOOK_SECRET = f"whsec_{secrets.token_hex(16)}"


@pytest.fixture(scope="module")
def coherence_db():
    from django.conf import settings

    extra = {
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SERVED_BY_HEADER": "1",
        "THROTTLE_DEDUCT": "100000/min",
        "CREDITS_BALANCE_CACHE_TTL": "600",  # staleness must end by the broadcast, not a TTL
        "CACHALOT_TIMEOUT": "600",
        "CACHE_URL": "locmemcache://fivedocks-coherence",
    }
    name = f"test_fd_coherence_{uuid.uuid4().hex[:8]}"
    db = settings.DATABASES["default"]
    with seeded_database(db, name=name, extra_env=extra, collect_static=False) as made:
        yield made


def _get(url: str, token: str) -> tuple[str, dict]:
    # A new connection every time (no session): the listening socket hands it to any worker.
    response = requests.get(url, headers={"Authorization": f"Token {token}"}, timeout=10)
    assert response.status_code == 200, (response.status_code, response.text[:300])
    return response.headers["X-Served-By"], response.json()


def _burst(urls_tokens: list[tuple[str, str]], n: int = 16) -> list[tuple[str, dict]]:
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(lambda ut: _get(*ut), [urls_tokens[i % len(urls_tokens)] for i in range(n)]))


def _warm(targets: list[tuple[str, str]], workers: int, state: Callable[[dict], object]) -> object:
    """Read until every worker has answered at least twice (its entry filled, then hit)."""
    seen: dict[str, int] = {}
    values: dict[str, object] = {}
    deadline = time.monotonic() + WARM_BOUND
    while time.monotonic() < deadline:
        for worker, body in _burst(targets):
            seen[worker] = seen.get(worker, 0) + 1
            value = state(body)
            values[repr(value)] = value
        if len(seen) >= workers and min(seen.values()) >= 2:
            assert len(values) == 1, values
            return next(iter(values.values()))
    raise AssertionError(f"reads reached {len(seen)} of {workers} workers: {seen}")


def _until_every_worker_answers(
    targets: list[tuple[str, str]], workers: int, state: Callable[[dict], object], expected
) -> dict[str, int]:
    """Read until every worker's latest answer is `expected`; fail after STALE_BOUND seconds."""
    latest: dict[str, object] = {}
    stale_reads: dict[str, int] = {}
    deadline = time.monotonic() + STALE_BOUND
    while time.monotonic() < deadline:
        for worker, body in _burst(targets):
            latest[worker] = state(body)
            if latest[worker] != expected:
                stale_reads[worker] = stale_reads.get(worker, 0) + 1
        if len(latest) >= workers and all(value == expected for value in latest.values()):
            return stale_reads
    stale = {w: v for w, v in latest.items() if v != expected}
    raise AssertionError(f"after {STALE_BOUND}s: stale workers {stale}, seen {len(latest)} of {workers}")


def _deduct(server: LiveServer, token: str) -> int:
    response = requests.post(
        f"{server.url}/api/credits/deduct/",
        json={"operation": "company_search", "idempotency_key": uuid.uuid4().hex},
        headers={"Authorization": f"Token {token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["balance"]


def _balance(body: dict) -> int:
    return body["balance"]


@pytest.fixture(scope="module")
def four_workers(coherence_db):
    env, seeded = coherence_db
    with gunicorn(env, workers=4, log_name="coherence-4-workers.log") as server:
        server.seed = seeded
        if os.environ.get("CACHE_BROADCAST") != "0":  # CACHE_BROADCAST=0 shows these tests fail
            _wait_listeners(server, 4)
        yield server


def _listener_backends(server: LiveServer) -> dict[int, int]:
    """{backend pid: worker pid} of the listeners connected to the server's database."""
    from django.conf import settings

    with psycopg.connect(**_connection_kwargs(settings.DATABASES["default"]), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid, application_name FROM pg_stat_activity "
            "WHERE datname = %s AND application_name LIKE 'fivedocks-cache-listener:%%'",
            [server.database],
        ).fetchall()
    return {pid: int(name.rsplit(":", 1)[1]) for pid, name in rows}


def _wait_listeners(server: LiveServer, count: int, *, not_in: frozenset = frozenset()) -> dict[int, int]:
    deadline = time.monotonic() + WARM_BOUND
    while time.monotonic() < deadline:
        backends = {pid: w for pid, w in _listener_backends(server).items() if pid not in not_in}
        if len(backends) >= count:
            return backends
        time.sleep(0.05)
    raise AssertionError(f"{count} listeners expected, found {_listener_backends(server)}")


def test_deduction_reaches_every_worker(four_workers: LiveServer):
    member = four_workers.seed["member"]
    targets = [(f"{four_workers.url}/api/credits/", member["token"])]
    before = _warm(targets, 4, _balance)
    after = _deduct(four_workers, member["token"])
    assert after == before - 10
    _until_every_worker_answers(targets, 4, _balance, after)


def test_subscription_change_by_signed_webhook_reaches_every_worker(four_workers: LiveServer):
    customer, sub = four_workers.seed["customer"], four_workers.seed["subscription"]
    targets = [(f"{four_workers.url}/api/billing/subscription/", customer["token"])]

    def status(body: dict) -> str:
        return body["status"]

    assert _warm(targets, 4, status) == "active"
    now = int(time.time())
    obj = {
        "id": sub["subscription_id"],
        "object": "subscription",
        "customer": sub["customer_id"],
        "status": "past_due",
        "cancel_at_period_end": False,
        "metadata": {"user_id": str(customer["id"]), "plan": sub["plan"]},
        "items": {"data": [{"price": {"id": "price_ugly_duckling"}, "current_period_start": now - 86400,
                            "current_period_end": now + 29 * 86400}]},
    }  # fmt: skip
    event = {
        "id": f"evt_{uuid.uuid4().hex[:20]}",
        "object": "event",
        "api_version": stripe.api_version,
        "created": now,
        "type": "customer.subscription.updated",
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "data": {"object": obj},
    }
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, WEBHOOK_SECRET)
    response = requests.post(
        f"{four_workers.url}/api/billing/webhook/",
        data=payload.encode(),
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    _until_every_worker_answers(targets, 4, status, "past_due")


def test_notification_flag_reaches_every_worker(four_workers: LiveServer):
    member = four_workers.seed["member"]
    targets = [(f"{four_workers.url}/api/notifications/", member["token"])]

    def shown(body: dict) -> list[int]:
        return sorted(item["id"] for item in body["notifications"])

    before = _warm(targets, 4, shown)
    assert 3 not in before
    response = requests.post(
        f"{four_workers.url}/api/notifications/3/shown/",
        headers={"Authorization": f"Token {member['token']}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    _until_every_worker_answers(targets, 4, shown, sorted({*before, 3}))


def test_killed_listener_clears_reconnects_and_no_read_is_stale(four_workers: LiveServer):
    member = four_workers.seed["member"]
    targets = [(f"{four_workers.url}/api/credits/", member["token"])]
    _warm(targets, 4, _balance)
    killed = _listener_backends(four_workers)
    assert len(killed) == 4, killed
    from django.conf import settings

    with psycopg.connect(**_connection_kwargs(settings.DATABASES["default"]), autocommit=True) as conn:
        for pid in killed:
            conn.execute("SELECT pg_terminate_backend(%s)", [pid])
    # A change while the listeners are down (or reconnecting): its notification may be lost.
    after = _deduct(four_workers, member["token"])
    _until_every_worker_answers(targets, 4, _balance, after)
    # Every worker reconnected with a new backend, and the new listeners carry changes again.
    reconnected = _wait_listeners(four_workers, 4, not_in=frozenset(killed))
    assert sorted(reconnected.values()) == sorted(killed.values())
    _warm(targets, 4, _balance)
    again = _deduct(four_workers, member["token"])
    _until_every_worker_answers(targets, 4, _balance, again)


def test_two_gunicorn_instances_on_one_database(coherence_db):
    env, seeded = coherence_db
    member = seeded["member"]
    with (
        gunicorn(env, workers=2, log_name="coherence-host-a.log") as host_a,
        gunicorn(env, workers=2, log_name="coherence-host-b.log") as host_b,
    ):
        _wait_listeners(host_a, 4)  # both instances' listeners are on the one database
        targets = [(f"{host.url}/api/credits/", member["token"]) for host in (host_a, host_b)]
        _warm(targets, 4, _balance)
        after = _deduct(host_a, member["token"])
        _until_every_worker_answers(targets, 4, _balance, after)
        after = _deduct(host_b, member["token"])
        _until_every_worker_answers(targets, 4, _balance, after)


def test_cache_outage_costs_speed_not_answers(coherence_db):
    """CACHE_URL at a closed port: every read and write answers as without a cache."""
    env, seeded = coherence_db
    env = {**env, "CACHE_URL": f"redis://127.0.0.1:{free_port()}/0"}
    member = seeded["member"]
    auth = {"Authorization": f"Token {member['token']}"}
    with gunicorn(env, workers=2, log_name="coherence-cache-outage.log", healthy=False) as server:
        health = requests.get(f"{server.url}/healthz", timeout=10)
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
        assert health.json()["checks"]["cache"]["ok"] is False
        assert health.json()["checks"]["database"] == {"ok": True}

        before = requests.get(f"{server.url}/api/credits/", headers=auth, timeout=10)
        assert before.status_code == 200, before.text
        deducted = requests.post(
            f"{server.url}/api/credits/deduct/",
            json={"operation": "company_search", "idempotency_key": uuid.uuid4().hex},
            headers=auth,
            timeout=10,
        )
        assert deducted.status_code == 200, deducted.text
        assert deducted.json()["balance"] == before.json()["balance"] - 10
        after = requests.get(f"{server.url}/api/credits/", headers=auth, timeout=10)
        assert after.json()["balance"] == deducted.json()["balance"]

        claim = requests.post(
            f"{server.url}/api/notifications/easter-eggs/claim/",
            json={"phrase": "5ducks"},
            headers=auth,
            timeout=10,
        )
        assert claim.status_code == 201, claim.text
        marked = requests.post(f"{server.url}/api/notifications/4/shown/", headers=auth, timeout=10)
        assert marked.status_code == 201, marked.text
        listed = requests.get(f"{server.url}/api/notifications/", headers=auth, timeout=10)
        assert listed.status_code == 200
        assert 4 in [item["id"] for item in listed.json()["notifications"]]
        assert 0 in [item["id"] for item in listed.json()["easter_eggs"]]
        reads = ("/api/me/", "/api/billing/subscription/", "/api/credits/transactions/", "/api/gmail/status/")
        for path in reads:
            response = requests.get(f"{server.url}{path}", headers=auth, timeout=10)
            assert response.status_code < 500, (path, response.status_code, response.text[:200])
    assert "Traceback" not in server.log_path.read_text()


def _deduct_status(server: LiveServer, token: str) -> tuple[str, int]:
    response = requests.post(
        f"{server.url}/api/credits/deduct/",
        json={"operation": "company_search", "idempotency_key": uuid.uuid4().hex},
        headers={"Authorization": f"Token {token}"},
        timeout=10,
    )
    assert response.status_code in (200, 503), response.text
    return response.headers["X-Served-By"], response.status_code


def _deduct_burst(server: LiveServer, token: str, n: int = 16) -> list[tuple[str, int]]:
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(lambda _: _deduct_status(server, token), range(n)))


def _set_freeze(server: LiveServer, frozen: bool) -> None:
    """From another process, through the service, as the admin switch does."""
    code = (
        "from cutover.services import set_freeze; "
        f"set_freeze(domain='credits', frozen={frozen}, reason='coherence test')"
    )
    manage(server.env, "shell", "-c", code)


def test_a_write_freeze_reaches_every_worker(four_workers: LiveServer):
    """Each worker remembers "credits is not frozen" (deductions warm it); a freeze set by another
    process is obeyed by every worker on its next write, and lifting it likewise."""
    token = four_workers.seed["member"]["token"]
    served: dict[str, int] = {}
    deadline = time.monotonic() + WARM_BOUND
    while len(served) < 4 or min(served.values()) < 2:
        assert time.monotonic() < deadline, f"deductions reached {served}"
        for worker, status in _deduct_burst(four_workers, token):
            assert status == 200
            served[worker] = served.get(worker, 0) + 1
    _set_freeze(four_workers, True)
    try:
        refused: set[str] = set()
        deadline = time.monotonic() + STALE_BOUND
        while len(refused) < 4:
            assert time.monotonic() < deadline, f"after {STALE_BOUND}s only {refused} refuse writes"
            for worker, status in _deduct_burst(four_workers, token):
                assert status == 503, f"worker {worker} took a write after the freeze committed"
                refused.add(worker)
    finally:
        _set_freeze(four_workers, False)
    accepted: set[str] = set()
    deadline = time.monotonic() + STALE_BOUND
    while len(accepted) < 4:
        assert time.monotonic() < deadline, f"after the freeze was lifted only {accepted} take writes"
        accepted |= {worker for worker, status in _deduct_burst(four_workers, token) if status == 200}
