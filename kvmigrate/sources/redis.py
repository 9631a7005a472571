"""Redis as a KV store: SCAN for keys, MGET per batch; SET/DEL through pipelines to write.

SCAN never blocks the server and walks the keyspace in pages; like the Replit DB it gives no
snapshot: a key deleted while the scan runs is skipped (counted as `vanished`), and SCAN may
return a key twice if the keyspace is resized meanwhile (the loader is idempotent, so a repeat
is harmless; repeats within one batch are dropped). Keys holding other Redis types (hashes,
lists, ...) are not KV records: skipped and counted as `not_strings`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import redis as redis_lib

from .base import Counters, Item, RawItem, Source, SourceError, Writer, mask_url

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def _text(raw: bytes, counters: Counters) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        counters.add("invalid_utf8")
        # Visible, not silently replaced: the codec then rejects the value as bad JSON.
        return raw.decode("utf-8", errors="backslashreplace")


def _connect(url: str) -> redis_lib.Redis:
    try:
        client = redis_lib.Redis.from_url(
            url, decode_responses=False, socket_timeout=30, socket_connect_timeout=5
        )
        client.ping()
    except (redis_lib.RedisError, ValueError) as exc:
        raise SourceError(f"cannot connect to Redis at {mask_url(url)}: {type(exc).__name__}") from None
    return client


class RedisSource(Source):
    """Reads every string key (optionally under `prefix`) of one Redis database."""

    def __init__(self, url: str, *, prefix: str = "", scan_count: int | None = None):
        self.url = url
        self.prefix = prefix
        self.scan_count = scan_count
        self.counters = Counters("scanned", "fetched", "vanished", "not_strings")
        self.client = _connect(url)

    def describe(self) -> str:
        where = f", prefix {self.prefix!r}" if self.prefix else ""
        return f"Redis {mask_url(self.url)}{where}"

    def count_estimate(self) -> int | None:
        """DBSIZE: every key in the database (an upper bound when a prefix is set)."""
        try:
            return int(self.client.dbsize())
        except redis_lib.RedisError:
            return None

    def _match(self) -> str | None:
        return _GLOB_SPECIAL.sub(r"\\\1", self.prefix) + "*" if self.prefix else None

    def iter_batches(self, batch_size: int = 500) -> Iterator[list[Item]]:
        for batch in self.iter_raw_batches(batch_size):
            yield [(_text(k, self.counters), _text(v, self.counters)) for k, v in batch]

    def iter_raw_batches(self, batch_size: int = 500) -> Iterator[list[RawItem]]:
        batch_size = max(1, batch_size)
        keys: list[bytes] = []
        try:
            for key in self.client.scan_iter(match=self._match(), count=self.scan_count or batch_size):
                keys.append(key)
                if len(keys) >= batch_size:
                    if batch := self._fetch(keys):
                        yield batch
                    keys = []
            if keys and (batch := self._fetch(keys)):
                yield batch
        except redis_lib.RedisError as exc:
            raise SourceError(f"reading Redis at {mask_url(self.url)}: {type(exc).__name__}: {exc}") from None

    def _fetch(self, keys: list[bytes]) -> list[RawItem]:
        keys = list(dict.fromkeys(keys))
        self.counters.add("scanned", len(keys))
        values = self.client.mget(keys)
        missing = [k for k, v in zip(keys, values, strict=True) if v is None]
        if missing:
            # MGET answers nil both for a deleted key and for a non-string one: tell them apart.
            pipe = self.client.pipeline(transaction=False)
            for k in missing:
                pipe.type(k)
            for kind in pipe.execute():
                self.counters.add("vanished" if kind in (b"none", "none") else "not_strings")
        out = [(k, v) for k, v in zip(keys, values, strict=True) if v is not None]
        self.counters.add("fetched", len(out))
        return out

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """The raw values of `keys` that exist as strings."""
        keys = list(dict.fromkeys(keys))
        if not keys:
            return {}
        values = self.client.mget([k.encode("utf-8") for k in keys])
        return {k: _text(v, self.counters) for k, v in zip(keys, values, strict=True) if v is not None}

    def close(self) -> None:
        self.client.close()


class RedisWriter(Writer):
    """SETs (and DELs) through non-transactional pipelines of `batch_size` commands."""

    def __init__(self, url: str, *, batch_size: int = 1000):
        self.url = url
        self.batch_size = max(1, batch_size)
        self.counters = Counters("set", "deleted", "missing")
        self.client = _connect(url)

    def describe(self) -> str:
        return f"Redis {mask_url(self.url)}"

    def set_many(self, items: Iterable[Item]) -> int:
        pipe = self.client.pipeline(transaction=False)
        pending = 0
        written = 0
        try:
            for key, value in items:
                pipe.set(_bytes(key), _bytes(value))
                pending += 1
                if pending >= self.batch_size:
                    pipe.execute()
                    written += pending
                    pending = 0
            if pending:
                pipe.execute()
                written += pending
        except redis_lib.RedisError as exc:
            raise SourceError(f"writing Redis at {mask_url(self.url)}: {type(exc).__name__}: {exc}") from None
        self.counters.add("set", written)
        return written

    def delete(self, key: str | bytes) -> bool:
        """Delete `key`; False when it did not exist."""
        try:
            deleted = bool(self.client.delete(_bytes(key)))
        except redis_lib.RedisError as exc:
            raise SourceError(f"writing Redis at {mask_url(self.url)}: {type(exc).__name__}: {exc}") from None
        self.counters.add("deleted" if deleted else "missing")
        return deleted

    def close(self) -> None:
        self.client.close()


def _bytes(text: str | bytes) -> bytes:
    if isinstance(text, bytes):
        return text
    if isinstance(text, str):
        return text.encode("utf-8")
    raise SourceError("RedisWriter writes (key, raw value) pairs of str or bytes; encode values first")
