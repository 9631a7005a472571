"""A local server speaking the Replit Database protocol (../shared/kv-format.md): a dev tool and a
test fixture. Standard library only, so it runs without Django:

    python -m kvmigrate.replit_server --port 8765 [--data store.json] [--url-file /tmp/replitdb]

| request | answer |
|---|---|
| `POST {url}` urlencoded `k=v&k2=v2` (`+` or `%20` for a space) | 200 |
| `GET {url}/{key}` (key percent-encoded, `/` may be raw) | 200 + the stored string, 404 |
| `DELETE {url}/{key}`, or `DELETE {url}` with a form field `key` (multipart or urlencoded) | 204, 404 |
| `GET {url}?encode=true&prefix=p` | 200, matching keys one per line, percent-encoded; empty when none |

The URL is `http://host:port/v0/{token}` like Replit's; any other path answers 401. Limits are
Replit's (1,000-byte keys, 5 MB values, 5,000 keys, 50 MB) unless `limits=False` (413 beyond
them). Faults for tests: every `fail_every`-th request (or the first `fail_first`) answers
`fail_status`; `delay` seconds before every (or every `delay_every`-th) answer. They can be
changed while it runs.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import json
import os
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, quote, unquote

MAX_KEY_BYTES = 1_000
MAX_VALUE_BYTES = 5 * 1024 * 1024
MAX_KEYS = 5_000
MAX_DB_BYTES = 50 * 1024 * 1024


@dataclass
class Faults:
    """Injected failures; mutable while the server runs."""

    fail_every: int = 0  # every Nth request fails (0: never)
    fail_first: int = 0  # the first N requests fail
    fail_status: int = 429
    retry_after: float | None = None  # sent as Retry-After with the failures
    delay: float = 0.0  # seconds before an answer...
    delay_every: int = 0  # ...of every Nth request (0: of every request)


class Store:
    """The key/value strings, thread-safe, optionally persisted to a JSON file after each write."""

    def __init__(self, data: str | os.PathLike | None = None, *, limits: bool = True):
        self._lock = threading.Lock()
        self._items: dict[str, str] = {}
        self._bytes = 0
        self.limits = limits
        self.path = Path(data) if data else None
        if self.path and self.path.exists():
            loaded = json.loads(self.path.read_text(encoding="utf-8") or "{}")
            if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
                raise ValueError(f"{self.path}: expected a JSON object of strings")
            self._items = loaded
            self._bytes = sum(_size(k, v) for k, v in loaded.items())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._items.get(key)

    def keys(self, prefix: str = "") -> list[str]:
        with self._lock:
            return sorted(k for k in self._items if k.startswith(prefix))

    def snapshot(self) -> dict[str, str]:
        with self._lock:
            return dict(self._items)

    def set_many(self, pairs: list[tuple[str, str]]) -> str | None:
        """Store all pairs, or none and the reason (a limit) when they do not fit."""
        with self._lock:
            if self.limits:
                problem = self._check(pairs)
                if problem:
                    return problem
            for key, value in pairs:
                old = self._items.get(key)
                if old is not None:
                    self._bytes -= _size(key, old)
                self._items[key] = value
                self._bytes += _size(key, value)
            self._persist()
        return None

    def _check(self, pairs: list[tuple[str, str]]) -> str | None:
        new_keys = {k for k, _ in pairs if k not in self._items}
        if len(self._items) + len(new_keys) > MAX_KEYS:
            return f"the database holds at most {MAX_KEYS} keys"
        size = self._bytes
        final = dict(pairs)
        for key, value in final.items():
            if len(key.encode("utf-8")) > MAX_KEY_BYTES:
                return f"a key is longer than {MAX_KEY_BYTES} bytes"
            if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
                return "a value is larger than 5 MB"
            old = self._items.get(key)
            size += _size(key, value) - (_size(key, old) if old is not None else 0)
        if size > MAX_DB_BYTES:
            return "the database is limited to 50 MB"
        return None

    def delete(self, key: str) -> bool:
        with self._lock:
            old = self._items.pop(key, None)
            if old is None:
                return False
            self._bytes -= _size(key, old)
            self._persist()
            return True

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
            self._persist()

    def _persist(self) -> None:
        if not self.path:
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self._items, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.path)


def _size(key: str, value: str) -> int:
    return len(key.encode("utf-8")) + len(value.encode("utf-8"))


class ReplitDBServer(ThreadingHTTPServer):
    """The server; `start()` serves in a background thread, `stop()` ends it (also a context manager)."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = None,
        data: str | os.PathLike | None = None,
        limits: bool = True,
        faults: Faults | None = None,
        verbose: bool = False,
    ):
        self.token = token or secrets.token_urlsafe(32)
        self.base_path = f"/v0/{self.token}"
        self.store = Store(data, limits=limits)
        self.faults = faults or Faults()
        self.verbose = verbose
        self._count_lock = threading.Lock()
        self.requests = 0  # requests answered so far, faults included
        self.failed = 0  # of which injected failures
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}{self.base_path}"

    def count_request(self) -> tuple[float, bool]:
        """Count a request: (seconds to delay it, whether an injected failure answers it)."""
        with self._count_lock:
            self.requests += 1
            n = self.requests
            f = self.faults
            fail = n <= f.fail_first or (f.fail_every > 0 and n % f.fail_every == 0)
            if fail:
                self.failed += 1
            delay = f.delay if f.delay and (f.delay_every <= 0 or n % f.delay_every == 0) else 0.0
            return delay, fail

    def start(self) -> ReplitDBServer:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="replit-db-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> ReplitDBServer:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_replit_server(**options) -> tuple[str, ReplitDBServer]:
    """Start a server on a free local port in a background thread: (its URL, the server)."""
    server = ReplitDBServer(**options).start()
    return server.url, server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # headers and body leave in one write (flushed after each request)
    server: ReplitDBServer
    server_version = "replit-db-local/1"

    def log_message(self, format: str, *args) -> None:
        if self.server.verbose:
            # Never the path: it holds the token.
            sys.stderr.write(f"{self.command} -> {args[1] if len(args) > 1 else ''}\n")

    # --- plumbing -------------------------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: str = "", headers: dict[str, str] | None = None) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if status != 204 and self.command != "HEAD":
            self.wfile.write(data)

    def _route(self) -> tuple[str, str | None, str] | None:
        """('collection'|'key', key, query) for a path under the token, else None (401 sent)."""
        path, _, query = self.path.partition("?")
        base = self.server.base_path
        if path in (base, base + "/"):
            return "collection", None, query
        if path.startswith(base + "/"):
            try:
                # http.server reads the request line as Latin-1: undo that for raw UTF-8 bytes.
                raw = path[len(base) + 1 :].encode("latin-1").decode("utf-8")
                key = unquote(raw, errors="strict")
            except UnicodeError:
                self._send(400, "key is not UTF-8")
                return None
            return "key", key, query
        self._send(401, "unauthorized")
        return None

    def _handle(self, method: str) -> None:
        body = self._body() if method in ("POST", "DELETE", "PUT") else b""
        faults = self.server.faults
        delay, fail = self.server.count_request()
        if delay:
            time.sleep(delay)
        if fail:
            headers = {"Retry-After": f"{faults.retry_after:g}"} if faults.retry_after is not None else None
            self._send(faults.fail_status, "injected failure", headers)
            return
        route = self._route()
        if route is None:
            return
        kind, key, query = route
        getattr(self, f"_{method.lower()}_{kind}")(key, query, body)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # --- the protocol ---------------------------------------------------------------------
    def _get_key(self, key: str, query: str, body: bytes) -> None:
        value = self.server.store.get(key)
        if value is None:
            self._send(404, "")
        else:
            self._send(200, value)

    def _get_collection(self, key: None, query: str, body: bytes) -> None:
        params = parse_qs(query, keep_blank_values=True)
        prefix = params.get("prefix", [""])[0]
        encode = params.get("encode", [""])[0].lower() == "true"
        keys = self.server.store.keys(prefix)
        lines = [quote(k, safe="") for k in keys] if encode else keys
        self._send(200, "\n".join(lines))

    def _post_collection(self, key: None, query: str, body: bytes) -> None:
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
        except (UnicodeDecodeError, ValueError):
            self._send(400, "body is not UTF-8 urlencoded")
            return
        if not pairs or any(not k for k, _ in pairs):
            self._send(400, "empty key")
            return
        problem = self.server.store.set_many(pairs)
        if problem:
            self._send(413, problem)
        else:
            self._send(200, "")

    def _post_key(self, key: str, query: str, body: bytes) -> None:
        self._send(405, "set with POST {url} and a urlencoded body")

    def _delete_key(self, key: str, query: str, body: bytes) -> None:
        self._send(204 if self.server.store.delete(key) else 404, "")

    def _delete_collection(self, key: None, query: str, body: bytes) -> None:
        field = self._form_key(body)
        if not field:
            self._send(400, "missing form field 'key'")
            return
        self._send(204 if self.server.store.delete(field) else 404, "")

    def _form_key(self, body: bytes) -> str | None:
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("multipart/form-data"):
            head = f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
            for part in message.iter_parts():
                if part.get_param("name", header="content-disposition") == "key":
                    payload = part.get_payload(decode=True) or b""
                    return payload.decode(part.get_content_charset() or "utf-8")
            return None
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            return None
        return fields.get("key", [None])[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kvmigrate.replit_server", description="A local Replit Database server."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--data", help="JSON file the store is loaded from and saved to")
    parser.add_argument("--token", help="the URL's token segment (default: random)")
    parser.add_argument("--url-file", help="also write the URL to this file (e.g. /tmp/replitdb)")
    parser.add_argument("--no-limits", action="store_true", help="no key/size limits (big test stores)")
    parser.add_argument("--fail-every", type=int, default=0, help="every Nth request fails")
    parser.add_argument("--fail-status", type=int, default=429)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    faults = Faults(fail_every=args.fail_every, fail_status=args.fail_status, delay=args.delay)
    server = ReplitDBServer(
        args.host,
        args.port,
        token=args.token,
        data=args.data,
        limits=not args.no_limits,
        faults=faults,
        verbose=args.verbose,
    )
    if args.url_file:
        Path(args.url_file).write_text(server.url + "\n", encoding="utf-8")
    print(server.url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
