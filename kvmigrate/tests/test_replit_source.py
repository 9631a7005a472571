"""The Replit Database source and writer against the local server."""

import socket
from urllib.parse import urlsplit

import pytest

from kvmigrate.codec import decode_value, encode_value
from kvmigrate.replit_server import start_replit_server
from kvmigrate.sources import ReplitSource, ReplitWriter, RetryPolicy, SourceError, open_source, resolve_url

WEIRD = {
    "user_credits:7": encode_value({"currentBalance": 180}),
    "firebase_uid:AbC": encode_value(7),
    "cache:search/acme corp/page 1": encode_value(["a"]),
    "cache:note\nsecond line": "plain text",
    "cache:café/ünïcode 🦆": encode_value({"é": "☕"}),
    "/leading/slash": "x",
    "plus+sign and%percent": "y",
    "q?x=1&y#frag": "z",
}


def _token(server) -> str:
    return server.url.rsplit("/", 1)[1]


def _read_all(source, batch_size=3):
    seen = []
    for batch in source.iter_batches(batch_size):
        assert 0 < len(batch) <= batch_size
        seen.extend(batch)
    return seen


def test_reads_every_key_with_slashes_spaces_newlines_and_unicode(replit_server, fast_retries):
    with ReplitWriter(replit_server.url, policy=fast_retries) as writer:
        assert writer.set_many(WEIRD.items()) == len(WEIRD)
    assert replit_server.store.snapshot() == WEIRD
    with ReplitSource(replit_server.url, policy=fast_retries, concurrency=4) as source:
        seen = _read_all(source)
        assert len(seen) == len(WEIRD)
        assert dict(seen) == WEIRD
        assert source.counters["listed"] == len(WEIRD)
        assert source.counters["fetched"] == len(WEIRD)
        assert source.count_estimate() == len(WEIRD)
    assert decode_value(dict(seen)["cache:café/ünïcode 🦆"]) == {"é": "☕"}


def test_prefix_and_get_many(replit_server, fast_retries):
    replit_server.store.set_many(list(WEIRD.items()))
    source = ReplitSource(replit_server.url, prefix="cache:", policy=fast_retries)
    assert sorted(k for b in source.iter_batches(10) for k, _ in b) == sorted(
        k for k in WEIRD if k.startswith("cache:")
    )
    got = source.get_many(["user_credits:7", "missing", "user_credits:7"])
    assert got == {"user_credits:7": WEIRD["user_credits:7"]}
    assert source.get("missing") is None


def test_a_key_deleted_while_reading_is_skipped_and_counted(replit_server, fast_retries):
    items = [(f"k{i:02d}", str(i)) for i in range(10)]
    replit_server.store.set_many(items)
    source = ReplitSource(replit_server.url, policy=fast_retries, concurrency=1)
    batches = source.iter_batches(1)
    first = next(batches)
    assert first == [("k00", "0")]
    # k01 is already being fetched ahead; k05 is not: delete it now.
    replit_server.store.delete("k05")
    rest = [item for batch in batches for item in batch]
    assert [k for k, _ in rest] == [f"k{i:02d}" for i in range(1, 10) if i != 5]
    assert source.counters.snapshot() == {"listed": 10, "fetched": 9, "vanished": 1, "retries": 0}


@pytest.mark.parametrize("status", [429, 500, 503])
def test_retries_through_injected_faults(status):
    url, server = start_replit_server(limits=False)
    try:
        server.store.set_many([(f"user_credits:{i}", encode_value({"i": i})) for i in range(200)])
        server.faults.fail_every = 5
        server.faults.fail_status = status
        # Requests of 8 threads interleave, so one key may meet several faults in a row: allow 10 tries
        # (all 10 failing: about 1 in 10 million per key).
        policy = RetryPolicy(tries=10, backoff=0.002, max_backoff=0.01)
        source = ReplitSource(url, policy=policy, concurrency=8)
        seen = dict(item for batch in source.iter_batches(50) for item in batch)
        assert len(seen) == 200
        assert all(decode_value(v) == {"i": int(k.split(":")[1])} for k, v in seen.items())
        assert source.counters["retries"] > 0
        assert server.failed == source.counters["retries"]
    finally:
        server.stop()


def test_gives_up_with_a_clear_error_when_the_server_keeps_failing(replit_server, fast_retries):
    replit_server.store.set_many([("k", "v")])
    replit_server.faults.fail_every = 1
    replit_server.faults.fail_status = 500
    source = ReplitSource(replit_server.url, policy=fast_retries)
    with pytest.raises(SourceError) as exc:
        list(source.iter_batches())
    message = str(exc.value)
    assert "gave up after 5 tries (HTTP 500)" in message
    assert _token(replit_server) not in message
    assert "/v0/***" in message
    assert replit_server.requests == 5


def test_429_is_retried_honouring_a_short_retry_after(replit_server, fast_retries):
    replit_server.store.set_many([("k", "v")])
    replit_server.faults.fail_first = 2
    replit_server.faults.retry_after = 0.01
    source = ReplitSource(replit_server.url, policy=fast_retries)
    assert [item for b in source.iter_batches() for item in b] == [("k", "v")]
    assert source.counters["retries"] == 2


