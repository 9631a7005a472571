"""A run against a Replit Database reads each key once: verify replays the load's snapshot."""

from __future__ import annotations

import json

import pytest

from kvmigrate.kvgen import GenOptions, generate
from kvmigrate.models import MigratedRecord, MigrationRun, QuarantinedRecord
from kvmigrate.replit_server import start_replit_server
from kvmigrate.sources.snapshot import Snapshot

from .helpers import kvmigrate

pytestmark = pytest.mark.django_db


@pytest.fixture
def replit(tmp_path):
    url, server = start_replit_server()
    users_csv = tmp_path / "users.csv"
    generate(GenOptions(users=40, seed=5, layout="both", malformed_share=0.1), url, users_out=users_csv)
    yield url, server, users_csv
    server.stop()


def test_a_run_reads_each_key_once_and_still_verifies(replit):
    url, server, users_csv = replit
    keys = len(server.store)
    before = server.requests
    code, out = kvmigrate("--source", url, "--users-from", str(users_csv), "--batch-size", "50")
    assert code == 3, out  # the malformed share is quarantined
    run = MigrationRun.objects.latest("pk")
    counts = run.counts
    assert sum(c["verified"] for c in counts.values()) > 0
    assert sum(c["mismatched"] for c in counts.values()) == 0
    # the probe, one listing, one GET per key: no second full read for verify
    assert server.requests - before == keys + 2


def test_a_delta_run_over_an_unchanged_store_writes_nothing_and_reads_each_key_once(replit):
    url, server, users_csv = replit
    kvmigrate("--source", url, "--users-from", str(users_csv))
    keys, before = len(server.store), server.requests
    code, out = kvmigrate("--source", url, "--concurrency", "4")
    assert code == 3, out  # still quarantined: the same malformed records
    counts = MigrationRun.objects.latest("pk").counts
    assert sum(c["created"] + c["updated"] for c in counts.values()) == 0
    assert sum(c["mismatched"] for c in counts.values()) == 0
    assert server.requests - before == keys + 2
    assert json.loads(json.dumps(MigrationRun.objects.latest("pk").options))["concurrency"] == 4


def test_verify_only_reads_the_store_itself(replit):
    url, server, users_csv = replit
    kvmigrate("--source", url, "--users-from", str(users_csv))
    keys, before = len(server.store), server.requests
    kvmigrate("--source", url, "--verify-only")
    assert server.requests - before == keys + 2


@pytest.mark.parametrize("value", ["0", "257", "-3"])
def test_concurrency_out_of_range_is_a_usage_error(replit, value):
    url, _, _ = replit
    code, out = kvmigrate("--source", url, "--concurrency", value)
    assert code == 2
    assert "--concurrency" in out


def test_a_snapshot_replays_exactly_what_was_read():
    batches = [
        [("user_credits:1", '"{\\"currentBalance\\": 1}"'), ("cache:a/b c\nd", "caf\u00e9 \U0001f986")],
        [("odd:\udcff", "lone \ud800 surrogate"), ("empty", "")],
    ]
    with Snapshot() as snapshot:
        assert list(snapshot.recording(iter(batches))) == batches
        assert list(snapshot.replay()) == batches
        assert list(snapshot.replay()) == batches  # replayable more than once
        assert (snapshot.batches, snapshot.items) == (2, 4)


def _verified(run: MigrationRun) -> int:
    return sum(c.get("verified", 0) for c in run.counts.values())


