"""The generator: realistic records of both layouts, documented shares of bad ones, deterministic."""

import csv
import json
from collections import Counter
from datetime import datetime

import pytest
import redis
from django.core.management import call_command
from django.core.management.base import CommandError

from kvmigrate.codec import DecodeError, decode_value, decode_with_depth, parse_key
from kvmigrate.kvgen import MALFORMED_KINDS, OPERATIONS, GenOptions, KVGenerator, generate
from kvmigrate.sources import DumpSource

COSTS = {cost for cost, _ in OPERATIONS.values()}


def _items(**kw):
    gen = KVGenerator(GenOptions(**kw))
    rows, items = [], []
    for row, user_items in gen:
        rows.append(row)
        items.extend(user_items)
    return gen.stats, rows, items


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    generate(GenOptions(users=500, seed=5), a, users_out=tmp_path / "ua.csv")
    generate(GenOptions(users=500, seed=5), b, users_out=tmp_path / "ub.csv")
    generate(GenOptions(users=500, seed=6), c)
    assert a.read_bytes() == b.read_bytes()
    assert (tmp_path / "ua.csv").read_bytes() == (tmp_path / "ub.csv").read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_malformed_share_and_every_kind(tmp_path):
    stats, _rows, items = _items(users=4000, seed=1, malformed_share=0.02)
    share = sum(stats.malformed.values()) / stats.records
    assert 0.015 <= share <= 0.025
    assert set(stats.malformed) == set(MALFORMED_KINDS)
    assert stats.valid + sum(stats.malformed.values()) == stats.records
    assert stats.keys == len(items) == stats.records + stats.other
    assert len({k for k, _ in items}) == len(items)  # no key written twice


@pytest.mark.parametrize("layout", ["real", "plan"])
def test_each_malformed_record_is_bad_the_way_it_says(layout):
    users = 3000
    stats, _rows, items = _items(users=users, seed=2, malformed_share=0.05, layout=layout)
    assert set(stats.malformed) == set(MALFORMED_KINDS)
    values = dict(items)
    for key, kind in stats.malformed_keys:
        raw = values[key]
        parsed = parse_key(key)
        assert parsed is not None, key
        if kind == "bad_json":
            with pytest.raises(DecodeError):
                decode_value(raw)
            continue
        value = decode_value(raw)
        if kind == "non_integer_id":
            assert parsed.user_id is None
        elif kind == "unknown_user":
            uid = value if parsed.prefix == "firebase_uid" else parsed.user_id
            assert uid > users
        elif kind == "missing_gmail_tokens":
            assert not {"gmailAccessToken", "gmailRefreshToken", "accessToken", "refreshToken"} & set(value)
        elif kind == "negative_balance":
            assert int(value["currentBalance"]) < 0 and not value.get("isBlocked")
        elif kind == "wrong_types":
            assert not _types_ok(parsed.prefix, value), (key, value)


def _num(v) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (
        isinstance(v, str) and v.lstrip("-").isdigit()
    )


def _stamp(v) -> bool:
    if _num(v):
        return True
    try:
        datetime.fromisoformat(v)
    except (TypeError, ValueError):
        return False
    return True


def _types_ok(prefix, v) -> bool:
    """The types the contract promises, per family (what the transforms will check)."""
    if prefix == "firebase_uid":
        return isinstance(v, int) and not isinstance(v, bool)
    if prefix == "notifications":
        ids = v.get("shownNotifications") if isinstance(v, dict) else v
        return isinstance(ids, list) and all(_num(i) for i in ids)
    if not isinstance(v, dict):
        return False
    if prefix == "user_credits":
        tx = v.get("transactions")
        return (
            _num(v.get("currentBalance"))
            and isinstance(v.get("isBlocked"), bool)
            and isinstance(tx, list)
            and all(isinstance(t, dict) and _num(t.get("amount")) for t in tx)
        )
    if prefix == "user_tokens":
        return (
            all(isinstance(v.get(k, ""), str) for k in ("gmailAccessToken", "gmailRefreshToken"))
            and isinstance(v.get("scopes"), list)
            and _num(v.get("tokenExpiry"))
        )
    if prefix == "credits":
        return (
            _num(v.get("currentBalance"))
            and _num(v.get("totalUsed"))
            and isinstance(v.get("transactions"), list)
        )
    if prefix == "subscription":
        return (
            isinstance(v.get("status"), str)
            and isinstance(v.get("planType"), str)
            and _stamp(v.get("currentPeriodEnd"))
        )
    if prefix == "gmail":
        return (
            isinstance(v.get("accessToken", ""), str)
            and isinstance(v.get("scope"), (str, list))
            and _stamp(v.get("expiresAt"))
        )
    raise AssertionError(prefix)


