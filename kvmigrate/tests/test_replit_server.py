"""The local server speaks the Replit Database protocol of ../shared/kv-format.md."""

import http.client
import json
import subprocess
import sys
from urllib.parse import quote, unquote, urlsplit

import pytest
import requests

from kvmigrate.replit_server import MAX_KEYS, ReplitDBServer, start_replit_server

WEIRD_KEYS = [
    "plain",
    "with/slash/es",
    "with space",
    "new\nline",
    "ünïcödé 🦆",
    "a+b",
    "50%",
    "q?x=1&y",
    "#hash",
]


def _get(url, key):
    return requests.get(f"{url}/{quote(key, safe='')}", timeout=5)


def test_url_has_a_token_path_segment(replit_server):
    parts = urlsplit(replit_server.url)
    assert parts.path.startswith("/v0/") and len(parts.path) > 30
    assert parts.hostname == "127.0.0.1"


def test_set_get_delete_round_trip(replit_server):
    url = replit_server.url
    body = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in [("a", '"1"'), ("b", "x y")])
    resp = requests.post(
        url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=5
    )
    assert resp.status_code == 200
    assert _get(url, "a").text == '"1"'
    assert _get(url, "b").text == "x y"
    assert requests.delete(f"{url}/a", timeout=5).status_code == 204
    assert _get(url, "a").status_code == 404
    assert requests.delete(f"{url}/a", timeout=5).status_code == 404


def test_plus_means_space_in_a_set_body(replit_server):
    url = replit_server.url
    requests.post(url, data="my+key=hello+world%2B1", timeout=5)
    assert replit_server.store.get("my key") == "hello world+1"
    # requests' own form encoding (what the Python client sends) uses '+' for spaces too
    requests.post(url, data={"other key": "v a l"}, timeout=5)
    assert _get(url, "other key").text == "v a l"


def test_get_missing_is_404(replit_server):
    assert _get(replit_server.url, "nope").status_code == 404


def test_values_come_back_byte_for_byte(replit_server):
    value = json.dumps(json.dumps({"name": "Zoë ☕", "line": "a\nb", "quote": '"'}))
    requests.post(replit_server.url, data={"k": value}, timeout=5)
    resp = _get(replit_server.url, "k")
    assert resp.content.decode("utf-8") == value


def test_weird_keys_set_get_list_and_delete(replit_server):
    url = replit_server.url
    for i, key in enumerate(WEIRD_KEYS):
        assert requests.post(url, data={key: str(i)}, timeout=5).status_code == 200
    for i, key in enumerate(WEIRD_KEYS):
        resp = _get(url, key)
        assert resp.status_code == 200, key
        assert resp.text == str(i)
    listed = requests.get(url, params={"encode": "true", "prefix": ""}, timeout=5).text.split("\n")
    assert all("\n" not in line and " " not in line for line in listed)  # percent-encoded, one per line
    assert sorted(unquote(line) for line in listed) == sorted(WEIRD_KEYS)
    for key in WEIRD_KEYS:
        assert requests.delete(f"{url}/{quote(key, safe='')}", timeout=5).status_code == 204
    assert len(replit_server.store) == 0


def test_raw_slash_in_key_path(replit_server):
    replit_server.store.set_many([("user/7/profile", "v")])
    parts = urlsplit(replit_server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    conn.request("GET", f"{parts.path}/user/7/profile")  # some clients leave '/' raw
    resp = conn.getresponse()
    assert (resp.status, resp.read()) == (200, b"v")
    conn.close()


def test_list_with_prefix_and_empty_answer(replit_server):
    replit_server.store.set_many([("user_credits:1", "a"), ("user_credits:2", "b"), ("session:x", "c")])
    url = replit_server.url
    resp = requests.get(url, params={"encode": "true", "prefix": "user_credits:"}, timeout=5)
    assert resp.text.split("\n") == ["user_credits%3A1", "user_credits%3A2"]
    empty = requests.get(url, params={"encode": "true", "prefix": "nothing"}, timeout=5)
    assert (empty.status_code, empty.text) == (200, "")
    # without encode=true: the raw keys
    assert requests.get(url, params={"prefix": "session"}, timeout=5).text == "session:x"


def test_multipart_delete_of_the_newer_client(replit_server):
    replit_server.store.set_many([("with/slash and space", "v")])
    url = replit_server.url
    resp = requests.delete(url, files={"key": (None, "with/slash and space")}, timeout=5)
    assert resp.status_code == 204
    assert requests.delete(url, files={"key": (None, "with/slash and space")}, timeout=5).status_code == 404
    assert requests.delete(url, timeout=5).status_code == 400  # no key field


def test_urlencoded_delete_of_the_collection(replit_server):
    replit_server.store.set_many([("k k", "v")])
    assert requests.delete(replit_server.url, data={"key": "k k"}, timeout=5).status_code == 204


def test_wrong_token_is_401(replit_server):
    parts = urlsplit(replit_server.url)
    base = f"http://{parts.hostname}:{parts.port}/v0/wrong-token"
    assert requests.get(base, params={"encode": "true", "prefix": ""}, timeout=5).status_code == 401
    assert requests.get(f"{base}/k", timeout=5).status_code == 401


def test_limits(replit_server):
    url = replit_server.url
    assert requests.post(url, data={"k" * 1001: "v"}, timeout=5).status_code == 413
    assert requests.post(url, data={"big": "x" * (5 * 1024 * 1024 + 1)}, timeout=30).status_code == 413
    replit_server.store.set_many([(f"k{i}", "v") for i in range(MAX_KEYS)])
    assert requests.post(url, data={"one-too-many": "v"}, timeout=5).status_code == 413
    assert requests.post(url, data={"k1": "overwrite is fine"}, timeout=5).status_code == 200
    assert requests.post(url, data="=v", timeout=5).status_code == 400  # empty key


def test_fault_injection_every_nth_request_and_delay(replit_server):
    replit_server.faults.fail_every = 3
    replit_server.faults.fail_status = 500
    statuses = [_get(replit_server.url, "missing").status_code for _ in range(6)]
    assert statuses == [404, 404, 500, 404, 404, 500]
    replit_server.faults.fail_every = 0
    replit_server.faults.fail_first = 0
    replit_server.faults.retry_after = 2
    replit_server.faults.fail_status = 429
    replit_server.faults.fail_every = 1
    resp = _get(replit_server.url, "missing")
    assert (resp.status_code, resp.headers["Retry-After"]) == (429, "2")


def test_persistence_to_a_json_file(tmp_path):
    data = tmp_path / "store.json"
    with ReplitDBServer(data=data) as server:
        requests.post(server.url, data={"a b": '"1"', "c": "2"}, timeout=5)
        requests.delete(f"{server.url}/c", timeout=5)
    assert json.loads(data.read_text()) == {"a b": '"1"'}
    url, again = start_replit_server(data=data, token="fixed")
    try:
        assert url.endswith("/v0/fixed")
        assert _get(url, "a b").text == '"1"'
    finally:
        again.stop()


def test_runs_as_a_module_and_prints_its_url(tmp_path):
    url_file = tmp_path / "replitdb"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kvmigrate.replit_server", "--port", "0", "--url-file", str(url_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and "/v0/" in url
        assert url_file.read_text().strip() == url
        requests.post(url, data={"k": "v"}, timeout=5)
        assert _get(url, "k").text == "v"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("n", [1, 25])
def test_concurrent_clients(replit_server, n):
    from concurrent.futures import ThreadPoolExecutor

    url = replit_server.url
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: requests.post(url, data={f"k{n}-{i}": str(i)}, timeout=5), range(200)))
    assert len(replit_server.store) == 200