def test_a_delta_run_verifies_what_it_moved(replit):
    url, server, users_csv = replit
    kvmigrate("--source", url, "--users-from", str(users_csv))
    assert _verified(MigrationRun.objects.latest("pk")) > 0
    kvmigrate("--source", url)  # unchanged: nothing moved, nothing to verify again
    assert _verified(MigrationRun.objects.latest("pk")) == 0
    key = next(k for k in sorted(server.store.keys("user_credits:")) if _movable(k))
    record = json.loads(json.loads(server.store.get(key)))
    record["currentBalance"] += 5
    credit = {"type": "credit", "amount": 5, "description": "x", "timestamp": 1_700_000_000_000}
    record["transactions"] = [*record.get("transactions", []), credit]
    server.store.set_many([(key, json.dumps(json.dumps(record)))])
    _, out = kvmigrate("--source", url)
    run = MigrationRun.objects.latest("pk")
    assert run.counts["credits"]["updated"] == 1, out
    assert run.counts["credits"]["verified"] == 1
    assert run.counts["credits"]["mismatched"] == 0


def _movable(key: str) -> bool:
    """A credits record that was moved (not quarantined) by the first run."""
    return (
        MigratedRecord.objects.filter(key=key).exists()
        and not QuarantinedRecord.objects.filter(key=key).exists()
    )


@pytest.mark.parametrize("earlier", ["interrupted", "mismatched"])
def test_everything_is_verified_again_when_the_last_run_did_not_verify_cleanly(replit, earlier):
    url, _, users_csv = replit
    kvmigrate("--source", url, "--users-from", str(users_csv))
    first = MigrationRun.objects.latest("pk")
    if earlier == "interrupted":  # killed before its verify pass
        MigrationRun.objects.create(mode="migrate", source="x", status="interrupted")
    else:
        first.counts["credits"]["mismatched"] = 1
        first.save(update_fields=["counts"])
    kvmigrate("--source", url)
    assert _verified(MigrationRun.objects.latest("pk")) == _verified(first)


def _outcomes(run: MigrationRun) -> dict:
    return {domain: dict(sorted(c.items())) for domain, c in sorted(run.counts.items())}


@pytest.mark.django_db(transaction=True)  # the load's second thread looks fingerprints up: committed rows
@pytest.mark.parametrize("cap", [None, 30])
def test_verify_prepared_during_the_load_still_reads_postgresql_after_it(replit, monkeypatch, cap):
    """Verify's transforms run during the load (EarlyVerify): the comparison still reads PostgreSQL
    after the load, so a row changed between the two is a mismatch; past the cap, the rest of the
    snapshot is replayed and prepared by the verify pass itself, with the same outcome."""
    from credits.models import CreditAccount
    from kvmigrate import services

    url, _, users_csv = replit
    kvmigrate("--source", str(_empty(users_csv)), "--users-from", str(users_csv))  # users only, verified
    if cap is not None:
        limits = {"max_records": cap, "max_chars": 10**9}
        monkeypatch.setattr(services.EarlyVerify.__init__, "__kwdefaults__", limits)
    seen: list[services.EarlyVerify] = []
    real = services.EarlyVerify.batches

    def batches(self, snapshot):
        seen.append(self)
        return real(self, snapshot)

    monkeypatch.setattr(services.EarlyVerify, "batches", batches)
    tampered: list[int] = []

    def analyze_then_tamper():  # between the load and the verify pass
        account = CreditAccount.objects.order_by("user_id").first()
        CreditAccount.objects.filter(pk=account.pk).update(balance=account.balance + 1)
        tampered.append(account.user_id)

    monkeypatch.setattr(services, "analyze_targets", analyze_then_tamper)
    code, out = kvmigrate("--source", url, "--batch-size", "20")
    run = MigrationRun.objects.latest("pk")
    assert code == 3, out
    assert tampered and seen and seen[0].everything is False  # the bulk run verified what it moved
    assert seen[0].complete is (cap is None)
    assert sum(c["mismatched"] for c in run.counts.values()) == run.counts["credits"]["mismatched"] == 1, out
    moved = sum(c["created"] for c in run.counts.values())
    assert sum(c["verified"] + c["mismatched"] for c in run.counts.values()) == moved


def _empty(users_csv):
    path = users_csv.parent / "empty.jsonl"
    path.write_text("")
    return path
