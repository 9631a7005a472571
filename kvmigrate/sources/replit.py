"""The Replit Database over HTTP: read (list + concurrent batched GETs) and write (bulk POST, DELETE).

The URL embeds a secret token and rotates: it comes from the argument, else `/tmp/replitdb`, else
`REPLIT_DB_URL`; it is never printed (`describe()` and every error mask it), and a 401/403 makes
the client re-read where it came from once before giving up.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, quote_plus, unquote, unquote_to_bytes, urlencode, urlsplit

import urllib3

from .base import Counters, Item, RawItem, Source, SourceError, Writer, mask_url

if TYPE_CHECKING:
    from .replit_gets import FastGets

DEFAULT_URL_FILE = "/tmp/replitdb"  # where Replit itself writes the current URL  # noqa: S108
URL_ENV = "REPLIT_DB_URL"
MAX_KEY_BYTES = 1_000
MAX_VALUE_BYTES = 5 * 1024 * 1024

# The answers worth another try: urllib3's policy retries them, and a fast try that got one is spent.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 520, 521, 522, 523, 524})


@dataclass(frozen=True)
class Miss:
    """A key the fast first try (`replit_gets`) could not read: `status` (an answer) or `error`.

    `spent` tells whether it counts as a try of the retry policy (a retryable status, a timeout,
    a connection error) or not (a refusal or an odd answer the urllib3 client asks again).
    """

    status: int | None = None
    error: str | None = None  # "timeout", "connection", "framing"
    retry_after: str | None = None
    spent: bool = True


def resolve_url(url: str | None = None, *, url_file: str | os.PathLike = DEFAULT_URL_FILE) -> tuple[str, str]:
    """(url, where it came from): the argument, else the file `url_file`, else `$REPLIT_DB_URL`."""
    if url:
        return url.strip(), "argument"
    path = Path(url_file)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        raise SourceError(f"cannot read the Replit DB URL from {path}: {exc.strerror}") from None
    if text:
        return text, f"file {path}"
    env = os.environ.get(URL_ENV, "").strip()
    if env:
        return env, f"${URL_ENV}"
    raise SourceError(
        f"no Replit Database URL: pass one (--source https://...), write it to {path} or set {URL_ENV}"
    )


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter on 429, 5xx, timeouts and connection errors (urllib3 applies it)."""

    tries: int = 6
    backoff: float = 0.25  # first delay, seconds; doubles each try
    max_backoff: float = 8.0
    connect_timeout: float = 5.0
    read_timeout: float = 30.0


class _Retry(urllib3.Retry):
    """urllib3's retry, with a server's Retry-After capped at the policy's longest wait."""

    max_retry_after: float = 8.0

    def parse_retry_after(self, retry_after: str) -> float:
        # Fractional seconds (which RFC 9110 does not allow, but servers send) are accepted too.
        try:
            return max(float(retry_after), 0.0)
        except ValueError:
            return super().parse_retry_after(retry_after)

    def get_retry_after(self, response) -> float | None:
        value = super().get_retry_after(response)
        return None if value is None else min(max(value, 0.0), self.max_retry_after)

    def new(self, **kw):
        retry = super().new(**kw)
        retry.max_retry_after = self.max_retry_after
        return retry


def _retry(policy: RetryPolicy) -> _Retry:
    """The policy as urllib3's Retry: 429, 5xx, timeouts and connection errors, on every verb.

    Every request kvmigrate sends is idempotent (GET, setting a key to a value, DELETE), so
    retrying a POST is safe. Statuses still failing after the last try come back as a response
    (`raise_on_status=False`) so the error can name them.
    """
    retry = _Retry(
        total=policy.tries - 1,
        connect=policy.tries - 1,
        read=policy.tries - 1,
        status=policy.tries - 1,
        other=0,
        redirect=0,
        allowed_methods=None,
        status_forcelist=RETRY_STATUSES,
        backoff_factor=policy.backoff,
        backoff_max=policy.max_backoff,
        backoff_jitter=policy.backoff / 2,
        respect_retry_after_header=True,
        raise_on_status=False,
        raise_on_redirect=False,
    )
    retry.max_retry_after = policy.max_backoff
    return retry