def test_valid_records_have_the_promised_types():
    for layout in ("real", "plan"):
        _stats, _rows, items = _items(users=1500, seed=10, layout=layout, malformed_share=0.0)
        for key, raw in items:
            parsed = parse_key(key)
            if parsed:
                assert _types_ok(parsed.prefix, decode_value(raw)), key


def test_valid_records_follow_the_platform_layout():
    stats, rows, items = _items(users=2000, seed=3, malformed_share=0.0)
    assert not stats.malformed
    ids = {row.id for row in rows}
    depths = Counter()
    seen = Counter()
    for key, raw in items:
        parsed = parse_key(key)
        if parsed is None:
            seen["other"] += 1
            continue
        value, depth = decode_with_depth(raw)
        depths[depth] += 1
        seen[parsed.prefix] += 1
        if parsed.prefix == "firebase_uid":
            assert value in ids and len(parsed.ident) == 28
            continue
        assert parsed.user_id in ids
        if parsed.prefix == "user_credits":
            assert value["isBlocked"] == (value["currentBalance"] < 0)
            for t in value["transactions"]:
                assert t["type"] in ("credit", "debit") and t["amount"] > 0
                if t["type"] == "debit":
                    assert t["amount"] in COSTS and t["searchType"] in OPERATIONS
            for name in ("notifications", "badges", "easterEggs"):
                assert all(f in (None, 0, 1) for f in value.get(name, []))
            if "subscriptionStatus" in value:
                assert value["subscriptionStatus"] in (
                    "active",
                    "canceled",
                    "past_due",
                    "incomplete",
                    "trialing",
                )
                assert value.get("currentPlan") in (None, "ugly-duckling", "duckin-awesome")
        if parsed.prefix == "user_tokens":
            assert "gmailAccessToken" in value or "gmailRefreshToken" in value
    assert depths[2] > depths[1] > 0  # mostly twice, a few once
    assert set(seen) == {"user_credits", "user_tokens", "firebase_uid", "other"}
    # The messy parts the transforms must cope with are all there.
    credits = [decode_value(raw) for key, raw in items if key.startswith("user_credits:")]
    assert any(c["currentBalance"] < 0 and c["isBlocked"] for c in credits)
    assert any(c["transactions"] != sorted(c["transactions"], key=lambda t: t["timestamp"]) for c in credits)
    assert any("referralCode" in c for c in credits)
    assert any("stripeSubscriptionId" in c and "currentPlan" not in c for c in credits)
    assert any(
        sum(t["amount"] if t["type"] == "credit" else -t["amount"] for t in c["transactions"])
        != c["currentBalance"]
        for c in credits
    )
    tokens = [decode_value(raw) for key, raw in items if key.startswith("user_tokens:")]
    assert any("gmailRefreshToken" not in t for t in tokens)
    assert any("gmailEmail" not in t for t in tokens)
    assert any("gmailAccessToken" not in t for t in tokens)  # refresh-only: still valid


def test_other_features_keys_are_weird_and_not_ours():
    _stats, _rows, items = _items(users=3000, seed=4)
    others = [k for k, _ in items if parse_key(k) is None]
    assert others
    assert any("\n" in k for k in others)
    assert any(" " in k and "/" in k for k in others)
    assert any(not k.isascii() for k in others)
    assert any(k.startswith("User_credits:") or k.startswith("user_credits_backup:") for k in others)


