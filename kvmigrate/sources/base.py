"""What every source and writer offers, and the errors they raise."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit, urlunsplit

Item = tuple[str, str]  # (key, raw stored string)
RawItem = tuple[bytes, bytes]  # (key, value) exactly as the store holds them: for verbatim backups


class SourceError(Exception):
    """A store could not be read or written; the message is safe to print (no secret in it)."""


class Counters:
    """Thread-safe named counters (listed, fetched, vanished, retries, ...) a run can report."""

    def __init__(self, *names: str):
        self._lock = threading.Lock()
        self._values: dict[str, int] = dict.fromkeys(names, 0)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] = self._values.get(name, 0) + n

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._values.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


class Source(ABC):
    """Yields the store's records in batches, streaming: never the whole store in memory."""

    counters: Counters

    @abstractmethod
    def iter_batches(self, batch_size: int = 500) -> Iterator[list[Item]]:
        """Batches of at most `batch_size` (key, raw value) pairs; each key at most once per batch."""

    def iter_raw_batches(self, batch_size: int = 500) -> Iterator[list[RawItem]]:
        """Like `iter_batches`, but keys and values as the store's bytes, never decoded or replaced.

        `iter_batches` turns bytes that are not UTF-8 into visible escapes (the codec then
        quarantines the value); a verbatim backup (`kvbackup`) must keep them as they are.
        """
        raise SourceError(f"{self.describe()} cannot be read byte for byte")

    def count_estimate(self) -> int | None:
        """Roughly how many records `iter_batches` will yield, when that is cheap to know."""
        return None

    @abstractmethod
    def describe(self) -> str:
        """A one-line description safe to print and record (secrets masked)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and files."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


class Writer(ABC):
    """Writes raw stored strings (already encoded, see `codec.encode_value`) to a store.

    Keys and values may also be bytes (a verbatim restore, `kvrestore`): written as they are
    where the store can hold them.
    """

    @abstractmethod
    def set_many(self, items: Iterable[Item]) -> int:
        """Store every (key, raw value) pair; returns how many were written."""

    def check(self, key: str | bytes, value: str | bytes) -> None:  # noqa: B027 - optional hook
        """SourceError when the store cannot hold this pair (checked before a restore writes anything)."""

    @abstractmethod
    def describe(self) -> str:
        """A one-line description safe to print and record (secrets masked)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


def mask_url(url: str) -> str:
    """`url` with its secrets masked: the password, the query, and every path segment but a
    leading version segment (`/v0/<token>` -> `/v0/***`), since Replit puts its token in the path."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.hostname or ""
    if ":" in netloc:  # IPv6 literal
        netloc = f"[{netloc}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port:
        netloc = f"{netloc}:{port}"
    if parts.username:
        netloc = f"{parts.username}{':***' if parts.password else ''}@{netloc}"
    elif parts.password:
        netloc = f":***@{netloc}"
    segments = [s for s in parts.path.split("/") if s]
    if parts.scheme in ("redis", "rediss", "unix"):
        path = parts.path  # a database number, not a secret
    elif not segments:
        path = ""
    else:
        kept = [segments[0]] if _is_version(segments[0]) else []
        path = "/" + "/".join([*kept, "***"])
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def _is_version(segment: str) -> bool:
    return len(segment) <= 3 and segment[:1] == "v" and segment[1:].isdigit()