def test_timeouts_are_retried_then_reported(replit_server):
    replit_server.store.set_many([("a", "1"), ("b", "2")])
    policy = RetryPolicy(tries=4, backoff=0.005, max_backoff=0.01, read_timeout=0.2)
    replit_server.faults.delay = 0.5
    replit_server.faults.delay_every = 2  # every second request is too slow
    source = ReplitSource(replit_server.url, policy=policy, concurrency=1)
    assert dict(item for b in source.iter_batches() for item in b) == {"a": "1", "b": "2"}
    assert source.counters["retries"] >= 1
    replit_server.faults.delay_every = 0  # every request too slow
    with pytest.raises(SourceError, match=r"gave up after 4 tries \(timed out\)"):
        ReplitSource(replit_server.url, policy=policy).list_keys()


def test_connection_refused_is_reported_without_the_token(fast_retries):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v0/secret-token-value"
    source = ReplitSource(url, policy=fast_retries)
    with pytest.raises(SourceError) as exc:
        source.list_keys()
    assert "connection failed" in str(exc.value)
    assert "secret-token-value" not in str(exc.value)


def test_describe_never_shows_the_token(replit_server):
    source = ReplitSource(replit_server.url)
    token = _token(replit_server)
    assert token not in source.describe() and token not in repr(source)
    assert "/v0/***" in source.describe()
    writer = ReplitWriter(replit_server.url)
    assert token not in writer.describe()


def test_url_from_argument_then_file_then_env(tmp_path, monkeypatch):
    url_file = tmp_path / "replitdb"
    monkeypatch.delenv("REPLIT_DB_URL", raising=False)
    with pytest.raises(SourceError, match="no Replit Database URL"):
        resolve_url(None, url_file=url_file)
    monkeypatch.setenv("REPLIT_DB_URL", "https://kv.example/v0/from-env")
    assert resolve_url(None, url_file=url_file) == ("https://kv.example/v0/from-env", "$REPLIT_DB_URL")
    url_file.write_text("https://kv.example/v0/from-file\n")
    assert resolve_url(None, url_file=url_file) == ("https://kv.example/v0/from-file", f"file {url_file}")
    assert resolve_url("https://kv.example/v0/arg", url_file=url_file)[1] == "argument"


def test_default_source_reads_the_url_file(replit_server, tmp_path, monkeypatch):
    url_file = tmp_path / "replitdb"
    url_file.write_text(replit_server.url)
    replit_server.store.set_many([("k", "v")])
    source = open_source(None, url_file=url_file)
    assert isinstance(source, ReplitSource)
    assert "file" in source.describe()
    assert [i for b in source.iter_batches() for i in b] == [("k", "v")]


def test_a_rotated_token_is_re_read_from_the_file(replit_server, tmp_path, fast_retries):
    parts = urlsplit(replit_server.url)
    url_file = tmp_path / "replitdb"
    url_file.write_text(f"http://{parts.hostname}:{parts.port}/v0/old-token")
    replit_server.store.set_many([("k", "v")])
    source = ReplitSource(None, url_file=url_file, policy=fast_retries)
    url_file.write_text(replit_server.url)  # Replit rotated the URL meanwhile
    assert source.list_keys() == ["k"]
    # A URL given as an argument is not re-read: a refusal is reported.
    stale = ReplitSource(f"http://{parts.hostname}:{parts.port}/v0/old-token", policy=fast_retries)
    with pytest.raises(SourceError, match=r"refused the URL \(HTTP 401\)"):
        stale.list_keys()


def test_writer_batches_posts_deletes_and_retries(replit_server, fast_retries):
    writer = ReplitWriter(replit_server.url, policy=fast_retries, max_pairs=4)
    replit_server.faults.fail_every = 2
    items = [(f"user_credits:{i}", encode_value({"i": i, "name": "a b+c&d=e"})) for i in range(10)]
    assert writer.set_many(items) == 10
    assert writer.counters["requests"] == 3  # 4 + 4 + 2 pairs
    assert writer.counters["retries"] >= 1
    replit_server.faults.fail_every = 0
    assert replit_server.store.snapshot() == dict(items)
    assert writer.delete("user_credits:3") is True
    assert writer.delete("user_credits:3") is False
    assert replit_server.store.get("user_credits:3") is None


def test_writer_refuses_what_replit_would_refuse(replit_server):
    writer = ReplitWriter(replit_server.url)
    with pytest.raises(SourceError, match="longer than 1000 bytes"):
        writer.set_many([("k" * 1001, "v")])
    with pytest.raises(SourceError, match="empty key"):
        writer.set_many([("", "v")])
    with pytest.raises(SourceError, match="encode values first"):
        writer.set_many([("k", {"not": "encoded"})])


def test_the_server_refusing_a_write_is_reported(replit_server, fast_retries):
    replit_server.store.set_many([(f"k{i}", "v") for i in range(5000)])
    writer = ReplitWriter(replit_server.url, policy=fast_retries)
    with pytest.raises(SourceError, match=r"HTTP 413.*at most 5000 keys"):
        writer.set_many([("one-more", "v")])


def test_retries_are_never_logged_with_the_token(replit_server, fast_retries, caplog):
    """urllib3 logs each retry with the request path, which holds the database's secret token."""
    replit_server.store.set_many([("k", "v")])
    replit_server.faults.fail_first = 3
    caplog.set_level("DEBUG")
    source = ReplitSource(replit_server.url, policy=fast_retries)
    assert source.get("k") == "v"
    assert source.counters["retries"] == 3
    assert "/v0/***" in caplog.text  # urllib3 did log the requests and retries...
    assert _token(replit_server) not in caplog.text  # ...without the token
