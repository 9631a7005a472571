"""Dump and Redis sources and writers, `open_source`, and every source agreeing on the same data."""

import gzip
import json

import pytest
import redis

from kvmigrate.codec import decode_value, encode_value
from kvmigrate.kvgen import GenOptions, KVGenerator
from kvmigrate.sources import (
    DumpSource,
    DumpWriter,
    RedisSource,
    RedisWriter,
    ReplitSource,
    ReplitWriter,
    SourceError,
    mask_url,
    open_source,
    open_writer,
    store_kind,
)


def _generated(users=300, **kw):
    items = []
    for _row, user_items in KVGenerator(GenOptions(users=users, seed=7, **kw)):
        items.extend(user_items)
    return items


def _all(source, batch_size=64):
    out = []
    for batch in source.iter_batches(batch_size):
        assert 0 < len(batch) <= batch_size
        out.extend(batch)
    return out


def test_every_source_yields_the_same_records(tmp_path, redis_url, replit_server):
    items = _generated(layout="both")
    assert len(items) < 5000  # fits a Replit store
    expected = sorted(items)
    assert len(dict(items)) == len(items)

    jsonl = tmp_path / "store.jsonl"
    obj = tmp_path / "store.json"
    for path in (jsonl, obj):
        with open_writer(str(path)) as writer:
            writer.set_many(items)
    with RedisWriter(redis_url) as writer:
        writer.set_many(items)
    with ReplitWriter(replit_server.url) as writer:
        writer.set_many(items)

    results = {}
    for spec in (str(jsonl), str(obj), redis_url, replit_server.url):
        with open_source(spec) as source:
            results[spec] = sorted(_all(source))
    for spec, got in results.items():
        assert got == expected, spec
    assert json.loads(obj.read_text()) == dict(items)  # the JSON form is plain JSON


def test_store_kind_and_errors(tmp_path):
    assert store_kind(None) == "replit"
    assert store_kind("https://kv.replit.com/v0/x") == "replit"
    assert store_kind("redis://localhost/1") == "redis"
    assert store_kind("rediss://localhost/1") == "redis"
    assert store_kind("some/path.jsonl") == "dump"
    assert store_kind("file:///tmp/x.json") == "dump"
    with pytest.raises(SourceError, match=r"unsupported store postgres://u:\*\*\*@h/\*\*\*:"):
        open_source("postgres://u:secret@h/db")
    with pytest.raises(SourceError, match="no dump file"):
        open_source(str(tmp_path / "missing.json"))
    with pytest.raises(SourceError, match="cannot connect to Redis"):
        open_source("redis://127.0.0.1:1/0")


def test_mask_url():
    assert mask_url("https://kv.replit.com/v0/eyJhbGciOiJIUzI1NiJ9.abc.def") == "https://kv.replit.com/v0/***"
    assert mask_url("http://127.0.0.1:8765/v0/tok/extra?x=1") == "http://127.0.0.1:8765/v0/***"
    assert mask_url("https://host/tokenonly") == "https://host/***"
    assert mask_url("redis://:pw@localhost:6379/5") == "redis://:***@localhost:6379/5"
    assert mask_url("redis://user:pw@localhost/5") == "redis://user:***@localhost/5"


# --- dump files --------------------------------------------------------------------------------
def test_dump_values_already_decoded_are_yielded_decodable(tmp_path):
    record = {"currentBalance": 5, "transactions": [], "name": "Zoë"}
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"user_credits:1": record, "firebase_uid:x": 1, "raw": encode_value(record)}))
    got = dict(_all(DumpSource(path)))
    assert decode_value(got["user_credits:1"]) == record
    assert decode_value(got["firebase_uid:x"]) == 1
    assert got["raw"] == encode_value(record)  # a string is passed through untouched
    lines = tmp_path / "d.jsonl"
    lines.write_text(json.dumps({"key": "user_credits:1", "value": record}) + "\n")
    assert decode_value(dict(_all(DumpSource(lines)))["user_credits:1"]) == record


@pytest.mark.parametrize("indent", [None, 2])
@pytest.mark.parametrize("chunk", [1, 7, 1 << 16])
def test_object_dump_parses_across_chunk_boundaries(tmp_path, indent, chunk):
    data = {
        "n": 1234567890123,
        "neg": -5.25e3,
        "s": 'a "quoted" \\ string\nwith ünïcode 🦆',
        "key with spaces/and:colons\n": [1, {"x": None, "y": True}],
        "e": {},
        "t": "true",
    }
    path = tmp_path / "d.json"
    path.write_text(json.dumps(data, indent=indent, ensure_ascii=bool(indent)), encoding="utf-8")
    source = DumpSource(path, chunk_chars=chunk)
    assert source.format == "json"
    got = dict(_all(source, batch_size=2))
    assert {k: json.loads(v) if not isinstance(data[k], str) else v for k, v in got.items()} == data


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"a": "1", "b": }', "invalid JSON"),
        ('{"a": "1" "b": "2"}', "expected ',' or '}'"),
        ('{"a" "1"}', "expected ':'"),
        ('{"a": "1"', "expected ',' or '}'"),
        ('{"a": "1"} {"b": 2}', "data after the end"),
        ('{1: "x"}', "expected a string key"),
        ('{"a": "unterminated', "invalid JSON"),
    ],
)
def test_broken_object_dumps_fail_loudly(tmp_path, text, error):
    path = tmp_path / "d.json"
    path.write_text(text)
    with pytest.raises(SourceError, match=error):
        _all(DumpSource(path, format="json", chunk_chars=4))


