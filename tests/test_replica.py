"""Reads on a real streaming replica, through a real gunicorn (2 workers), from the outside.

The cluster is started here (tests/pgcluster.py): a primary and a replica streaming from it, on
free ports, with pg_stat_statements on both, so which server answered a read is counted by the
servers themselves. The servers use a shared Redis cache, so a read-your-writes marker set by
one worker is seen by the other.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.liveserver import OUTPUT, LiveServer, gunicorn, manage, production_env, run_seed
from tests.pgcluster import ReplicatedCluster, ledger_reads, replicated_cluster

pytestmark = [pytest.mark.replica, pytest.mark.live]

DATABASE = "fd_replica_e2e"
REDIS_CACHE = "redis://127.0.0.1:6379/12"


def _auth(token: str) -> dict:
    return {"Authorization": f"Token {token}"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[ReplicatedCluster]:
    with replicated_cluster() as running:
        yield running


@pytest.fixture(scope="module")
def prepared(cluster: ReplicatedCluster) -> Iterator[dict]:
    """The app's database on the primary: migrated, seeded through the services, replicated."""
    with cluster.primary.connect() as conn:
        conn.execute(f"CREATE DATABASE {DATABASE}")
    with cluster.primary.connect(DATABASE) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    static_root = Path(tempfile.mkdtemp(prefix="fd-replica-static-"))
    base = production_env(
        database_url=cluster.primary.url(DATABASE),
        static_root=static_root,
        extra={
            "CACHE_URL": REDIS_CACHE,
            "STRIPE_SECRET_KEY": f"sk_test_{secrets.token_hex(12)}",
            "STRIPE_WEBHOOK_SECRET": f"whsec_{secrets.token_hex(16)}",
        },
    )
    try:
        manage(base, "migrate", "--noinput", "--verbosity", "0")
        manage(base, "collectstatic", "--noinput", "--verbosity", "0")
        seeded = run_seed(base)  # no replica configured: no read-your-writes markers left behind
        cluster.wait_replayed()
        yield {"env": base, "seed": seeded}
    finally:
        shutil.rmtree(static_root, ignore_errors=True)


def _server(cluster: ReplicatedCluster, prepared: dict, log_name: str, **settings: str):
    env = dict(prepared["env"])
    env.update({"DATABASE_REPLICA_URLS": cluster.replica.url(DATABASE), "METRICS_TOKEN": "replica-test"})
    env.update(settings)
    OUTPUT.mkdir(exist_ok=True)
    return gunicorn(env, workers=2, log_name=log_name)


@pytest.fixture(scope="module")
def tolerant(cluster: ReplicatedCluster, prepared: dict) -> Iterator[LiveServer]:
    """Lag up to an hour is fine: only read-your-writes sends a user's reads to the primary."""
    with _server(
        cluster,
        prepared,
        "replica-tolerant.log",
        REPLICA_MAX_LAG_SECONDS="3600",
        REPLICA_CHECK_SECONDS="0.2",
        READ_YOUR_WRITES_SECONDS="60",
    ) as server:
        yield server


class Counts:
    """Ledger queries each server has executed since the last `take()`."""

    def __init__(self, cluster: ReplicatedCluster):
        self.cluster = cluster
        self.primary = self.replica = 0
        self.take()

    def take(self) -> tuple[int, int]:
        with self.cluster.primary.connect(DATABASE) as p, self.cluster.replica.connect(DATABASE) as r:
            primary, replica = ledger_reads(p, DATABASE), ledger_reads(r, DATABASE)
        delta = (primary - self.primary, replica - self.replica)
        self.primary, self.replica = primary, replica
        return delta


def _history(server: LiveServer, user: dict) -> list[dict]:
    response = requests.get(
        f"{server.url}/api/credits/transactions/", headers=_auth(user["token"]), timeout=10
    )
    assert response.status_code == 200, (response.status_code, response.text, server.log_tail())
    return response.json()["results"]


def _healthz(server: LiveServer) -> tuple[int, dict]:
    response = requests.get(f"{server.url}/healthz", timeout=10)
    return response.status_code, response.json()


def _replica_check(server: LiveServer) -> tuple[int, dict, dict]:
    status, body = _healthz(server)
    return status, body, body["checks"]["replica:replica_1"]