class _HideTokens(logging.Filter):
    """urllib3 logs each retry with the request's path, which holds the database's secret token."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/v0/" in message:
            record.msg, record.args = _TOKEN_PATH.sub("/v0/***", message), ()
        return True


_TOKEN_PATH = re.compile(r"/v0/[^/?#\s'\"]+")
# A logger's filters see only its own records, not its children's: each urllib3 logger that may
# name a request path gets one.
for _name in ("urllib3.connectionpool", "urllib3.poolmanager", "urllib3.util.retry", "urllib3.response"):
    logging.getLogger(_name).addFilter(_HideTokens())


class _Client:
    """One connection pool to the database (keep-alive, `pool_size` connections), used by reader
    and writer.

    urllib3 directly rather than `requests`: a GET through a requests Session costs about 1.3 ms
    of client CPU here (0.3 ms of it re-reading proxy and netrc settings from the environment on
    every request), against 0.37 ms through a urllib3 pool. On a 5,000-key store read by a few
    dozen threads that share one interpreter, that CPU, not the network, was the bound. Retries
    (429, 5xx, timeouts, connection errors, with backoff and Retry-After) are urllib3's own; only
    the token rotation (401/403: re-read the URL once) is ours.
    """

    def __init__(self, url: str | None, *, policy: RetryPolicy | None, url_file, pool_size: int, counters):
        self._url_file = url_file
        self.url, self.origin = resolve_url(url, url_file=url_file)
        self.url = self.url.rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise SourceError(f"the Replit Database URL must be http(s)://, got {mask_url(self.url)}")
        self.policy = policy or RetryPolicy()
        self.counters = counters
        self._retry = _retry(self.policy)
        self._timeout = urllib3.Timeout(connect=self.policy.connect_timeout, read=self.policy.read_timeout)
        self.pool = urllib3.PoolManager(num_pools=2, maxsize=max(pool_size, 1), retries=self._retry)
        self._endpoint: tuple[str, urllib3.HTTPConnectionPool, str] | None = None  # url, pool, path
        self._url_lock = threading.Lock()

    @property
    def masked(self) -> str:
        return mask_url(self.url)

    def _refresh_url(self, used: str) -> bool:
        """Re-read the URL where it came from (Replit rotates it); True when it changed."""
        if self.origin == "argument":
            return False
        with self._url_lock:
            if self.url != used:  # another thread already refreshed it
                return True
            try:
                fresh, origin = resolve_url(None, url_file=self._url_file)
            except SourceError:
                return False
            fresh = fresh.rstrip("/")
            if fresh == self.url:
                return False
            self.url, self.origin = fresh, origin
            return True

    def _pool_for(self, url: str) -> tuple[urllib3.HTTPConnectionPool, str]:
        """The connection pool and base path of `url`, parsed once (not on every request)."""
        endpoint = self._endpoint
        if endpoint is None or endpoint[0] != url:
            endpoint = (url, self.pool.connection_from_url(url), urlsplit(url).path)
            self._endpoint = endpoint
        return endpoint[1], endpoint[2]

    def request(
        self,
        method: str,
        key: str | None,
        what: str,
        *,
        query: str = "",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        first: Miss | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """The response (2xx/3xx or 404) after retries; SourceError when it cannot get one.

        `first`: how the fast reader's try of this request failed; when it `spent` a try, the
        retries here are one fewer, so the policy's number of tries holds in all.
        """
        tries = self.policy.tries
        refreshed = False
        retry = self._retry if first is None or not first.spent else self._after(method, first)
        while True:
            used = self.url
            pool, path = self._pool_for(used)
            if key is not None:
                path = f"{path}/{quote(key, safe='')}"
            if query:
                path = f"{path}?{query}"
            try:
                resp = pool.urlopen(
                    method,
                    path,
                    body=body,
                    headers=headers,
                    retries=retry,
                    timeout=self._timeout,
                    redirect=False,
                    preload_content=True,
                )
            except urllib3.exceptions.MaxRetryError as exc:
                self.counters.add("retries", tries - 1)
                raise SourceError(
                    f"{what}: gave up after {tries} tries ({_reason(exc.reason)}) at {self.masked}"
                ) from None
            except urllib3.exceptions.HTTPError as exc:  # never str(exc): it may hold the URL
                raise SourceError(f"{what}: {type(exc).__name__} at {self.masked}") from None
            history = resp.retries.history if resp.retries is not None else ()
            if history:
                self.counters.add("retries", len(history))
            status = resp.status
            if status < 400 or status == 404:
                return resp
            if status in (401, 403):
                if not refreshed and self._refresh_url(used):
                    refreshed, retry = True, self._retry
                    continue
                raise SourceError(
                    f"{what}: the database refused the URL (HTTP {status}) at {self.masked}; "
                    f"its token may have rotated (read from {self.origin})"
                )
            if status in RETRY_STATUSES:
                raise SourceError(f"{what}: gave up after {tries} tries (HTTP {status}) at {self.masked}")
            detail = _text(resp)[:200].strip()
            raise SourceError(
                f"{what}: unexpected HTTP {status} from {self.masked}" + (f": {detail}" if detail else "")
            )

    def _after(self, method: str, first: Miss) -> _Retry:
        """The retry state after the fast reader's failed try: one try spent, in its history.

        urllib3 counts that try among the retries (so the `retries` counter and the "gave up after
        N tries" stay true), backs off from the second failure as usual, and a Retry-After the
        failed answer sent is waited for here, as urllib3 would have.
        """
        from urllib3.util.retry import RequestHistory

        left = self._retry.total - 1
        if left < 0:  # a policy of one try: that was it
            cause, tries = _first_cause(first), self.policy.tries
            raise SourceError(f"reading a key: gave up after {tries} tries ({cause}) at {self.masked}")
        if first.retry_after is not None and first.status in (413, 429, 503):
            try:
                wait = self._retry.parse_retry_after(first.retry_after)
            except urllib3.exceptions.InvalidHeader:
                wait = 0.0
            time.sleep(min(max(wait, 0.0), self._retry.max_retry_after))
        history = (RequestHistory(method, None, None, first.status, None),)
        return self._retry.new(total=left, history=history)

    def close(self) -> None:
        self.pool.clear()


def _first_cause(first: Miss) -> str:
    """Why the fast reader's try failed, as `_reason` says it for urllib3's."""
    if first.status:
        return f"HTTP {first.status}"
    causes = {"timeout": "timed out", "framing": "an answer it cannot read"}
    return causes.get(first.error or "", "connection failed")


def _reason(reason: BaseException | None) -> str:
    """A short cause for a request that failed every try, naming neither the URL nor its token."""
    if isinstance(reason, urllib3.exceptions.NewConnectionError):  # a subclass of the timeout error
        return "connection failed"
    if isinstance(reason, urllib3.exceptions.TimeoutError):
        return "timed out"
    if isinstance(reason, urllib3.exceptions.ResponseError):
        return "retryable answers"
    return "connection failed"


def _text(resp: urllib3.BaseHTTPResponse) -> str:
    # The stored string is UTF-8; never guess a charset from the headers.
    return resp.data.decode("utf-8", errors="backslashreplace")


class ReplitSource(Source):
    """Lists the keys (`?encode=true&prefix=`), then GETs values concurrently, batch by batch.

    A key listed but gone by the time it is fetched (404) was deleted meanwhile: it is skipped and
    counted as `vanished`. Counters: listed, fetched, vanished, retries.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        prefix: str = "",
        concurrency: int = 16,
        policy: RetryPolicy | None = None,
        url_file: str | os.PathLike = DEFAULT_URL_FILE,
    ):
        self.prefix = prefix
        self.concurrency = max(1, concurrency)
        self.counters = Counters("listed", "fetched", "vanished", "retries")
        self._client = _Client(
            url, policy=policy, url_file=url_file, pool_size=self.concurrency, counters=self.counters
        )

    def describe(self) -> str:
        where = f", prefix {self.prefix!r}" if self.prefix else ""
        return f"Replit Database {self._client.masked} (URL from {self._client.origin}{where})"

    def _list_lines(self, prefix: str | None) -> list[str]:
        prefix = self.prefix if prefix is None else prefix
        query = urlencode({"encode": "true", "prefix": prefix})
        resp = self._client.request("GET", None, "listing keys", query=query)
        if resp.status == 404:
            raise SourceError(f"listing keys: HTTP 404 from {self._client.masked}: is this a Replit DB URL?")
        text = _text(resp)
        return [line for line in text.split("\n") if line] if text else []

    def list_keys(self, prefix: str | None = None) -> list[str]:
        """Every key starting with `prefix` (default: the source's), as the database lists them now."""
        return [unquote(line) for line in self._list_lines(prefix)]

    def list_raw_keys(self, prefix: str | None = None) -> list[bytes]:
        """The same keys as bytes, exactly as percent-encoded in the listing."""
        return [unquote_to_bytes(line) for line in self._list_lines(prefix)]

    def count_estimate(self) -> int | None:
        return len(self._list_lines(None))

    def get_raw(self, key: str | bytes, first: Miss | None = None) -> bytes | None:
        """The stored value of `key` byte for byte (the body of GET), or None when it does not exist.

        `first`: the fast reader's failed try of this key (see `_Client.request`).
        """
        resp = self._client.request("GET", key, f"reading key {key!r}", first=first)
        if resp.status == 404:
            self.counters.add("vanished")
            return None
        self.counters.add("fetched")
        return resp.data

    def get(self, key: str) -> str | None:
        """The raw stored string of `key`, or None when it does not exist."""
        return _decoded(self.get_raw(key))

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """The raw values of `keys` that exist, fetched concurrently."""
        keys = list(dict.fromkeys(keys))
        fast = self._fast()
        try:
            values = self._settle(keys, fast.submit(self._client.url, keys))
        finally:
            fast.close()
        return {k: _decoded(v) for k, v in zip(keys, values, strict=True) if v is not None}

    def iter_batches(self, batch_size: int = 500) -> Iterator[list[Item]]:
        for batch in self._iter(self.list_keys(), batch_size):
            yield [(key, _decoded(value)) for key, value in batch]

    def iter_raw_batches(self, batch_size: int = 500) -> Iterator[list[RawItem]]:
        return self._iter(self.list_raw_keys(), batch_size)

    def _fast(self) -> FastGets:
        # Imported here: aiohttp takes 85 ms of CPU to import, which only a read of a Replit store
        # (not `--help`, a dump or Redis) should pay.
        from .replit_gets import FastGets

        policy = self._client.policy
        return FastGets(
            concurrency=self.concurrency,
            connect_timeout=policy.connect_timeout,
            read_timeout=policy.read_timeout,
        )

    def _iter(self, keys: list, batch_size: int) -> Iterator[list]:
        """(key, bytes) batches; a batch's GETs are in flight while the caller works on the one before."""
        batch_size = max(1, batch_size)
        self.counters.add("listed", len(keys))
        fast = self._fast()
        try:
            chunks = (keys[i : i + batch_size] for i in range(0, len(keys), batch_size))
            pending = None
            for chunk in chunks:
                submitted = (chunk, fast.submit(self._client.url, chunk))
                if pending is not None:
                    batch = self._collect(*pending)
                    if batch:
                        yield batch
                pending = submitted
            if pending is not None:
                batch = self._collect(*pending)
                if batch:
                    yield batch
        finally:
            fast.close()

    def _collect(self, keys: list, future: Future) -> list:
        return [(k, v) for k, v in zip(keys, self._settle(keys, future), strict=True) if v is not None]

    def _settle(self, keys: list, future: Future) -> list[bytes | None]:
        """The fast reader's results, its misses read again through urllib3 (retries, token re-read)."""
        results = future.result()
        fetched = vanished = 0
        misses = []
        for i, result in enumerate(results):
            if isinstance(result, Miss):
                misses.append(i)
            elif result is None:
                vanished += 1
            else:
                fetched += 1
        self.counters.add("fetched", fetched)
        self.counters.add("vanished", vanished)
        if misses:
            workers = min(self.concurrency, len(misses))
            with ThreadPoolExecutor(workers, thread_name_prefix="replit-get") as pool:
                again = pool.map(lambda i: self.get_raw(keys[i], results[i]), misses)
                for i, value in zip(misses, again, strict=True):
                    results[i] = value
        return results

    def close(self) -> None:
        self._client.close()