def test_jsonl_detection_bom_blank_lines_and_gzip(tmp_path):
    lines = ['{"key": "a", "value": "\\"1\\""}', "", '{"key": "b c\\nd", "value": {"x": 1}}']
    path = tmp_path / "d.txt"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    source = DumpSource(path)
    assert source.format == "jsonl"
    assert dict(_all(source)) == {"a": '"1"', "b c\nd": '{"x":1}'}
    gz = tmp_path / "d.jsonl.gz"
    gz.write_bytes(gzip.compress("\n".join(lines).encode()))
    assert dict(_all(DumpSource(gz))) == {"a": '"1"', "b c\nd": '{"x":1}'}
    assert DumpSource(gz).count_estimate() is None


def test_jsonl_bad_lines_strict_and_lenient(tmp_path):
    path = tmp_path / "d.jsonl"
    lines = [
        '{"key": "a", "value": "1"}',
        "not json",
        '{"value": 2}',
        '{"key": 3, "value": 1}',
        '{"key": "b", "value": "2"}',
    ]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match="line 2: invalid JSON"):
        _all(DumpSource(path))
    lenient = DumpSource(path, strict=False)
    assert dict(_all(lenient)) == {"a": "1", "b": "2"}
    assert lenient.counters["bad_lines"] == 3
    assert lenient.bad_line_numbers == [2, 3, 4]


def test_dump_prefix_duplicates_and_estimate(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"key": f"user_credits:{i}", "value": str(i)} for i in range(100)] + [
        {"key": "other:1", "value": "x"}
    ]
    rows.append({"key": "user_credits:5", "value": "again"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = DumpSource(path, prefix="user_credits:")
    got = _all(source, batch_size=1000)
    assert len(got) == 100 and dict(got)["user_credits:5"] == "again"  # the later value wins
    assert 90 <= DumpSource(path).count_estimate() <= 110
    obj = tmp_path / "d.json"
    obj.write_text(json.dumps({r["key"]: r["value"] for r in rows}))
    assert 90 <= DumpSource(obj).count_estimate() <= 110


def test_dump_writer_is_atomic_and_writes_both_forms(tmp_path):
    path = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError), DumpWriter(path) as writer:
        writer.set_many([("a", "1")])
        raise RuntimeError("interrupted")
    assert not path.exists() and list(tmp_path.iterdir()) == []
    with DumpWriter(tmp_path / "empty.json") as writer:
        pass
    assert json.loads((tmp_path / "empty.json").read_text()) == {}
    with DumpWriter(tmp_path / "o.json.gz", format="json") as writer:
        writer.set_many([("k\n", '"é"')])
    assert json.loads(gzip.decompress((tmp_path / "o.json.gz").read_bytes())) == {"k\n": '"é"'}
    with pytest.raises(SourceError, match="no folder"):
        DumpWriter(tmp_path / "missing" / "x.jsonl")


# --- redis ---------------------------------------------------------------------------------------
def test_redis_skips_other_types_and_counts_them(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.set("user_credits:1", encode_value({"a": 1}))
    client.hset("a-hash", "f", "v")
    client.rpush("a-list", "x")
    client.set("bad-utf8", b"\xff\xfe{}")
    source = RedisSource(redis_url, scan_count=2)
    got = dict(_all(source, batch_size=2))
    assert set(got) == {"user_credits:1", "bad-utf8"}
    assert got["bad-utf8"] == "\\xff\\xfe{}"  # visible, then rejected by the codec as bad JSON
    counters = source.counters.snapshot()
    assert counters["not_strings"] == 2 and counters["invalid_utf8"] == 1
    assert source.count_estimate() == 4
    assert source.get_many(["user_credits:1", "nope"]) == {"user_credits:1": encode_value({"a": 1})}


def test_redis_prefix_escapes_glob_characters(redis_url):
    with RedisWriter(redis_url, batch_size=2) as writer:
        writer.set_many(
            [("cache:[x]*?", "1"), ("cache:[x]other", "2"), ("cache:y", "3"), ("user_credits:1", "4")]
        )
        assert writer.delete("cache:y") is True
        assert writer.delete("cache:y") is False
    assert dict(_all(RedisSource(redis_url, prefix="cache:[x]*"))) == {"cache:[x]*?": "1"}
    assert len(_all(RedisSource(redis_url))) == 3


def test_replit_source_is_selected_for_http(replit_server):
    assert isinstance(open_source(replit_server.url), ReplitSource)
