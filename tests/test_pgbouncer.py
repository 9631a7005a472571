"""The live server runs through a real PgBouncer in transaction mode (tests/conftest.py)."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import psycopg
import pytest
import requests

from tests.liveserver import LiveServer

pytestmark = pytest.mark.live


def _auth(token: str) -> dict:
    return {"Authorization": f"Token {token}"}


def test_the_server_goes_through_pgbouncer_in_transaction_mode(outside_server: LiveServer, seed):
    bouncer = outside_server.pgbouncer
    assert bouncer is not None
    assert urlsplit(outside_server.env["DATABASE_URL"]).port == bouncer.port
    assert outside_server.env["DATABASE_PGBOUNCER"] == "1"
    config = {row["key"]: row["value"] for row in bouncer.admin("SHOW CONFIG")}
    assert config["pool_mode"] == "transaction"

    def transactions() -> int:
        rows = [r for r in bouncer.admin("SHOW STATS") if r["database"] == outside_server.database]
        return int(rows[0]["total_xact_count"]) if rows else 0

    before = transactions()
    member = seed["member"]
    for _ in range(3):  # the same statements again and again: never a server-side prepared one
        response = requests.post(
            f"{outside_server.url}/api/credits/deduct/",
            json={"operation": "company_search", "idempotency_key": f"bouncer-{uuid.uuid4().hex}"},
            headers=_auth(member["token"]),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        for path in ("/api/credits/", "/api/credits/transactions/", "/api/notifications/", "/api/me/"):
            got = requests.get(f"{outside_server.url}{path}", headers=_auth(member["token"]), timeout=10)
            assert got.status_code == 200, (path, got.text)
    assert transactions() > before
    assert " 500 " not in outside_server.log_tail(400)


def test_session_locks_are_not_left_behind_on_pooled_connections(outside_server: LiveServer, seed):
    """The seed's kvmigrate run took and released its session lock on DATABASE_DIRECT_URL; through
    PgBouncer the unlock could land on another server connection and the lock would stay held."""
    with psycopg.connect(outside_server.env["DATABASE_DIRECT_URL"], autocommit=True) as conn:
        held = conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
            " WHERE l.locktype = 'advisory' AND d.datname = current_database()"
        ).fetchone()[0]
    assert held == 0
