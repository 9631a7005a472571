"""Load: one batch of (key, raw value) pairs -> PostgreSQL, in one transaction, idempotently.

Decide, then apply. Per batch, whatever its size: one query for the fingerprints of its keys (an
unchanged record is counted and skipped before any decoding; `lookup.previous_runs`), one for what
PostgreSQL holds for the batch's users (`lookup.fetch_state`: the owning apps' selectors, one
round trip); then a pure `plan.decide` says what each domain writes and `apply.apply` writes it
through each domain's load service, one bulk statement per table.

A record that cannot move is quarantined (key, raw value, reason) in the same transaction, and
the run goes on. If the database still refuses the batch (a constraint nobody foresaw), the batch
is replayed one record at a time, each in its own savepoint, and the records it refuses are
quarantined with the database's message: one bad record never holds back the others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import DatabaseError, transaction
from django.utils import timezone

from fivedocks import changes
from fivedocks.domains import DOMAINS

from . import lookup
from .apply import apply
from .models import MigrationRun
from .plan import decide, refuse_whole
from .records import (
    Record,
    Refusal,
    classify,
    fingerprint,
    forgetting_previous,
    holds_secrets,
)
from .report import Counts

logger = logging.getLogger(__name__)

ALL_DOMAINS = DOMAINS

__all__ = ["ALL_DOMAINS", "Context", "Prepared", "fingerprint", "load_prepared", "prepare_batch"]


@dataclass
class Context:
    only: frozenset[str] = frozenset(ALL_DOMAINS)
    run: MigrationRun | None = None

    @property
    def run_id(self) -> int | None:
        return self.run.pk if self.run is not None else None


@dataclass
class Prepared:
    """A batch made ready for loading: records classified, fingerprinted and (maybe) transformed.

    `recs` is replaced by the records as the load looked them up (`todo`: what it moved).
    """

    recs: list[Record]
    counts: Counts  # keys of other prefixes, records of domains not asked for


def prepare_batch(items: Iterable[tuple[str, str]], ctx: Context, *, look_up: bool = False) -> Prepared:
    """The work a batch needs before its transaction.

    With `look_up`, the fingerprints are fetched (on this thread's own connection) and the
    records that changed are decoded, transformed and serialized: `services` does this for
    batch n+1 in a second thread while batch n is written. Without, that happens in `load_prepared`.
    """
    counts = Counts()
    records = classify(items, ctx.only, counts, look_up=lookup.previous_runs if look_up else None)
    return Prepared(records, counts)


def load_prepared(prepared: Prepared, ctx: Context) -> Counts:
    """Move one prepared batch in one transaction (a savepoint when the caller has one open).

    Exempt from the write freeze: the runbook's last delta run moves the store while frozen.
    """
    with changes.freeze_exempt():
        return _load_prepared(prepared, ctx)


def _load_prepared(prepared: Prepared, ctx: Context) -> Counts:
    counts = prepared.counts
    if not prepared.recs:
        return counts
    try:
        with transaction.atomic():
            looked_up, batch = _process(prepared.recs, ctx)
        prepared.recs = looked_up
        counts.merge(batch)
        return counts
    except DatabaseError as exc:
        logger.warning("kvmigrate: a batch was refused (%s); replaying it one record at a time", exc)
    replayed = []
    with transaction.atomic():
        for record in prepared.recs:
            record = forgetting_previous(record)
            try:
                with transaction.atomic():
                    (record,), batch = _process([record], ctx)
            except DatabaseError as exc:
                # PostgreSQL's message may quote a value: never for a record that carries tokens.
                shown = type(exc).__name__ if holds_secrets(record.prefix) else str(exc).strip()[:500]
                plan = refuse_whole(record, Refusal("db_error", f"PostgreSQL refused the record: {shown}"))
                apply(plan, run_id=ctx.run_id)
                batch = plan.counts
            replayed.append(record)
            counts.merge(batch)
    prepared.recs = replayed
    return counts


def _process(records: list[Record], ctx: Context) -> tuple[list[Record], Counts]:
    """Look up (and transform) what is not yet, decide, apply: one batch's writes."""
    if not all(r.looked_up for r in records):
        records = lookup.look_up(records)
    plan = decide(records, lookup.fetch_state(records), now=timezone.now())
    apply(plan, run_id=ctx.run_id)
    return records, plan.counts
