"""Many GETs of a Replit Database on one event loop: the cheap first try of every key read.

A run reads each of up to 5,000 keys with one GET, and on a 2-core machine the client's CPU per
GET, not the network, bounded it: 0.2 ms through urllib3 in a pool of threads (its request and
response objects, header parsing through `email`, the retry bookkeeping, the GIL passed between
32 threads). Here a GET is one pre-built request line written to a keep-alive connection and a
response parsed from bytes: about a fifth of that. `concurrency` connections stay open, each
with one request in flight (no pipelining, which servers and proxies do not all honour), http or
https (TLS by asyncio, certificates checked as urllib3 does).

Only the plain answers are taken here: 200 with a Content-Length body, and 404. Anything else
(a 429 or 5xx, a 401 after the token rotated, a timeout, a connection error, an answer framed
some other way) comes back as a `Miss` and the caller hands the key to the urllib3 client, whose
retries, backoff, Retry-After and token re-reading apply: this first try counts as one of the
policy's tries, so a key is never asked more often than the policy says.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

_MAX_HEAD = 64 * 1024  # a response head larger than this is not the Replit Database's: a miss


@dataclass(frozen=True)
class Miss:
    """A key this first try could not read: `status` (an HTTP answer) or `error` (no answer).

    `spent` tells whether it counts as a try of the retry policy (a retryable status, a timeout,
    a connection error) or not (a refusal or an odd answer the urllib3 client asks again).
    """

    status: int | None = None
    error: str | None = None  # "timeout", "connection", "framing"
    retry_after: str | None = None
    spent: bool = True


class _Conn(asyncio.Protocol):
    """One keep-alive connection, one request at a time; the response is parsed from raw bytes."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future | None = None
        self.sent_at = 0.0
        self.closed = False
        self._head: tuple[int, int, bool, str | None] | None = None  # status, body start, close, retry-after
        self._length = -1

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._fail(Miss(error="connection"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.waiter is not None:
            try:
                self._parse()
            except Exception:  # an answer this parser did not foresee: urllib3 reads it instead
                self._odd()

    def request(self, line: bytes) -> asyncio.Future:
        self.buf.clear()
        self._head, self._length = None, -1
        self.waiter = self.loop.create_future()
        self.sent_at = time.monotonic()
        self.transport.write(line)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, miss: Miss) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(miss)

    def _done(self, value) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(value)

    def _parse(self) -> None:
        buf = self.buf
        if self._head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    self._odd()
                return
            lines = bytes(buf[:end]).split(b"\r\n")
            parts = lines[0].split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
                self._odd()
                return
            status = int(parts[1])
            close = parts[0] == b"HTTP/1.0"
            length, retry_after, framed = -1, None, True
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    value = value.strip()
                    if not value.isdigit():
                        framed = False
                    length = int(value) if value.isdigit() else -1
                elif name == b"transfer-encoding":
                    framed = False  # chunked: the urllib3 client reads it
                elif name == b"connection":
                    token = value.strip().lower()
                    close = token == b"close" or (close and token != b"keep-alive")
                elif name == b"retry-after":
                    retry_after = value.strip().decode("latin-1")
            if length < 0 and status not in (204, 304):
                framed = False
            if not framed or 100 <= status < 200:
                self._odd()
                return
            self._head = (status, end + 4, close, retry_after)
            self._length = max(length, 0)
        status, start, close, retry_after = self._head
        if len(buf) < start + self._length:
            return
        body = bytes(buf[start : start + self._length])
        if close or len(buf) > start + self._length:  # closing, or bytes nobody asked for
            self.close()
        if status == 200:
            self._done(body)
        elif status == 404:
            self._done(None)
        else:
            from .replit import RETRY_STATUSES

            self._done(Miss(status=status, retry_after=retry_after, spent=status in RETRY_STATUSES))

    def _odd(self) -> None:
        self.close()
        self._fail(Miss(error="framing", spent=False))


class FastGets:
    """GETs batches of keys on an event loop in its own thread; results are `bytes`, None or `Miss`.

    `submit(keys)` returns a `concurrent.futures.Future` of the list of results, in the keys'
    order: a batch is fetched while the caller works on the previous one. `url` is read again at
    each batch (a caller may have re-read a rotated token meanwhile).
    """

    def __init__(self, *, concurrency: int, connect_timeout: float, read_timeout: float) -> None:
        self.concurrency = max(1, concurrency)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.framing_ok = True  # False once the server answered in a way this client leaves to urllib3
        self._loop = asyncio.new_event_loop()
        self._conns: list[_Conn] = []  # every open connection (for the watchdog)
        self._idle: list[_Conn] = []  # kept open between batches
        self._turn: asyncio.Lock | None = None  # one batch at a time: `concurrency` requests in flight
        self._endpoint: tuple[str, str, int, str, bytes, ssl.SSLContext | None] | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="replit-gets", daemon=True)
        self._thread.start()

    def submit(self, url: str, keys: Sequence[str | bytes]) -> Future:
        return asyncio.run_coroutine_threadsafe(self._fetch(url, list(keys)), self._loop)

    def close(self) -> None:
        if self._loop.is_closed():
            return

        def shut() -> None:
            for conn in self._conns:
                conn.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(shut)
        self._thread.join(timeout=5)
        self._loop.close()

    # --- on the loop's thread ---------------------------------------------------------------

    def _set_endpoint(self, url: str) -> None:
        if self._endpoint is not None and self._endpoint[0] == url:
            return
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        host = parts.hostname or ""
        port = parts.port or (443 if tls else 80)
        default = (tls and port == 443) or (not tls and port == 80)
        authority = host if ":" not in host else f"[{host}]"
        host_header = authority if default else f"{authority}:{port}"
        context = ssl.create_default_context() if tls else None
        head = f"Host: {host_header}\r\nAccept-Encoding: identity\r\nUser-Agent: kvmigrate\r\n\r\n"
        self._endpoint = (url, host, port, parts.path.rstrip("/"), head.encode("ascii"), context)
        for conn in self._conns:  # a new URL (a rotated token): new connections
            conn.close()
        self._conns, self._idle = [], []

    async def _fetch(self, url: str, keys: list) -> list:
        if self._turn is None:
            self._turn = asyncio.Lock()
        async with self._turn:  # the batch submitted ahead waits for the one before it
            self._set_endpoint(url)
            results: list = [None] * len(keys)
            order = iter(range(len(keys)))
            watchdog = self._loop.create_task(self._watch())
            try:
                workers = min(self.concurrency, len(keys))
                await asyncio.gather(*(self._worker(keys, order, results) for _ in range(workers)))
            finally:
                watchdog.cancel()
            return results

    async def _watch(self) -> None:
        """Times out requests waiting longer than the read timeout (one timer, not one per GET)."""
        tick = min(max(self.read_timeout / 4, 0.01), 0.5)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for conn in self._conns:
                if conn.waiter is not None and now - conn.sent_at > self.read_timeout:
                    conn._fail(Miss(error="timeout"))
                    conn.close()

    async def _connect(self) -> _Conn | Miss:
        _, host, port, _, _, context = self._endpoint
        try:
            _, conn = await asyncio.wait_for(
                self._loop.create_connection(
                    lambda: _Conn(self._loop),
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context else None,
                ),
                self.connect_timeout,
            )
        except TimeoutError:
            return Miss(error="timeout")
        except (OSError, ssl.SSLError):
            return Miss(error="connection")
        self._conns.append(conn)
        return conn

    async def _worker(self, keys: list, order, results: list) -> None:
        conn: _Conn | None = self._idle.pop() if self._idle else None
        base, head = self._endpoint[3], self._endpoint[4]
        for i in order:
            if not self.framing_ok:
                results[i] = Miss(error="framing", spent=False)
                continue
            if conn is None or conn.closed:
                if conn is not None:
                    self._conns.remove(conn)
                made = await self._connect()
                if isinstance(made, Miss):
                    results[i], conn = made, None
                    continue
                conn = made
            key = keys[i]
            line = b"GET " + f"{base}/{quote(key, safe='')}".encode("ascii") + b" HTTP/1.1\r\n" + head
            result = await conn.request(line)
            if isinstance(result, Miss) and result.error == "framing":
                self.framing_ok = False
            results[i] = result
        if conn is not None:
            if conn.closed:
                self._conns.remove(conn)
            else:
                self._idle.append(conn)
