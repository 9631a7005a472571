"""Every domain moved from each kind of store (dump file, Redis, a Replit Database), then written back.

The stores are kvgen's: both layouts, every kind of malformed record, keys of other features.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from django.core.management import call_command

from kvmigrate.codec import decode_value, parse_key
from kvmigrate.kvgen import GenOptions, generate
from kvmigrate.models import MigrationRun, QuarantinedRecord
from kvmigrate.replit_server import start_replit_server
from kvmigrate.sources import open_source

from .helpers import REDIS6_URL, kvmigrate
from .kvrecords import same_for_old_code

pytestmark = pytest.mark.django_db

# kvgen's kinds of malformed records -> the reasons they are quarantined with
EXPECTED_CODES = {
    "bad_json": ("bad_json",),
    "wrong_types": ("wrong_type:", "bad_timestamp:", "not_an_object", "missing:"),
    "non_integer_id": ("bad_id",),
    "missing_gmail_tokens": ("no_gmail_token",),
    "negative_balance": ("negative_balance_not_blocked",),
    "unknown_user": ("unknown_user",),
}
DOMAINS = ("accounts", "credits", "billing", "gmail", "notifications")


@pytest.fixture
def redis6():
    client = redis.Redis.from_url(REDIS6_URL)
    client.flushdb()
    yield REDIS6_URL
    client.flushdb()
    client.close()


@pytest.fixture
def replit():
    url, server = start_replit_server()
    yield url
    server.stop()


def _generate(tmp_path: Path, out: str, *, users: int = 60, layout: str = "both", seed: int = 3):
    manifest = tmp_path / "manifest.json"
    users_csv = tmp_path / "users.csv"
    generate(
        GenOptions(users=users, seed=seed, layout=layout, malformed_share=0.12),
        out,
        users_out=users_csv,
        manifest=manifest,
    )
    return users_csv, json.loads(manifest.read_text())


def _read(spec: str) -> dict[str, str]:
    with open_source(spec) as source:
        return {key: raw for batch in source.iter_batches(200) for key, raw in batch}


def _migrate_and_check(tmp_path: Path, source: str, users_csv: Path, manifest: dict) -> dict:
    report_path = tmp_path / "report.json"
    code, out = kvmigrate(
        "--source", source, "--users-from", str(users_csv), "--batch-size", "37", "--report", str(report_path)
    )
    report = json.loads(report_path.read_text())
    assert code == 3, out  # the malformed share is quarantined
    expected = {m["key"]: m["kind"] for m in manifest["malformed_keys"]}
    quarantined = dict(
        QuarantinedRecord.objects.filter(resolved_at__isnull=True).values_list("key", "reason_code")
    )
    assert set(quarantined) == set(expected), "exactly the malformed records are quarantined"
    for key, kind in expected.items():
        assert quarantined[key].startswith(EXPECTED_CODES[kind]), (key, kind, quarantined[key])
    domains = report["domains"]
    for domain in DOMAINS:
        assert domains[domain]["created"] > 0, domain
        assert domains[domain]["verified"] == domains[domain]["created"], domain
        assert domains[domain]["mismatched"] == 0, domain
    assert domains.get("other", {}).get("skipped", 0) == manifest["other"]
    assert report["totals"]["quarantined"] == len(expected)
    call_command("credits_reconcile")
    return report


def _assert_round_trip(original: dict[str, str], back: dict[str, str], manifest: dict) -> int:
    """Valid real-layout records come back value for value (after decoding)."""
    malformed = {m["key"] for m in manifest["malformed_keys"]}
    compared = 0
    for key, raw in original.items():
        parsed = parse_key(key)
        if parsed is None or parsed.layout != "real" or key in malformed:
            continue
        assert key in back, key
        assert same_for_old_code(key, decode_value(back[key]), decode_value(raw)), key
        compared += 1
    assert compared > 0
    return compared


def test_from_a_dump_file_and_back_to_one(tmp_path):
    store = str(tmp_path / "store.jsonl")
    users_csv, manifest = _generate(tmp_path, store)
    _migrate_and_check(tmp_path, store, users_csv, manifest)
    back = str(tmp_path / "back.jsonl")
    assert kvmigrate("--reverse", "--target", back)[0] == 0
    _assert_round_trip(_read(store), _read(back), manifest)


def test_from_redis_and_back_to_redis(tmp_path, redis6):
    users_csv, manifest = _generate(tmp_path, redis6, seed=4)
    original = _read(redis6)
    _migrate_and_check(tmp_path, redis6, users_csv, manifest)
    redis.Redis.from_url(redis6).flushdb()
    assert kvmigrate("--reverse", "--target", redis6)[0] == 0
    _assert_round_trip(original, _read(redis6), manifest)


def test_from_a_replit_database_and_back_to_one(tmp_path, replit):
    users_csv, manifest = _generate(tmp_path, replit, users=40, seed=5)
    _migrate_and_check(tmp_path, replit, users_csv, manifest)
    target_url, target = start_replit_server()
    try:
        assert kvmigrate("--reverse", "--target", target_url)[0] == 0
        _assert_round_trip(_read(replit), _read(target_url), manifest)
    finally:
        target.stop()


def test_the_real_layout_alone_round_trips_every_valid_record(tmp_path):
    store = str(tmp_path / "store.jsonl")
    users_csv, manifest = _generate(tmp_path, store, users=120, layout="real", seed=6)
    _migrate_and_check(tmp_path, store, users_csv, manifest)
    back = str(tmp_path / "back.json")  # a JSON object this time
    assert kvmigrate("--reverse", "--target", back)[0] == 0
    original = _read(store)
    compared = _assert_round_trip(original, _read(back), manifest)
    malformed = {m["key"] for m in manifest["malformed_keys"]}
    assert compared == sum(
        1 for k in original if (p := parse_key(k)) and p.layout == "real" and k not in malformed
    )


def test_the_run_is_recorded_with_its_source_masked(tmp_path, replit):
    users_csv, _ = _generate(tmp_path, replit, users=5, seed=7)
    kvmigrate("--source", replit, "--users-from", str(users_csv))
    run = MigrationRun.objects.get()
    token = replit.rstrip("/").rsplit("/", 1)[-1]
    assert token not in run.source and "***" in run.source
    assert run.options["batch_size"] == 2000 and run.counts["credits"]["read"] > 0