def _wait_for(predicate, timeout: float = 30, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {message}")


def test_selector_reads_hit_the_replica(cluster: ReplicatedCluster, tolerant: LiveServer, prepared: dict):
    customer = prepared["seed"]["customer"]
    status, body, check = _replica_check(tolerant)
    assert status == 200 and body["status"] == "ok", body
    assert check["ok"] is True and check["up"] is True and check["lag_seconds"] == 0, check

    counts = Counts(cluster)
    for _ in range(6):  # both workers, each deciding for itself
        entries = _history(tolerant, customer)
        assert [e["type"] for e in entries][:1] == ["purchase"], entries
    primary, replica = counts.take()
    assert replica >= 6, (primary, replica)
    assert primary == 0, (primary, replica)

    # The other replica-read selectors answer too (notifications, subscription, Gmail status).
    for path in ("/api/notifications/", "/api/billing/subscription/", "/api/gmail/status/"):
        response = requests.get(f"{tolerant.url}{path}", headers=_auth(customer["token"]), timeout=10)
        assert response.status_code == 200, (path, response.text)
    assert (
        requests.get(
            f"{tolerant.url}/api/billing/subscription/", headers=_auth(customer["token"]), timeout=10
        ).json()["plan"]
        == "ugly-duckling"
    )

    metrics = requests.get(
        f"{tolerant.url}/metrics", headers={"Authorization": "Bearer replica-test"}, timeout=10
    )
    assert 'fivedocks_db_replica_lag_seconds{alias="replica_1"} 0.0' in metrics.text
    assert 'fivedocks_db_replica_up{alias="replica_1"} 1.0' in metrics.text


def test_own_deduction_is_read_back_from_the_primary(
    cluster: ReplicatedCluster, tolerant: LiveServer, prepared: dict
):
    member, customer = prepared["seed"]["member"], prepared["seed"]["customer"]
    cluster.pause_replay()  # the replica stops applying: anything written now is missing there
    try:
        key = f"replica-{uuid.uuid4().hex}"
        response = requests.post(
            f"{tolerant.url}/api/credits/deduct/",
            json={"operation": "individual_email", "idempotency_key": key},
            headers=_auth(member["token"]),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        balance, entry_id = response.json()["balance"], response.json()["transaction"]["id"]
        with cluster.replica.connect(DATABASE) as replica:
            missing = replica.execute(
                "SELECT count(*) FROM credit_transactions WHERE id = %s", [entry_id]
            ).fetchone()[0]
        assert missing == 0, "the replica must not have the deduction yet (replay is paused)"

        counts = Counts(cluster)
        for _ in range(4):  # whichever worker answers
            entries = _history(tolerant, member)
            assert entries[0]["id"] == entry_id, entries[:2]
            got = requests.get(f"{tolerant.url}/api/credits/", headers=_auth(member["token"]), timeout=10)
            assert got.json()["balance"] == balance
        primary, replica = counts.take()
        assert primary >= 4 and replica == 0, (primary, replica)

        # Someone who wrote nothing still reads the (late, but within the threshold) replica.
        _history(tolerant, customer)
        primary, replica = counts.take()
        assert replica >= 1 and primary == 0, (primary, replica)
    finally:
        cluster.resume_replay()
    cluster.wait_replayed()


@pytest.fixture(scope="module")
def strict(cluster: ReplicatedCluster, prepared: dict) -> Iterator[LiveServer]:
    """A replica more than a second late is skipped; a writer reads the primary for 1 s."""
    with _server(
        cluster,
        prepared,
        "replica-strict.log",
        REPLICA_MAX_LAG_SECONDS="1",
        REPLICA_CHECK_SECONDS="0.2",
        READ_YOUR_WRITES_SECONDS="1",
    ) as server:
        yield server


def test_a_replica_past_the_lag_threshold_is_skipped(cluster: ReplicatedCluster, prepared: dict, strict):
    customer, staff = prepared["seed"]["customer"], prepared["seed"]["staff"]
    # An idle primary does not make the replica late: nothing written for over the threshold.
    time.sleep(1.5)
    _, _, check = _replica_check(strict)
    assert check["ok"] is True and check["lag_seconds"] == 0, check

    cluster.pause_replay()
    try:
        with cluster.primary.connect(DATABASE) as primary:  # a write the replica cannot apply
            primary.execute("UPDATE users SET last_login = now() WHERE id = %s", [staff["id"]])
        _, body, check = _wait_for(
            lambda: (r := _replica_check(strict)) and r[2]["lag_seconds"] and r[2]["lag_seconds"] > 1.2 and r,
            message="the replica's lag to pass the threshold",
        )
        assert check["ok"] is False and check["up"] is True, check
        assert body["status"] == "degraded"
        time.sleep(0.3)  # both workers' probes (every 0.2 s) have seen it by now

        counts = Counts(cluster)
        for _ in range(6):
            _history(strict, customer)
        primary, replica = counts.take()
        assert primary >= 6 and replica == 0, (primary, replica)
    finally:
        cluster.resume_replay()
    cluster.wait_replayed()
    _wait_for(lambda: _replica_check(strict)[2]["ok"], message="the replica to catch up")
    time.sleep(0.3)
    counts = Counts(cluster)
    for _ in range(4):
        _history(strict, customer)
    primary, replica = counts.take()
    assert replica >= 4 and primary == 0, (primary, replica)


def test_admin_lists_read_the_replica(cluster: ReplicatedCluster, prepared: dict, strict: LiveServer):
    staff = prepared["seed"]["staff"]
    session = requests.Session()
    login = session.get(f"{strict.url}/admin/login/", timeout=10)
    response = session.post(
        f"{strict.url}/admin/login/?next=/admin/",
        data={
            "username": staff["email"],
            "password": staff["password"],
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": login.url},
        timeout=10,
    )
    assert response.status_code == 200 and response.url.endswith("/admin/"), response.url
    time.sleep(1.2)  # the login was a write: its read-your-writes second passes
    counts = Counts(cluster)
    for _ in range(3):
        page = session.get(f"{strict.url}/admin/credits/credittransaction/", timeout=10)
        assert page.status_code == 200, page.status_code
        assert "e2e: starting credits" in page.text
    primary, replica = counts.take()
    assert replica >= 3 and primary == 0, (primary, replica)


def test_a_stopped_replica_costs_speed_never_an_error(cluster: ReplicatedCluster, prepared: dict):
    """Probed once an hour, the workers still believe the replica is up when it stops: their
    reads fail on it and are answered from the primary in the same request."""
    customer = prepared["seed"]["customer"]
    with _server(
        cluster, prepared, "replica-stopped.log", REPLICA_MAX_LAG_SECONDS="3600", REPLICA_CHECK_SECONDS="3600"
    ) as server:
        expected = [e["id"] for e in _history(server, customer)]
        counts = Counts(cluster)
        for _ in range(6):
            _history(server, customer)
        assert counts.take()[1] >= 6  # both workers read the replica

        cluster.replica.stop("fast")
        try:
            for _ in range(8):
                assert [e["id"] for e in _history(server, customer)] == expected
            status, body, check = _replica_check(server)  # /healthz probes afresh
            assert status == 200 and body["status"] == "degraded", body
            assert check == {
                "ok": False,
                "up": False,
                "lag_seconds": None,
                "max_lag_seconds": 3600.0,
                "error": check["error"],
            }
            # Each worker reports what it has seen; a scrape may land on one that none of the
            # reads above reached (it still believes the replica up until its hourly probe), so
            # new connections are tried until a worker that met the stopped replica answers.
            scrapes = []
            for _ in range(20):
                metrics = requests.get(
                    f"{server.url}/metrics", headers={"Authorization": "Bearer replica-test"}, timeout=10
                )
                scrapes.append(metrics.text)
                if 'fivedocks_db_replica_up{alias="replica_1"} 0.0' in metrics.text:
                    break
            assert 'fivedocks_db_replica_up{alias="replica_1"} 0.0' in scrapes[-1], scrapes[-1][-500:]
            assert " 500 " not in server.log_tail(200)
        finally:
            cluster.replica.start()
        cluster.wait_replayed()
        status, body, check = _replica_check(server)
        assert check["ok"] is True and body["status"] == "ok", body