def test_plan_layout_and_its_tolerated_variants():
    _stats, _rows, items = _items(users=3000, seed=5, layout="plan", malformed_share=0.0)
    by_prefix = Counter(parse_key(k).prefix for k, _ in items if parse_key(k))
    assert set(by_prefix) == {"credits", "subscription", "gmail", "notifications"}
    values = {k: decode_value(v) for k, v in items if parse_key(k)}
    credits = [v for k, v in values.items() if k.startswith("credits:")]
    assert any(isinstance(c["currentBalance"], str) for c in credits)  # numeric strings
    stamps = [t["timestamp"] for c in credits for t in c["transactions"]]
    assert any(isinstance(s, str) and datetime.fromisoformat(s) for s in stamps)  # ISO 8601
    assert any(isinstance(s, int) and s > 10**12 for s in stamps)  # epoch ms
    assert any(isinstance(s, int) and s < 10**11 for s in stamps)  # epoch s
    assert {t["type"] for c in credits for t in c["transactions"]} == {
        "purchase",
        "deduction",
        "refund",
        "bonus",
    }
    deductions = [int(t["amount"]) for c in credits for t in c["transactions"] if t["type"] == "deduction"]
    assert min(deductions) < 0 < max(deductions)
    subs = [v for k, v in values.items() if k.startswith("subscription:")]
    assert {"cancelled", "canceled", "active"} <= {s["status"] for s in subs}
    assert "pond-pro" in {s["planType"] for s in subs}  # a plan the catalogue does not know
    gmail = [v for k, v in values.items() if k.startswith("gmail:")]
    assert {type(g["scope"]) for g in gmail} == {str, list}
    notes = [v for k, v in values.items() if k.startswith("notifications:")]
    assert any(isinstance(n, list) for n in notes) and any(isinstance(n, dict) for n in notes)


def test_both_layouts_and_start_id():
    _stats, rows, items = _items(users=400, seed=6, layout="both", start_id=1000)
    assert [r.id for r in rows] == list(range(1000, 1400))
    prefixes = {parse_key(k).layout for k, _ in items if parse_key(k)}
    assert prefixes == {"real", "plan"}


def test_every_record_and_nothing_else_with_share_one():
    stats, _rows, items = _items(users=200, seed=8, malformed_share=1.0)
    assert stats.valid == 0 and sum(stats.malformed.values()) == stats.records
    assert len(items) == stats.records + stats.other


def test_users_export_and_manifest(tmp_path):
    out, users, manifest = tmp_path / "s.json", tmp_path / "u.csv", tmp_path / "m.json"
    stats = generate(GenOptions(users=300, seed=9), out, users_out=users, manifest=manifest)
    with open(users) as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["id"]) for r in rows] == list(range(1, 301))
    assert len({r["email"] for r in rows}) == 300
    assert all(datetime.fromisoformat(r["created_at"]).tzinfo for r in rows)
    data = json.loads(manifest.read_text())
    assert data["keys"] == stats.keys
    assert len(data["malformed_keys"]) == sum(data["malformed"].values())
    assert DumpSource(out).format == "json"
    assert sum(len(b) for b in DumpSource(out).iter_batches()) == stats.keys


def test_options_are_checked():
    with pytest.raises(ValueError):
        GenOptions(users=1, layout="other")
    with pytest.raises(ValueError):
        GenOptions(users=1, malformed_share=1.5)


# --- the management command ---------------------------------------------------------------------
def test_command_writes_a_dump_and_users(tmp_path, capsys):
    out = tmp_path / "store.jsonl"
    call_command(
        "kvgen", "--users", "50", "--out", str(out), "--users-out", str(tmp_path / "u.csv"), "--seed", "2"
    )
    printed = capsys.readouterr().out
    assert "keys for 50 users" in printed
    assert DumpSource(out).format == "jsonl"
    assert (tmp_path / "u.csv").read_text().count("\n") == 51


def test_command_loads_redis_and_a_replit_server(redis_url, replit_server):
    call_command("kvgen", "--users", "60", "--out", redis_url, "--layout", "both")
    call_command("kvgen", "--users", "60", "--out", replit_server.url, "--layout", "both")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    in_redis = {k: client.get(k) for k in client.scan_iter()}
    assert in_redis == replit_server.store.snapshot()
    assert len(in_redis) > 60


def test_command_bad_arguments(tmp_path):
    with pytest.raises(CommandError, match="malformed share"):
        call_command("kvgen", "--users", "5", "--out", str(tmp_path / "x.jsonl"), "--malformed-share", "2")
    with pytest.raises(CommandError, match="no folder"):
        call_command("kvgen", "--users", "5", "--out", str(tmp_path / "no" / "x.jsonl"))
    with pytest.raises(CommandError, match="unsupported store"):
        call_command("kvgen", "--users", "5", "--out", "ftp://host/x")
