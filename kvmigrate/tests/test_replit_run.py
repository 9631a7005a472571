"""A run against a Replit Database reads each key once: verify replays the load's snapshot."""

from __future__ import annotations

import json

import pytest

from kvmigrate.kvgen import GenOptions, generate
from kvmigrate.models import MigrationRun
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
