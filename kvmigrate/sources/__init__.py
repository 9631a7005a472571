"""KV stores kvmigrate reads from (sources) and writes back to (writers), chosen by a spec string.

| spec | store |
|---|---|
| `None` / empty | the Replit Database at `/tmp/replitdb`'s URL, else `$REPLIT_DB_URL` |
| `http://...`, `https://...` | the Replit Database at that URL |
| `redis://...`, `rediss://...`, `unix://...` | Redis (SCAN + MGET) |
| a path, or `file://path` | a dump file (JSON object or JSON Lines, optionally .gz) |
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from .base import Counters, Item, RawItem, Source, SourceError, Writer, mask_url
from .dump import DumpSource, DumpWriter
from .redis import RedisSource, RedisWriter
from .replit import ReplitSource, ReplitWriter, RetryPolicy, resolve_url

__all__ = [
    "Counters",
    "DumpSource",
    "DumpWriter",
    "Item",
    "RawItem",
    "RedisSource",
    "RedisWriter",
    "ReplitSource",
    "ReplitWriter",
    "RetryPolicy",
    "Source",
    "SourceError",
    "Writer",
    "mask_url",
    "open_source",
    "open_writer",
    "resolve_url",
    "store_kind",
]

_REDIS_SCHEMES = ("redis", "rediss", "unix")


def _kind(spec: str | None) -> tuple[str, str | None]:
    if spec is None or not spec.strip():
        return "replit", None
    spec = spec.strip()
    scheme = urlsplit(spec).scheme.lower() if "://" in spec else ""
    if scheme in ("http", "https"):
        return "replit", spec
    if scheme in _REDIS_SCHEMES:
        return "redis", spec
    if scheme == "file":
        return "dump", unquote(urlsplit(spec).path)
    if scheme:
        raise SourceError(
            f"unsupported store {mask_url(spec)}: use an http(s):// Replit Database URL, "
            "a redis:// URL or a dump file path"
        )
    return "dump", spec


def store_kind(spec: str | None) -> str:
    """`replit`, `redis` or `dump`: what `spec` names (SourceError for an unsupported scheme)."""
    return _kind(spec)[0]


def open_source(spec: str | None, **options) -> Source:
    """The source `spec` names; `options` go to its class (e.g. prefix, concurrency, format)."""
    kind, target = _kind(spec)
    if kind == "replit":
        return ReplitSource(target, **options)
    if kind == "redis":
        return RedisSource(target, **options)
    return DumpSource(Path(target), **options)


def open_writer(spec: str | None, **options) -> Writer:
    """The writer for `spec` (a dump path is created; `.json` gives a JSON object, else JSON Lines)."""
    kind, target = _kind(spec)
    if kind == "replit":
        return ReplitWriter(target, **options)
    if kind == "redis":
        return RedisWriter(target, **options)
    return DumpWriter(Path(target), **options)
