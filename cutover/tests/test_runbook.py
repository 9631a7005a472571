"""docs/cutover.md played end to end against a live KV store (the local Replit Database server).

The old platform keeps changing credit records while the bulk run and two delta runs move them;
then writes freeze, the last delta run moves the rest and verifies clean; then fivedocks serves
writes with the mirror on; finally the KV store read back equals PostgreSQL record for record.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import User
from cutover import services as cutover_services
from cutover.drain import drain
from fivedocks.domains import MIRRORED_DOMAINS
from kvmigrate.codec import decode_value, encode_value
from kvmigrate.kvgen import GenOptions, generate
from kvmigrate.replit_server import start_replit_server
from kvmigrate.reverse import render_batch, user_batches
from kvmigrate.sources import open_source, open_writer
from kvmigrate.tests.helpers import kvmigrate
from kvmigrate.tests.kvrecords import same_for_old_code

pytestmark = pytest.mark.django_db(transaction=True)

MIRRORED = frozenset(MIRRORED_DOMAINS)  # every domain the KV mirror writes back


class OldPlatform(threading.Thread):
    """Stands in for the old application: keeps charging searches in the KV store."""

    def __init__(self, url: str, user_ids: list[int]):
        super().__init__(daemon=True)
        self.url, self.user_ids = url, user_ids
        self.stop_event = threading.Event()
        self.changes = 0
        self.rng = random.Random(5)

    def run(self) -> None:
        source = open_source(self.url)
        writer = open_writer(self.url)
        try:
            while not self.stop_event.is_set():
                key = f"user_credits:{self.rng.choice(self.user_ids)}"
                raw = source.get(key)
                if raw is None:
                    continue
                record = decode_value(raw)
                if not isinstance(record, dict) or record.get("currentBalance", 0) < 10:
                    continue
                now = int(time.time() * 1000)
                record["currentBalance"] -= 10
                record["totalUsed"] = record.get("totalUsed", 0) + 10
                record["updatedAt"] = now
                record.setdefault("transactions", []).append(
                    {"type": "debit", "amount": 10, "description": "company search", "timestamp": now,
                     "searchType": "company_search", "success": True}
                )  # fmt: skip
                writer.set_many([(key, encode_value(record))])
                self.changes += 1
                time.sleep(0.01)
        finally:
            source.close()
            writer.close()


def store_records(url: str) -> dict[str, object]:
    with open_source(url) as source:
        return {
            key: decode_value(raw)
            for batch in source.iter_batches(500)
            for key, raw in batch
            if key.startswith(("user_credits:", "user_tokens:"))
        }


def postgres_records() -> dict[str, object]:
    return {
        key: decode_value(raw) for users in user_batches(500) for key, raw in render_batch(users, MIRRORED)
    }


def assert_same_records(store: dict, postgres: dict) -> None:
    """The store holds PostgreSQL's records as the old code reads them.

    Where the store's record lacked a field the old code reads, PostgreSQL's rendering adds it;
    the mirror's `updatedAt` may be later than the account's own (a flag change moves it).
    """
    assert store.keys() == postgres.keys()
    for key, record in store.items():
        rendered = postgres[key]
        if key.startswith("user_credits:") and "updatedAt" in record and "updatedAt" in rendered:
            assert record["updatedAt"] >= rendered["updatedAt"], key
            record, rendered = dict(record), dict(rendered)
            record["updatedAt"] = rendered["updatedAt"]
        assert same_for_old_code(key, rendered, record) or rendered == record, (key, record, rendered)


def test_the_runbook_end_to_end(tmp_path, settings):
    url, server = start_replit_server(limits=False)
    try:
        dump, users_csv = tmp_path / "kv.jsonl", tmp_path / "users.csv"
        generate(GenOptions(users=60, seed=3, malformed_share=0.0), dump, users_out=users_csv)
        with open_source(str(dump)) as source, open_writer(url) as writer:
            for batch in source.iter_batches(500):
                writer.set_many(batch)
        user_ids = [int(line.split(",")[0]) for line in users_csv.read_text().splitlines()[1:]]

        old_platform = OldPlatform(url, user_ids)
        old_platform.start()
        try:
            # 1. bulk run while the old platform writes (verify may see records that changed since)
            code, out = kvmigrate("--source", url, "--users-from", str(users_csv))
            assert code in (0, 3), out
            # 2. two delta runs, still under writes
            for _ in range(2):
                time.sleep(0.2)
                code, out = kvmigrate("--source", url)
                assert code in (0, 3), out
        finally:
            # 3. freeze: the old platform stops, fivedocks's writes answer 503
            old_platform.stop_event.set()
            old_platform.join(timeout=10)
        assert old_platform.changes > 0
        for domain in MIRRORED:
            cutover_services.set_freeze(domain=domain, frozen=True, reason="final delta run")
        someone = User.objects.get(pk=user_ids[0])
        client = APIClient()
        client.force_authenticate(someone)
        frozen = client.post("/api/credits/deduct/", {"operation": "company_search", "idempotency_key": "x"})
        assert frozen.status_code == 503

        # 4. the last delta run and a clean verify
        code, out = kvmigrate("--source", url)
        assert code == 0, out
        code, out = kvmigrate("--source", url, "--verify-only")
        assert code == 0, out
        assert_same_records(store_records(url), postgres_records())
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM kvmigrate_quarantine")
            assert cursor.fetchone()[0] == 0

        # 5. mirror on, traffic switched, unfreeze; fivedocks now takes the writes
        settings.KV_MIRROR = MIRRORED
        for domain in MIRRORED:
            cutover_services.set_freeze(domain=domain, frozen=False)
        written = 0
        for user_id in user_ids[:15]:
            client.force_authenticate(User.objects.get(pk=user_id))
            balance = client.get("/api/credits/").json()["balance"]
            if balance >= 10:
                response = client.post(
                    "/api/credits/deduct/",
                    {"operation": "company_search", "idempotency_key": f"after-{user_id}"},
                )
                assert response.status_code == 200
                written += 1
            assert client.post("/api/notifications/3/shown/").status_code in (200, 201)
        assert written > 0
        stats = drain(url)
        assert stats.written >= written

        # the KV store read back equals PostgreSQL, record for record
        assert_same_records(store_records(url), postgres_records())
    finally:
        server.stop()
