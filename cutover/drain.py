"""Draining the KV mirror's outbox to the KV store, in order, with retries and backoff.

One drainer at a time (a PostgreSQL advisory lock), so the order of rows is the order of
writes to the store. A failed write leaves the rows in place: nothing is lost while the store
is down, the outbox grows and drains when the store is back.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connections, transaction
from django.db.models import F, Min
from django.utils import timezone

from cutover.models import KvOutbox
from kvmigrate.sources import open_writer
from kvmigrate.sources.base import SourceError

_LOCK_ID = 0x6B766D69  # "kvmi": one drainer at a time


@dataclass
class DrainStats:
    written: int = 0
    deleted: int = 0
    failures: int = 0
    batches: int = 0
    errors: list[str] = field(default_factory=list)


def lag_seconds() -> float:
    """Age of the oldest undrained change (0 when the outbox is empty)."""
    oldest = KvOutbox.objects.aggregate(oldest=Min("created_at"))["oldest"]
    return (timezone.now() - oldest).total_seconds() if oldest else 0.0


def _write(writer, rows: list[KvOutbox]) -> None:
    """Write rows in order: runs of sets go together, deletes one by one between them."""
    run: list[tuple[str, str]] = []
    for row in rows:
        if row.value is None:
            if run:
                writer.set_many(run)
                run = []
            writer.delete(row.key)
        else:
            run.append((row.key, row.value))
    if run:
        writer.set_many(run)


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
        # A session lock: on the direct connection to the primary (DATABASE_DIRECT_URL) when the
        # default one goes through PgBouncer in transaction mode, where a session is not kept.
        lock_connection = connections[settings.DIRECT_DATABASE_ALIAS]
        with lock_connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [_LOCK_ID])
            if not cursor.fetchone()[0]:
                raise SourceError("another kvmirror drainer is running")
        try:
            while not stop():
                rows = list(KvOutbox.objects.order_by("id")[:batch_size])
                if not rows:
                    if not forever:
                        break
                    time.sleep(idle_sleep)
                    continue
                try:
                    _write(writer, rows)
                except SourceError as exc:
                    stats.failures += 1
                    stats.errors.append(str(exc))
                    KvOutbox.objects.filter(pk=rows[0].pk).update(
                        attempts=F("attempts") + 1, last_error=str(exc)[:500]
                    )
                    if not forever and stats.failures >= 3:
                        break
                    time.sleep(backoff + random.uniform(0, backoff / 2))
                    backoff = min(backoff * 2, max_backoff)
                    continue
                backoff = 0.5
                with transaction.atomic():
                    KvOutbox.objects.filter(pk__lte=rows[-1].pk, pk__in=[r.pk for r in rows]).delete()
                stats.batches += 1
                stats.deleted += sum(1 for r in rows if r.value is None)
                stats.written += sum(1 for r in rows if r.value is not None)
        finally:
            with lock_connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [_LOCK_ID])
    finally:
        writer.close()
    return stats
