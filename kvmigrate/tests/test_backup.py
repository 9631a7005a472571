"""kvbackup and kvrestore against the local Replit Database server and a real Redis.

The stores are kvgen's (other features' keys, malformed records of every kind) plus keys that
break naive code: `/`, spaces, newlines, non-ASCII, and (Redis only) bytes that are not UTF-8.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
from pathlib import Path

import pytest
import redis
from django.core.management import call_command
from django.core.management.base import CommandError

from kvmigrate.backup import Checksum
from kvmigrate.codec import encode_value
from kvmigrate.kvgen import GenOptions, generate
from kvmigrate.replit_server import start_replit_server
from kvmigrate.sources import DumpSource, open_source

from .helpers import kvmigrate

# Two Redis databases of our own (others' tests flush 5, 6, 7 and 9).
REDIS_A = os.environ.get("KVBACKUP_TEST_REDIS_A", "redis://127.0.0.1:6379/13")
REDIS_B = os.environ.get("KVBACKUP_TEST_REDIS_B", "redis://127.0.0.1:6379/14")

AWKWARD = {
    "user_credits:7/extra": encode_value({"currentBalance": 1}),
    "feature flags:dark mode": '"on"',
    "line\nbreak:1": "two\nlines\r\n",
    "ünïcødé:🦆": encode_value({"name": "Société générale", "emoji": "🦆"}),
    "percent%2Fslash+plus": "a+b%20c&d=e",
    "empty-value": "",
}


def run(command: str, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command(command, *args, "--no-progress", stdout=out, stderr=io.StringIO())
    except CommandError as exc:
        return exc.returncode, out.getvalue() + str(exc)
    return 0, out.getvalue()


def closing_line(path: Path) -> dict:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return json.loads(fh.read().splitlines()[-1])


def records(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh.read().splitlines()[:-1]]


@pytest.fixture
def redis_pair():
    clients = [redis.Redis.from_url(url) for url in (REDIS_A, REDIS_B)]
    for client in clients:
        client.flushdb()
    yield clients
    for client in clients:
        client.flushdb()
        client.close()


@pytest.fixture
def replit_pair():
    servers = [start_replit_server()[1], start_replit_server()[1]]
    yield servers
    for server in servers:
        server.stop()


def _fill_replit(server, tmp_path: Path) -> None:
    generate(GenOptions(users=40, seed=21, layout="both", malformed_share=0.2, other_share=0.5), server.url)
    server.store.set_many(list(AWKWARD.items()))


def test_replit_round_trip_is_byte_identical(replit_pair, tmp_path):
    source, target = replit_pair
    _fill_replit(source, tmp_path)
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"

    code, out = run("kvbackup", "--source", source.url, "--out", str(first))
    assert code == 0, out
    closing = closing_line(first)
    assert closing["count"] == len(source.store) > 100
    assert closing["kvbackup"] == 1
    assert source.store.snapshot()["line\nbreak:1"] == "two\nlines\r\n"

    code, out = run("kvrestore", "--target", target.url, "--from", str(first))
    assert code == 0, out
    assert "target verified" in out
    assert target.store.snapshot() == source.store.snapshot()

    code, out = run("kvbackup", "--source", target.url, "--out", str(second))
    assert code == 0, out
    assert closing_line(second)["sha256"] == closing["sha256"]
    assert closing_line(second)["count"] == closing["count"]


def test_backup_holds_every_key_and_value_as_stored(replit_pair, tmp_path):
    source, _ = replit_pair
    _fill_replit(source, tmp_path)
    path = tmp_path / "b.jsonl"
    assert run("kvbackup", "--source", source.url, "--out", str(path))[0] == 0
    stored = source.store.snapshot()
    assert {r["key"]: r["value"] for r in records(path)} == stored
    # other features' keys and malformed records are in it, not only what kvmigrate moves
    assert any(
        not k.startswith(("user_", "firebase_uid:", "credits:", "subscription:", "gmail:")) for k in stored
    )


def test_redis_round_trip_keeps_bytes_that_are_not_utf8(redis_pair, tmp_path):
    a, b = redis_pair
    a.set(b"binary:\xff\xfe", b"\x00\x81 raw \xc3")
    a.set("ünï/key with space\n".encode(), '"caf\u00e9"'.encode())
    a.set(b"plain", b"value")
    a.hset(b"a-hash", mapping={b"f": b"v"})  # not a KV record: reported, not backed up
    path = tmp_path / "redis.jsonl.gz"

    code, out = run("kvbackup", "--source", REDIS_A, "--out", str(path))
    assert code == 0, out
    assert "1 keys skipped: not strings" in out
    with gzip.open(path, "rb") as fh:
        assert fh.read(2)  # a real gzip stream
    by_key = {r.get("key") or base64.b64decode(r["key_b64"]): r for r in records(path)}
    binary = by_key[b"binary:\xff\xfe"]
    assert base64.b64decode(binary["value_b64"]) == b"\x00\x81 raw \xc3"
    assert by_key["plain"] == {"key": "plain", "value": "value"}

    code, out = run("kvrestore", "--target", REDIS_B, "--from", str(path))
    assert code == 0, out
    assert b.get(b"binary:\xff\xfe") == b"\x00\x81 raw \xc3"
    assert b.get("ünï/key with space\n".encode()) == '"caf\u00e9"'.encode()
    assert sorted(b.scan_iter()) == sorted(k for k in a.scan_iter() if k != b"a-hash")

    again = tmp_path / "again.jsonl"
    assert run("kvbackup", "--source", REDIS_B, "--out", str(again))[0] == 0
    assert closing_line(again)["sha256"] == closing_line(path)["sha256"]


def test_replit_to_redis_and_back_gives_the_same_checksum(replit_pair, redis_pair, tmp_path):
    source, target = replit_pair
    _fill_replit(source, tmp_path)
    one, two, three = (tmp_path / f"{n}.jsonl" for n in ("one", "two", "three"))
    assert run("kvbackup", "--source", source.url, "--out", str(one))[0] == 0
    assert run("kvrestore", "--target", REDIS_A, "--from", str(one))[0] == 0
    assert run("kvbackup", "--source", REDIS_A, "--out", str(two))[0] == 0
    assert closing_line(two)["sha256"] == closing_line(one)["sha256"]
    assert run("kvrestore", "--target", target.url, "--from", str(two))[0] == 0
    assert target.store.snapshot() == source.store.snapshot()
    assert run("kvbackup", "--source", target.url, "--out", str(three))[0] == 0
    assert closing_line(three)["sha256"] == closing_line(one)["sha256"]


def test_checksum_is_over_content_not_order():
    a, b = Checksum(), Checksum()
    items = [(b"k1", b"v1"), (b"k2", b"v2"), (b"k", b"1v2")]
    for k, v in items:
        a.add(k, v)
    for k, v in reversed(items):
        b.add(k, v)
    assert a.hexdigest() == b.hexdigest()
    c = Checksum()
    for k, v in [(b"k1", b"v1"), (b"k2", b"v2"), (b"k1v", b"2")]:  # same bytes, split differently
        c.add(k, v)
    assert c.hexdigest() != a.hexdigest()


def _backup_of(server, tmp_path: Path, name: str = "b.jsonl") -> Path:
    path = tmp_path / name
    code, out = run("kvbackup", "--source", server.url, "--out", str(path))
    assert code == 0, out
    return path


def test_restore_refuses_an_edited_or_truncated_backup(replit_pair, tmp_path):
    source, target = replit_pair
    source.store.set_many(list(AWKWARD.items()))
    path = _backup_of(source, tmp_path)
    lines = path.read_text(encoding="utf-8").splitlines()

    edited = tmp_path / "edited.jsonl"
    record = json.loads(lines[0])
    record["value"] += " "
    edited.write_text("\n".join([json.dumps(record), *lines[1:]]) + "\n", encoding="utf-8")
    code, out = run("kvrestore", "--target", target.url, "--from", str(edited))
    assert code == 1
    assert "does not match its closing line" in out
    assert len(target.store) == 0

    truncated = tmp_path / "truncated.jsonl"
    truncated.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    code, out = run("kvrestore", "--target", target.url, "--from", str(truncated))
    assert code == 1
    assert "no kvbackup closing line" in out
    assert len(target.store) == 0


def test_restore_refuses_a_non_empty_target_unless_forced(replit_pair, tmp_path):
    source, target = replit_pair
    source.store.set_many(list(AWKWARD.items()))
    path = _backup_of(source, tmp_path)
    target.store.set_many(
        [("stray key", "x"), ("empty-value", "changed"), ("percent%2Fslash+plus", "a+b%20c&d=e")]
    )

    code, out = run("kvrestore", "--target", target.url, "--from", str(path))
    assert code == 2
    assert "refusing" in out and "--force" in out
    assert target.store.get("empty-value") == "changed"

    code, out = run("kvrestore", "--target", target.url, "--from", str(path), "--dry-run")
    assert code == 0, out
    listed = out.splitlines()
    assert 'delete "stray key"' in listed
    assert 'write "empty-value"' in listed
    assert 'write "line\\nbreak:1"' in listed
    assert not any(line.startswith("write") and "percent" in line for line in listed)  # unchanged
    assert "a real run would refuse" in out
    assert target.store.get("stray key") == "x"

    code, out = run("kvrestore", "--target", target.url, "--from", str(path), "--force")
    assert code == 0, out
    assert "5 written, 1 deleted" in out
    assert target.store.snapshot() == source.store.snapshot()


def test_restore_refuses_a_redis_target_holding_only_other_types(redis_pair, replit_pair, tmp_path):
    source, _ = replit_pair
    _, b = redis_pair
    source.store.set_many(list(AWKWARD.items()))
    path = _backup_of(source, tmp_path)
    b.rpush(b"a-list", b"x")
    code, out = run("kvrestore", "--target", REDIS_B, "--from", str(path))
    assert code == 2 and "refusing" in out
    assert b.dbsize() == 1
    code, out = run("kvrestore", "--target", REDIS_B, "--from", str(path), "--force")
    assert code == 0, out
    assert b.lrange(b"a-list", 0, -1) == [b"x"]  # not a KV record: left alone
    assert b.get(b"line\nbreak:1") == b"two\nlines\r\n"


def test_restore_to_replit_refuses_bytes_it_cannot_hold_before_writing(redis_pair, replit_pair, tmp_path):
    a, _ = redis_pair
    _, target = replit_pair
    a.set(b"fine", b"ok")
    a.set(b"bad", b"\xff")
    path = tmp_path / "r.jsonl"
    assert run("kvbackup", "--source", REDIS_A, "--out", str(path))[0] == 0
    code, out = run("kvrestore", "--target", target.url, "--from", str(path))
    assert code == 1
    assert "not UTF-8" in out
    assert len(target.store) == 0


def test_backup_never_overwrites_and_restore_needs_a_store(replit_pair, tmp_path):
    source, _ = replit_pair
    path = _backup_of(source, tmp_path)  # an empty store backs up too
    assert closing_line(path)["count"] == 0
    code, out = run("kvbackup", "--source", source.url, "--out", str(path))
    assert code == 1 and "exists" in out
    code, out = run("kvrestore", "--target", str(tmp_path / "x.jsonl"), "--from", str(path))
    assert code == 2 and "copy it" in out


def test_a_backup_is_a_kvmigrate_source(replit_pair, tmp_path):
    source, _ = replit_pair
    _fill_replit(source, tmp_path)
    path = _backup_of(source, tmp_path, "b.jsonl.gz")
    from_backup = DumpSource(path)
    assert from_backup.format == "jsonl"
    items = [item for batch in from_backup.iter_batches(100) for item in batch]
    assert from_backup.closing["count"] == len(items)
    with open_source(source.url) as live:
        assert sorted(items) == sorted(item for batch in live.iter_batches(100) for item in batch)


@pytest.mark.django_db
def test_kvmigrate_reads_a_backup_like_the_store_itself(replit_pair, tmp_path):
    source, _ = replit_pair
    users = tmp_path / "users.csv"
    generate(GenOptions(users=30, seed=4, layout="both", malformed_share=0.2), source.url, users_out=users)
    path = _backup_of(source, tmp_path)
    code_store, from_store = kvmigrate("--source", source.url, "--users-from", str(users), "--dry-run")
    code_backup, from_backup = kvmigrate("--source", str(path), "--users-from", str(users), "--dry-run")
    assert code_store == code_backup == 3  # quarantined records, in both
    domains = ("users", "accounts", "credits", "billing", "gmail", "notifications", "other", "total")
    table = [line for line in from_store.splitlines() if line.startswith(domains)]
    assert len(table) == len(domains)
    assert table == [line for line in from_backup.splitlines() if line.startswith(domains)]
