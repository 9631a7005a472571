"""The Replit Database over HTTP: read (list + concurrent batched GETs) and write (bulk POST, DELETE).

The URL embeds a secret token and rotates: it comes from the argument, else `/tmp/replitdb`, else
`REPLIT_DB_URL`; it is never printed (`describe()` and every error mask it), and a 401/403 makes
the client re-read where it came from once before giving up.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote, unquote_to_bytes

import requests
from requests.adapters import HTTPAdapter

from .base import Counters, Item, RawItem, Source, SourceError, Writer, mask_url

DEFAULT_URL_FILE = "/tmp/replitdb"  # where Replit itself writes the current URL  # noqa: S108
URL_ENV = "REPLIT_DB_URL"
MAX_KEY_BYTES = 1_000
MAX_VALUE_BYTES = 5 * 1024 * 1024


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
    """Exponential backoff with jitter on 429, 5xx, timeouts and connection errors."""

    tries: int = 6
    backoff: float = 0.25  # first delay, seconds; doubles each try
    max_backoff: float = 8.0
    connect_timeout: float = 5.0
    read_timeout: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed try number `attempt` (1-based): half fixed, half random."""
        base = min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))
        wait = base / 2 + random.uniform(0, base / 2)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_backoff))
        return wait


class _Client:
    """One HTTP session to the database, with the retry loop both the reader and writer use."""

    def __init__(self, url: str | None, *, policy: RetryPolicy | None, url_file, pool_size: int, counters):
        self._given = url
        self._url_file = url_file
        self.url, self.origin = resolve_url(url, url_file=url_file)
        self.url = self.url.rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise SourceError(f"the Replit Database URL must be http(s)://, got {mask_url(self.url)}")
        self.policy = policy or RetryPolicy()
        self.counters = counters
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(pool_size, 1), max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._url_lock = threading.Lock()

    @property
    def masked(self) -> str:
        return mask_url(self.url)

    def key_url(self, key: str) -> str:
        return f"{self.url}/{quote(key, safe='')}"

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

    def request(self, method: str, key: str | None, what: str, **kwargs) -> requests.Response:
        """The response (2xx/3xx or 404) after retries; SourceError when it cannot get one."""
        policy = self.policy
        last = ""
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            used = self.url
            url = used if key is None else f"{used}/{quote(key, safe='')}"
            retry_after = None
            try:
                resp = self.session.request(
                    method, url, timeout=(policy.connect_timeout, policy.read_timeout), **kwargs
                )
            except requests.Timeout:
                last = "timed out"
            except requests.ConnectionError:
                last = "connection failed"
            except requests.RequestException as exc:  # never str(exc): it holds the URL
                raise SourceError(f"{what}: {type(exc).__name__} at {self.masked}") from None
            else:
                status = resp.status_code
                if status < 400 or status == 404:
                    return resp
                if status in (401, 403):
                    if not refreshed and self._refresh_url(used):
                        refreshed = True
                        attempt -= 1
                        continue
                    raise SourceError(
                        f"{what}: the database refused the URL (HTTP {status}) at {self.masked}; "
                        f"its token may have rotated (read from {self.origin})"
                    )
                if status == 429 or status >= 500:
                    last = f"HTTP {status}"
                    retry_after = _retry_after(resp)
                else:
                    detail = resp.text[:200].strip()
                    raise SourceError(
                        f"{what}: unexpected HTTP {status} from {self.masked}"
                        + (f": {detail}" if detail else "")
                    )
            if attempt >= policy.tries:
                raise SourceError(f"{what}: gave up after {policy.tries} tries ({last}) at {self.masked}")
            self.counters.add("retries")
            time.sleep(policy.delay(attempt, retry_after))

    def close(self) -> None:
        self.session.close()


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _body_text(resp: requests.Response) -> str:
    # The stored string is UTF-8; never trust requests' charset guess (ISO-8859-1 for text/*).
    return resp.content.decode("utf-8", errors="backslashreplace")


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
        resp = self._client.request("GET", None, "listing keys", params={"encode": "true", "prefix": prefix})
        if resp.status_code == 404:
            raise SourceError(f"listing keys: HTTP 404 from {self._client.masked}: is this a Replit DB URL?")
        text = _body_text(resp)
        return [line for line in text.split("\n") if line] if text else []

    def list_keys(self, prefix: str | None = None) -> list[str]:
        """Every key starting with `prefix` (default: the source's), as the database lists them now."""
        return [unquote(line) for line in self._list_lines(prefix)]

    def list_raw_keys(self, prefix: str | None = None) -> list[bytes]:
        """The same keys as bytes, exactly as percent-encoded in the listing."""
        return [unquote_to_bytes(line) for line in self._list_lines(prefix)]

    def count_estimate(self) -> int | None:
        return len(self._list_lines(None))

    def get_raw(self, key: str | bytes) -> bytes | None:
        """The stored value of `key` byte for byte (the body of GET), or None when it does not exist."""
        resp = self._client.request("GET", key, f"reading key {key!r}")
        if resp.status_code == 404:
            self.counters.add("vanished")
            return None
        self.counters.add("fetched")
        return resp.content

    def get(self, key: str) -> str | None:
        """The raw stored string of `key`, or None when it does not exist."""
        raw = self.get_raw(key)
        # The stored string is UTF-8; never trust requests' charset guess (ISO-8859-1 for text/*).
        return None if raw is None else raw.decode("utf-8", errors="backslashreplace")

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """The raw values of `keys` that exist, fetched concurrently."""
        keys = list(dict.fromkeys(keys))
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="replit-get") as pool:
            values = list(pool.map(self.get, keys))
        return {k: v for k, v in zip(keys, values, strict=True) if v is not None}

    def iter_batches(self, batch_size: int = 500) -> Iterator[list[Item]]:
        return self._iter(self.list_keys(), self.get, batch_size)

    def iter_raw_batches(self, batch_size: int = 500) -> Iterator[list[RawItem]]:
        return self._iter(self.list_raw_keys(), self.get_raw, batch_size)

    def _iter(self, keys: list, fetch, batch_size: int) -> Iterator[list]:
        batch_size = max(1, batch_size)
        self.counters.add("listed", len(keys))
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="replit-get")
        try:
            chunks = (keys[i : i + batch_size] for i in range(0, len(keys), batch_size))
            pending = None
            # One batch is fetched ahead while the caller works on the previous one.
            for chunk in chunks:
                submitted = [(k, pool.submit(fetch, k)) for k in chunk]
                if pending is not None:
                    batch = _collect(pending)
                    if batch:
                        yield batch
                pending = submitted
            if pending is not None:
                batch = _collect(pending)
                if batch:
                    yield batch
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        self._client.close()


def _collect(pending: list[tuple[str, Future]]) -> list[Item]:
    return [(k, v) for k, f in pending if (v := f.result()) is not None]


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
            data="&".join(parts).encode("ascii"),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        self.counters.add("set", len(parts))
        return len(parts)

    def delete(self, key: str | bytes) -> bool:
        """Delete `key`; False when it did not exist (404)."""
        self.counters.add("requests")
        resp = self._client.request("DELETE", key, f"deleting key {key!r}")
        if resp.status_code == 404:
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
