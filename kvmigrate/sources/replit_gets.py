"""Many GETs of a Replit Database on one event loop: the cheap first try of every key read.

A run reads each of up to 5,000 keys with one GET, and on a 2-core machine the client's CPU per
GET, not the network, bounded it: urllib3 in a pool of threads spends about 0.2-0.3 ms a GET (its
request and response objects, header parsing through `email`, the retry bookkeeping, the GIL
passed between 32 threads). Here the GETs go out through aiohttp on one event loop in a thread
of its own: a maintained client whose responses are parsed by llhttp (C), with a keep-alive pool
of `concurrency` connections, one request in flight on each (no pipelining), http or https (the
certificate checked against the trust store as urllib3 does, `SSL_CERT_FILE` honoured).

Only the plain answers are taken here: a 200 (its body's bytes, decoded by the caller as the
urllib3 path decodes them) and a 404. Anything else (a 429 or 5xx, a 401 after the token rotated,
a timeout, a connection error, a compressed body, an answer llhttp refuses, any other aiohttp
error) comes back as a `Miss` and the caller hands the key to the urllib3 client, whose retries,
backoff, Retry-After and token re-reading apply: this first try counts as one of the policy's
tries, so a key is never asked more often than the policy says. aiohttp's own second try of a GET
whose connection dropped is therefore turned off (`_one_try`).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from urllib.parse import quote

import aiohttp
from yarl import URL

from .replit import RETRY_STATUSES, Miss


class _Dropped(aiohttp.ClientConnectionError):
    """A connection error aiohttp would have answered by sending the GET again on its own."""


async def _one_try(request: aiohttp.ClientRequest, handler) -> aiohttp.ClientResponse:
    """One request per GET: aiohttp sends an idempotent request a second time when its connection
    drops (RFC 9112 9.3.1); here the urllib3 client's policy decides, and counts, every try."""
    try:
        return await handler(request)
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as exc:
        raise _Dropped() from exc


class FastGets:
    """GETs batches of keys on an event loop in its own thread; results are `bytes`, None or `Miss`.

    `submit(keys)` returns a `concurrent.futures.Future` of the list of results, in the keys'
    order: a batch is fetched while the caller works on the previous one. `url` is read again at
    each batch (a caller may have re-read a rotated token meanwhile). One session, so one pool of
    kept-alive connections, serves every batch until `close()`: `asyncio.run` per batch cost no
    less CPU over loopback, and would lose that overlap and reconnect (TLS handshakes) each batch.
    """

    def __init__(self, *, concurrency: int, connect_timeout: float, read_timeout: float) -> None:
        self.concurrency = max(1, concurrency)
        self.framing_ok = True  # False once the server answered in a way this client leaves to urllib3
        # urllib3's two timeouts: to connect, and between two reads of an answer.
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._tls: ssl.SSLContext | None = None
        self._session: aiohttp.ClientSession | None = None
        self._turn: asyncio.Lock | None = None  # one batch at a time: `concurrency` requests in flight
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="replit-gets", daemon=True)
        self._thread.start()

    def submit(self, url: str, keys: Sequence[str | bytes]) -> Future:
        return asyncio.run_coroutine_threadsafe(self._fetch(url, list(keys)), self._loop)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shut(), self._loop).result(timeout=5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()

    # --- on the loop's thread ---------------------------------------------------------------

    async def _shut(self) -> None:
        """Cancels a batch nobody waits for any more (a reader stopped early), closes the pool."""
        pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def _open(self) -> aiohttp.ClientSession:
        """The session: no environment read (proxies, netrc), no cookies, no decompression (a
        compressed answer is urllib3's to decode), statuses answered rather than raised."""
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.concurrency),
            timeout=self._timeout,
            headers={"User-Agent": "kvmigrate", "Accept-Encoding": "identity"},
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trust_env=False,
            raise_for_status=False,
            middlewares=(_one_try,),
        )

    def _ssl_for(self, url: str) -> ssl.SSLContext | bool:
        """The TLS context of an https URL: the system's trust store (or `SSL_CERT_FILE`, read by
        OpenSSL), host names and certificates checked, as urllib3's. Made when first needed: not
        aiohttp's default, made once at import, before a test or an operator set `SSL_CERT_FILE`."""
        if not url.startswith("https:"):
            return True  # unused for http
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    async def _fetch(self, url: str, keys: list) -> list:
        if self._turn is None:
            self._turn = asyncio.Lock()
            self._session = self._open()
        async with self._turn:  # the batch submitted ahead waits for the one before it
            results: list = [None] * len(keys)
            order = iter(range(len(keys)))
            tls = self._ssl_for(url)
            workers = min(self.concurrency, len(keys))
            await asyncio.gather(*(self._worker(url, tls, keys, order, results) for _ in range(workers)))
            return results

    async def _worker(self, url: str, tls: ssl.SSLContext | bool, keys: list, order, results: list) -> None:
        base = url.rstrip("/")
        for i in order:
            if not self.framing_ok:
                results[i] = Miss(error="framing", spent=False)
                continue
            # Percent-encoded as the urllib3 client does; `encoded=True`: sent exactly so.
            results[i] = await self._get(URL(f"{base}/{quote(keys[i], safe='')}", encoded=True), tls)

    async def _get(self, url: URL, tls: ssl.SSLContext | bool) -> bytes | Miss | None:
        # Exceptions are never shown: aiohttp's name the URL, and the URL holds the token.
        assert self._session is not None
        try:
            async with self._session.get(url, allow_redirects=False, ssl=tls) as resp:
                body = await resp.read()  # read whatever the status: the connection stays usable
                status, headers = resp.status, resp.headers
        except TimeoutError:
            return Miss(error="timeout")
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError):
            return Miss(error="connection")
        except Exception:  # a head llhttp refuses (ClientResponseError), or anything unforeseen
            return self._odd()
        if status == 200:
            if headers.get("Content-Encoding", "identity").lower() != "identity":
                return self._odd()
            return body
        if status == 404:
            return None
        return Miss(status=status, retry_after=headers.get("Retry-After"), spent=status in RETRY_STATUSES)

    def _odd(self) -> Miss:
        """An answer left to urllib3 (it reads what it may, refuses what it must), and so are the
        rest of this source's keys: such a server would answer every GET that way."""
        self.framing_ok = False
        return Miss(error="framing", spent=False)