def _decoded(raw: bytes | None) -> str | None:
    # The stored string is UTF-8; never guess a charset from the headers.
    return None if raw is None else raw.decode("utf-8", errors="backslashreplace")


class ReplitWriter(Writer):
    """Sets keys with bulk urlencoded POSTs (several pairs per request) and deletes them one by one.

    Values are written as given: pass raw stored strings (`codec.encode_value(record)`).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        policy: RetryPolicy | None = None,
        url_file: str | os.PathLike = DEFAULT_URL_FILE,
        max_body_bytes: int = 1_000_000,
        max_pairs: int = 500,
    ):
        self.counters = Counters("set", "deleted", "missing", "requests", "retries")
        self._client = _Client(url, policy=policy, url_file=url_file, pool_size=2, counters=self.counters)
        self.max_body_bytes = max_body_bytes
        self.max_pairs = max_pairs

    def describe(self) -> str:
        return f"Replit Database {self._client.masked} (URL from {self._client.origin})"

    def set_many(self, items: Iterable[Item]) -> int:
        written = 0
        parts: list[str] = []
        size = 0
        for key, value in items:
            key, value = _text_item(key), _text_item(value, key)
            _check_item(key, value)
            pair = f"{quote_plus(key)}={quote_plus(value)}"
            if parts and (size + len(pair) + 1 > self.max_body_bytes or len(parts) >= self.max_pairs):
                written += self._post(parts)
                parts, size = [], 0
            parts.append(pair)
            size += len(pair) + 1
        if parts:
            written += self._post(parts)
        return written

    def set(self, key: str, value: str) -> None:
        self.set_many([(key, value)])

    def check(self, key: str | bytes, value: str | bytes) -> None:
        key = _text_item(key)
        _check_item(key, _text_item(value, key))

    def _post(self, parts: list[str]) -> int:
        self.counters.add("requests")
        self._client.request(
            "POST",
            None,
            f"writing {len(parts)} keys",
            body="&".join(parts).encode("ascii"),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        self.counters.add("set", len(parts))
        return len(parts)

    def delete(self, key: str | bytes) -> bool:
        """Delete `key`; False when it did not exist (404)."""
        self.counters.add("requests")
        resp = self._client.request("DELETE", key, f"deleting key {key!r}")
        if resp.status == 404:
            self.counters.add("missing")
            return False
        self.counters.add("deleted")
        return True

    def close(self) -> None:
        self._client.close()


def _text_item(text, key=None):
    """A bytes key or value as text: the database stores UTF-8 strings, nothing else."""
    if not isinstance(text, bytes):
        return text
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError:
        what = "a key" if key is None else f"the value of {key!r}"
        raise SourceError(f"{what} is not UTF-8: the Replit Database stores text only") from None


def _check_item(key: str, value: str) -> None:
    if not isinstance(key, str) or not isinstance(value, str):
        raise SourceError("ReplitWriter writes (str key, str raw value) pairs; encode values first")
    if not key:
        raise SourceError("the Replit Database refuses an empty key")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise SourceError(f"key {key[:60]!r}... is longer than {MAX_KEY_BYTES} bytes (Replit's limit)")
    if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
        raise SourceError(f"value of {key!r} is larger than 5 MB (Replit's limit)")
