"""Draining the KV mirror's outbox: render committed state, coalesce per key, write, forget.

One drainer at a time (a PostgreSQL advisory lock). Each round takes the oldest outbox rows,
renders each of their keys once from the state committed *now* (the rows were read first, so
every change they stand for is in that state), writes the records (or deletes the keys whose
data is gone) and deletes exactly the rows it took. A change committed meanwhile has its own row
and is drained in a later round, with a newer rendering: writes of one key go to the store in
the order of the states they show. A failed write leaves the rows in place: nothing is lost
while the store is down, the outbox grows and drains when the store is back.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from cutover.mirror import FAMILY_DOMAINS
from cutover.models import KvOutbox
from fivedocks import locks
from kvmigrate.reverse import render_batch
from kvmigrate.services import remember_mirrored
from kvmigrate.sources import open_writer
from kvmigrate.sources.base import SourceError

_LOCK_ID = locks.KV_MIRROR_DRAIN  # one drainer at a time


@dataclass
class DrainStats:
    written: int = 0  # records written (after coalescing)
    deleted: int = 0  # keys deleted (their data is gone)
    changes: int = 0  # outbox rows drained
    failures: int = 0
    batches: int = 0
    errors: list[str] = field(default_factory=list)


def lag_seconds() -> float:
    """Age of the oldest undrained change (0 when the outbox is empty).

    The oldest is the first row by id (the primary key's index): the writers pay for no other
    index on the outbox.
    """
    oldest = KvOutbox.objects.order_by("id").values_list("created_at", flat=True).first()
    return max((timezone.now() - oldest).total_seconds(), 0.0) if oldest else 0.0


def render_keys(changes: dict[str, datetime]) -> list[tuple[str, str | None]]:
    """(key, raw value in the platform's encoding, or None to delete) for each changed key.

    `changes` maps each key to its latest change (moves the record's updatedAt).
    """
    by_family: dict[str, dict[int, datetime]] = {}
    for key, at in changes.items():
        family, _, ident = key.partition(":")
        by_family.setdefault(family, {})[int(ident)] = at
    rendered: dict[str, str] = {}
    for family, changed_at in by_family.items():
        users = [(user_id, None) for user_id in sorted(changed_at)]
        rendered.update(render_batch(users, FAMILY_DOMAINS[family], changed_at=changed_at))
    return [(key, rendered.get(key)) for key in changes]


def _write(writer, items: list[tuple[str, str | None]]) -> None:
    sets = [(key, value) for key, value in items if value is not None]
    if sets:
        writer.set_many(sets)
    for key, value in items:
        if value is None:
            writer.delete(key)


def drain(
    target: str,
    *,
    batch_size: int = 500,
    forever: bool = False,
    max_backoff: float = 30.0,
    idle_sleep: float = 1.0,
    stop: Callable[[], bool] = lambda: False,
    writer_options: dict | None = None,
) -> DrainStats:
    """Drain the outbox to `target` (Replit Database URL or redis://). Returns when empty unless forever."""
    stats = DrainStats()
    writer = open_writer(target, **(writer_options or {}))
    backoff = 0.5
    try:
        if not locks.try_advisory_lock(_LOCK_ID):
            raise SourceError("another kvmirror drainer is running")
        try:
            while not stop():
                rows = list(
                    KvOutbox.objects.order_by("id").values_list("id", "key", "created_at")[:batch_size]
                )
                if not rows:
                    if not forever:
                        break
                    time.sleep(idle_sleep)
                    continue
                changes: dict[str, datetime] = {}  # coalesced: each key once, first-seen order
                for _, key, at in rows:
                    changes[key] = max(at, changes.get(key, at))
                items = render_keys(changes)
                try:
                    _write(writer, items)
                except SourceError as exc:
                    stats.failures += 1
                    stats.errors.append(str(exc))
                    KvOutbox.objects.filter(pk=rows[0][0]).update(
                        attempts=F("attempts") + 1, last_error=str(exc)[:500]
                    )
                    if not forever and stats.failures >= 3:
                        break
                    time.sleep(backoff + random.uniform(0, backoff / 2))
                    backoff = min(backoff * 2, max_backoff)
                    continue
                backoff = 0.5
                with transaction.atomic():
                    KvOutbox.objects.filter(pk__in=[pk for pk, _, _ in rows]).delete()
                    remember_mirrored(items)
                stats.batches += 1
                stats.changes += len(rows)
                stats.deleted += sum(1 for _, value in items if value is None)
                stats.written += sum(1 for _, value in items if value is not None)
        finally:
            locks.advisory_unlock(_LOCK_ID)
    finally:
        writer.close()
    return stats
