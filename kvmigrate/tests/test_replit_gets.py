"""The fast first try of each GET: what it leaves to urllib3, and that nothing is asked twice."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote

import pytest

from kvmigrate.sources import ReplitSource

VALUES = {f"k{i}": f"value {i} é" for i in range(30)}


class _Odd(BaseHTTPRequestHandler):
    """A Replit-like server answering in ways the fast reader does not take: chunked bodies, or
    HTTP/1.0 closing the connection after each answer."""

    chunked = False
    requests = 0
    lock = threading.Lock()

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        with self.lock:
            type(self).requests += 1
        path, _, query = self.path.partition("?")
        if query:
            body = "\n".join(quote(k, safe="") for k in VALUES).encode()
        else:
            value = VALUES.get(unquote(path.rsplit("/", 1)[1]))
            if value is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = value.encode()
        self.send_response(200)
        if self.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@pytest.fixture(params=["chunked", "http/1.0"])
def odd_server(request):
    handler = type(
        "Handler",
        (_Odd,),
        {
            "chunked": request.param == "chunked",
            "protocol_version": "HTTP/1.1" if request.param == "chunked" else "HTTP/1.0",
            "requests": 0,
        },
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v0/token", handler, request.param
    server.shutdown()
    server.server_close()


def test_answers_it_does_not_parse_are_read_by_urllib3_and_a_connection_closed_is_reopened(
    odd_server, fast_retries
):
    url, handler, kind = odd_server
    source = ReplitSource(url, policy=fast_retries, concurrency=4)
    seen = dict(item for batch in source.iter_batches(7) for item in batch)
    assert seen == VALUES
    assert source.counters.snapshot() == {"listed": 30, "fetched": 30, "vanished": 0, "retries": 0}
    asked = handler.requests - 1  # the listing
    if kind == "chunked":
        # the first chunked answer turns the fast reader off; each key it had asked is asked again
        assert 30 < asked <= 30 + 4
    else:
        assert asked == 30  # HTTP/1.0: a new connection per GET, each key asked once


def test_get_many_and_missing_keys(odd_server, fast_retries):
    url, _, _ = odd_server
    source = ReplitSource(url, policy=fast_retries, concurrency=3)
    assert source.get_many(["k1", "nope", "k2", "k1"]) == {"k1": VALUES["k1"], "k2": VALUES["k2"]}
    assert source.counters["vanished"] == 1
