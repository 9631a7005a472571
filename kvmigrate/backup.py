"""Verbatim backups of a KV store, and putting one back (`manage.py kvbackup`, `manage.py kvrestore`).

`kvmigrate --reverse` renders PostgreSQL in the KV layout: not a backup of the store as it was
(other features' keys and quarantined records are not in PostgreSQL). A backup here is every key
of the store with its value byte for byte, in kvmigrate's JSON Lines dump format (so kvmigrate
can read it as a source), `key_b64`/`value_b64` for bytes that are not UTF-8, and a closing line:

    {"kvbackup": 1, "count": N, "sha256": "...", "source": "...", "created_at": "..."}

The checksum covers the content, not the file or the order the store listed it in: SHA-256 over
the per-record digests `sha256(len(key) || key || len(value) || value)` (lengths as 8-byte
big-endian integers) taken in the byte order of the keys. Two backups of equal stores have the
same checksum, whatever store they came from.

Reading and writing stores is kvmigrate.sources' job (raw reads, the Replit/Redis writers, the
dump writer): this module only streams, checks and compares.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .sources import DumpSource, DumpWriter, RawItem, Source, SourceError, Writer, store_kind
from .sources.dump import CLOSING

FORMAT_VERSION = 1
Progress = Callable[[int], None]


class BackupError(Exception):
    """A backup cannot be taken, trusted or restored; the message is safe to print."""


def record_digest(key: bytes, value: bytes) -> bytes:
    h = hashlib.sha256()
    h.update(len(key).to_bytes(8, "big"))
    h.update(key)
    h.update(len(value).to_bytes(8, "big"))
    h.update(value)
    return h.digest()


class Checksum:
    """The content checksum of a set of records, fed in any order (keys + 32-byte digests in memory)."""

    def __init__(self) -> None:
        self.digests: dict[bytes, bytes] = {}

    def add(self, key: bytes, value: bytes) -> bool:
        """Count a record; False (and ignored) when the key was already seen."""
        if key in self.digests:
            return False
        self.digests[key] = record_digest(key, value)
        return True

    def __len__(self) -> int:
        return len(self.digests)

    def hexdigest(self) -> str:
        h = hashlib.sha256()
        for key in sorted(self.digests):
            h.update(self.digests[key])
        return h.hexdigest()


def show_key(key: bytes) -> str:
    """A key printable on one line: JSON-quoted, newlines and undecodable bytes escaped."""
    import json

    return json.dumps(key.decode("utf-8", errors="backslashreplace"), ensure_ascii=False)


@dataclass
class Summary:
    count: int
    sha256: str
    closing: dict = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # the source's counters worth a warning


def checksum_of(source: Source, *, batch_size: int = 500, progress: Progress | None = None) -> Checksum:
    """The checksum of everything `source` holds now (raw bytes)."""
    checksum = Checksum()
    for batch in source.iter_raw_batches(batch_size):
        for key, value in batch:
            checksum.add(key, value)
        if progress:
            progress(len(batch))
    return checksum


def take_backup(
    source: Source, out: str | os.PathLike, *, batch_size: int = 500, progress: Progress | None = None
) -> Summary:
    """Stream every record of `source` into a new backup file `out` (gzip when it ends in .gz).

    The file appears complete, closing line included, or not at all (DumpWriter writes next to it
    and renames). A key the store lists twice (Redis SCAN may) is written once.
    """
    out = Path(out)
    if out.exists():
        raise BackupError(f"{out} exists: a backup never overwrites a file (choose another name)")
    try:
        writer = DumpWriter(out, format="jsonl")
    except SourceError as exc:
        raise BackupError(str(exc)) from None
    checksum = Checksum()
    try:
        for batch in source.iter_raw_batches(batch_size):
            writer.set_many([(k, v) for k, v in batch if checksum.add(k, v)])
            if progress:
                progress(len(batch))
        closing = {
            CLOSING: FORMAT_VERSION,
            "count": len(checksum),
            "sha256": checksum.hexdigest(),
            "source": source.describe(),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        writer.write_closing(closing)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    counters = source.counters.snapshot()
    skipped = {name: counters[name] for name in ("vanished", "not_strings") if counters.get(name)}
    return Summary(count=closing["count"], sha256=closing["sha256"], closing=closing, skipped=skipped)


def _open_backup(path: str | os.PathLike) -> DumpSource:
    try:
        return DumpSource(path, format="jsonl")
    except SourceError as exc:
        raise BackupError(str(exc)) from None


def iter_backup(path: str | os.PathLike, *, batch_size: int = 500) -> Iterator[list[RawItem]]:
    """The records of a backup, as bytes, in batches."""
    source = _open_backup(path)
    try:
        yield from source.iter_raw_batches(batch_size)
    except SourceError as exc:
        raise BackupError(str(exc)) from None


@dataclass
class Verified:
    """A backup whose content matched its closing line."""

    count: int
    sha256: str
    closing: dict
    digests: dict[bytes, bytes]


def verify_backup(
    path: str | os.PathLike,
    *,
    check: Callable[[bytes, bytes], None] | None = None,
    progress: Progress | None = None,
) -> Verified:
    """Read the whole backup and compare it with its closing line; BackupError when they differ.

    `check(key, value)` may refuse a record (e.g. the target's limits) before anything is written.
    """
    source = _open_backup(path)
    checksum = Checksum()
    duplicates = 0
    try:
        for batch in source.iter_raw_batches(500):
            for key, value in batch:
                if check:
                    check(key, value)
                duplicates += not checksum.add(key, value)
            if progress:
                progress(len(batch))
    except SourceError as exc:
        raise BackupError(f"{path}: {exc}") from None
    closing = source.closing
    if not isinstance(closing, dict) or closing.get(CLOSING) != FORMAT_VERSION:
        raise BackupError(
            f"{path} has no kvbackup closing line: an incomplete backup or not one (nothing written)"
        )
    actual = checksum.hexdigest()
    if duplicates or closing.get("count") != len(checksum) or closing.get("sha256") != actual:
        raise BackupError(
            f"{path} does not match its closing line (records {len(checksum)} vs {closing.get('count')}, "
            f"sha256 {actual[:12]}… vs {str(closing.get('sha256'))[:12]}…): "
            "corrupt or edited, nothing written"
        )
    return Verified(count=len(checksum), sha256=actual, closing=closing, digests=checksum.digests)


@dataclass
class Plan:
    """What a restore changes: keys to write (missing or different) and to delete (not in the backup)."""

    writes: list[bytes]
    deletes: list[bytes]
    unchanged: int
    target_count: int
    other_types: int = 0  # Redis keys holding hashes, lists...: not KV records, left alone

    @property
    def target_empty(self) -> bool:
        return not (self.target_count or self.other_types)


def plan_restore(backup: Verified, target: Source, *, progress: Progress | None = None) -> Plan:
    current = checksum_of(target, progress=progress).digests
    writes = sorted(k for k, digest in backup.digests.items() if current.get(k) != digest)
    deletes = sorted(k for k in current if k not in backup.digests)
    return Plan(
        writes=writes,
        deletes=deletes,
        unchanged=len(backup.digests) - len(writes),
        target_count=len(current),
        other_types=target.counters["not_strings"],
    )


def apply_plan(
    path: str | os.PathLike,
    plan: Plan,
    writer: Writer,
    *,
    batch_size: int = 500,
    progress: Progress | None = None,
) -> None:
    """Write the plan's keys from the backup (streamed again), then delete the others."""
    wanted = set(plan.writes)
    try:
        for batch in iter_backup(path, batch_size=batch_size):
            items = [(k, v) for k, v in batch if k in wanted]
            if items:
                writer.set_many(items)
            if progress:
                progress(len(items))
        for key in plan.deletes:
            writer.delete(key)
            if progress:
                progress(1)
    except SourceError as exc:
        raise BackupError(str(exc)) from None


def check_restore_target(spec: str | None) -> None:
    if store_kind(spec) == "dump":
        raise BackupError(
            "restore into a Replit Database (http(s):// URL) or Redis (redis:// URL); "
            "a backup file is already a dump: copy it"
        )
