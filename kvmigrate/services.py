"""A kvmigrate run: users first, then load + verify (or verify only, or reverse), recorded.

One run at a time (a PostgreSQL advisory lock); each batch is its own transaction, so a run
killed part-way leaves whole batches and the next run completes it (unchanged records are
skipped by their fingerprint). A dry run does all the work inside one transaction that is
rolled back at the end: it writes nothing, not even its run row, and moves no sequence.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, reset_queries, transaction
from django.utils import timezone

from accounts import services as account_services
from fivedocks import locks

from . import report, users
from .apply import TARGET_TABLES
from .load import ALL_DOMAINS, Context, Prepared, fingerprint, load_prepared, prepare_batch
from .models import MigratedRecord, MigrationRun
from .report import EXAMPLES_MAX, Counts
from .sources import SourceError, open_source, open_writer, store_kind
from .sources.snapshot import Snapshot
from .transforms import FAMILIES
from .verify import prepare_verify, verify_prepared

logger = logging.getLogger(__name__)

LOCK_ID = locks.KVMIGRATE_RUN  # one kvmigrate run at a time per database (the KV drainer has its own)
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ATTENTION = 0, 1, 2, 3
# Requests in flight to a Replit Database (one keep-alive connection each). A GET costs this client
# about 40 us of CPU, so the network's latency is the bound: 5,000 keys wait keys x latency /
# concurrency, 0.8 s at 10 ms over 64 connections (1.6 s over 32). A database that finds it too
# much answers 429, and is backed off from (RetryPolicy).
DEFAULT_CONCURRENCY = 64


class UsageError(Exception):
    """Bad arguments, or a store/export that cannot be opened: exit code 2."""


class RunFailed(Exception):
    """The run could not go on: exit code 1."""


@dataclass
class Options:
    source: str | None = None
    only: frozenset[str] = frozenset(ALL_DOMAINS)
    dry_run: bool = False
    batch_size: int = 2000
    verify_only: bool = False
    reverse: bool = False
    target: str | None = None
    report: str | None = None
    users_from: str | None = None
    users_table: str = users.DEFAULT_TABLE
    users_columns: tuple[str, ...] = users.DEFAULT_COLUMNS
    progress: bool = False
    concurrency: int = DEFAULT_CONCURRENCY  # requests in flight to a Replit Database

    @property
    def mode(self) -> str:
        if self.reverse:
            return MigrationRun.Mode.REVERSE
        return MigrationRun.Mode.VERIFY if self.verify_only else MigrationRun.Mode.MIGRATE

    def recorded(self) -> dict[str, Any]:
        """The options as the run row records them (secrets masked)."""
        return {
            "only": sorted(self.only),
            "dry_run": self.dry_run,
            "batch_size": self.batch_size,
            "verify_only": self.verify_only,
            "reverse": self.reverse,
            "target": _describe_target(self.target) if self.target else None,
            "users_from": users.describe(self.users_from) if self.users_from else None,
            "users_table": self.users_table,
            "users_columns": list(self.users_columns),
            "report": self.report,
            "concurrency": self.concurrency,
        }


@dataclass
class Result:
    exit_code: int
    counts: Counts
    report: dict[str, Any]
    run: MigrationRun | None = None
    messages: list[str] = field(default_factory=list)


def _describe_target(spec: str) -> str:
    from .sources import mask_url

    return mask_url(spec) if "://" in spec else spec


class _Progress:
    """A tqdm bar per (phase, domain) on a terminal; nothing otherwise."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bars: dict[tuple[str, str], Any] = {}

    def update(self, phase: str, counts: Counts) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        for domain, counter in counts.as_dict().items():
            bar = self.bars.get((phase, domain))
            if bar is None:
                bar = tqdm(desc=f"{phase:>7} {domain:<13}", unit=" rec", position=len(self.bars), leave=True)
                self.bars[(phase, domain)] = bar
            bar.update(counter["read"])

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def execute(options: Options) -> Result:
    """Run kvmigrate with `options`; never raises for bad data (quarantined), only for usage/failure."""
    _check_options(options)
    if options.users_from:
        _check_users_source(options)
    source_desc = _source_description(options)
    counts = Counts()
    progress = _Progress(options.progress)
    run: MigrationRun | None = None
    if not locks.try_advisory_lock(LOCK_ID):
        raise RunFailed("another kvmigrate run holds the lock on this database; try again when it ends")
    # A batch's commit need not wait for its WAL flush: a server crash could lose the last
    # few committed batches, and their fingerprints with them (same transactions), so the
    # next run simply moves them again. A session setting: not through PgBouncer, where it
    # would stay on a server connection that other clients then use.
    session_settings = not settings.DATABASE_PGBOUNCER
    if session_settings:
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO off")
    try:
        if not options.dry_run:
            MigrationRun.objects.filter(status=MigrationRun.Status.RUNNING).update(
                status=MigrationRun.Status.INTERRUPTED, finished_at=timezone.now()
            )
            run = MigrationRun.objects.create(
                mode=options.mode, source=source_desc, options=options.recorded(), pid=os.getpid()
            )
        ctx = Context(only=options.only, run=run)
        try:
            if options.dry_run:
                with transaction.atomic():
                    _stages(options, ctx, counts, progress, run)
                    transaction.set_rollback(True)
            else:
                _stages(options, ctx, counts, progress, run)
        except BaseException as exc:
            progress.close()
            if run is not None:
                interrupted = isinstance(exc, KeyboardInterrupt)
                run.status = MigrationRun.Status.INTERRUPTED if interrupted else MigrationRun.Status.FAILED
                run.error = f"{type(exc).__name__}: {exc}"[:2000]
                run.finished_at = timezone.now()
                run.counts = counts.as_dict()
                run.save(update_fields=["status", "error", "finished_at", "counts"])
            raise
        progress.close()
        exit_code = EXIT_ATTENTION if counts.needs_attention else EXIT_OK
        finished = timezone.now()
        if run is not None:
            run.status = MigrationRun.Status.ATTENTION if exit_code else MigrationRun.Status.SUCCEEDED
            run.finished_at = finished
            run.counts = counts.as_dict()
            run.save(update_fields=["status", "finished_at", "counts"])
        data = report.build(
            counts,
            run=run.pk if run else None,
            mode=options.mode,
            dry_run=options.dry_run,
            source=source_desc,
            options=options.recorded(),
            status=run.status if run else ("dry-run" if not exit_code else "dry-run, attention"),
            exit_code=exit_code,
            finished_at=finished.isoformat(),
        )
        if options.report:
            report.write(options.report, data)
        return Result(exit_code=exit_code, counts=counts, report=data, run=run)
    finally:
        if session_settings:
            with connection.cursor() as cursor:
                cursor.execute("RESET synchronous_commit")
        locks.advisory_unlock(LOCK_ID)


_END = object()


def ahead(prepare: Callable[[Any], Any], items: Any, depth: int = 1):
    """`prepare(item)` for each item, computed in a second thread up to `depth` items ahead.

    The reading and the pure work (decoding, transforming, serializing, encrypting) of the next
    batch overlap the database's work on the current one. An exception in the thread is raised
    here; leaving the loop early stops the thread.
    """
    results: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(value) -> bool:
        while not stop.is_set():
            try:
                results.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        from django.db import connection as thread_connection

        try:
            for item in items:
                if not put(prepare(item)):
                    return
            put(_END)
        except BaseException as exc:
            put(exc)
        finally:
            thread_connection.close()  # this thread's own connection, if it opened one

    thread = threading.Thread(target=work, name="kvmigrate-prepare", daemon=True)
    thread.start()
    try:
        while True:
            value = results.get()
            if value is _END:
                return
            if isinstance(value, BaseException):
                raise value
            yield value
    finally:
        stop.set()
        thread.join(timeout=30)


def _check_options(options: Options) -> None:
    unknown = options.only - set(ALL_DOMAINS)
    if unknown or not options.only:
        raise UsageError(
            f"--only takes domains among {', '.join(ALL_DOMAINS)} (got {', '.join(sorted(unknown))})"
        )
    if options.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if not 1 <= options.concurrency <= 256:
        raise UsageError("--concurrency takes 1 to 256 requests in flight")
    if options.reverse and not options.target:
        raise UsageError("--reverse needs --target URL|PATH (where to write the records)")
    if options.target and not options.reverse:
        raise UsageError("--target is only used with --reverse")
    if options.reverse and options.verify_only:
        raise UsageError("--reverse and --verify-only do not go together")
    if len(options.users_columns) != 4:
        raise UsageError("--users-columns takes four names: id,email,username,created_at")


def _check_users_source(options: Options) -> None:
    batches = users.iter_batches(
        options.users_from, table=options.users_table, columns=options.users_columns, batch_size=1
    )
    try:
        next(batches, None)
    except SourceError as exc:
        raise UsageError(str(exc)) from None
    finally:
        batches.close()


def _source_description(options: Options) -> str:
    if options.reverse:
        return _describe_target(options.target)
    try:
        with _open(options) as source:
            _probe(source)
            return source.describe()
    except SourceError as exc:
        raise UsageError(str(exc)) from None


def _probe(source) -> None:
    """Fail early (exit 2) when the store does not answer, rather than once the run is under way."""
    from .sources import RedisSource, ReplitSource

    if isinstance(source, ReplitSource):
        source.list_keys(prefix="\u2603kvmigrate-probe\u2603")  # lists nothing, proves the URL answers
    elif isinstance(source, RedisSource):
        try:
            source.client.ping()
        except Exception as exc:  # redis' own errors: connection refused, auth, ...
            raise SourceError(f"{source.describe()} does not answer: {type(exc).__name__}") from None


def _stages(options: Options, ctx: Context, counts: Counts, progress: _Progress, run) -> None:
    if options.users_from:
        _import_users(options, ctx, counts, progress, run)
    if options.reverse:
        _reverse(options, counts, progress, run)
        return
    verify = (prepare_verify, verify_prepared)
    if options.verify_only:
        _pass("verify", verify, options, ctx, counts, progress, run)
        return
    # The thread preparing the next batch looks fingerprints up on its own connection: it sees
    # committed rows only, so not inside a transaction still open (a dry run, a test's).
    look_up = not connection.in_atomic_block
    load = (functools.partial(prepare_batch, look_up=look_up), load_prepared)
    seen: set[int] = set()
    # A delta run verifies what it moves. Everything else was verified, unchanged since, by an
    # earlier run that finished its verify pass with nothing mismatched; when that is not so (the
    # first run, one killed before verifying, one that found mismatches) every record is verified.
    moved: set[int] | None = set() if _verified_before(ctx.run) else None
    # Over the network (a Replit Database) verify replays what the load read rather than reading
    # every key again: it proves PostgreSQL holds the records as the load read them. Changes made
    # to the store after that read are the next delta run's (the runbook's last one runs frozen).
    with Snapshot() if store_kind(options.source) == "replit" else contextlib.nullcontext() as snapshot:
        # Verify's decoding and transforms of a batch run during the load, while the next batch is
        # on the network (EarlyVerify); to know what the load moves, it needs the fingerprints
        # looked up in that thread.
        early = None
        if snapshot is not None and (moved is None or look_up):
            early = EarlyVerify(ctx, everything=moved is None)
            load = (early.load_step(load[0]), load[1])
        _pass("load", load, options, ctx, counts, progress, run, seen=seen, snapshot=snapshot, moved=moved,
              early=early)  # fmt: skip
        report_gone(seen, counts)
        if counts.total("created") or counts.total("updated"):  # a delta run that moved nothing: no writes
            started = time.monotonic()
            analyze_targets()
            counts.seconds["analyze"] = time.monotonic() - started
        # After a load, verify adds its outcomes; what was read, skipped or quarantined is the load's.
        _pass("verify", verify, options, ctx, counts, progress, run, keep=("verified", "mismatched"),
              replay=snapshot, only=moved, early=early)  # fmt: skip


class EarlyVerify:
    """Verify's pure work on the load's batches, done while the load waits for the network.

    Over a Replit Database the load's second thread spends much of its time waiting for the next
    batch's GETs. After it has handed batch n to the writer, it decodes and transforms, for
    verify, the records of batch n that the verify pass will compare (those the load moves, or
    every record when everything is to be verified), from the same bytes (`prepare_verify`: its
    own records, independent of the load's, which the load seals and encrypts). The verify pass
    then only compares with PostgreSQL. A delta run that moves nothing prepares nothing. At most
    `max_records` records or `max_chars` characters of values are kept (a Replit Database holds at
    most 5,000 keys): past that, verify replays the rest of the snapshot and prepares it then.
    """

    def __init__(
        self, ctx: Context, *, everything: bool, max_records: int = 5_000, max_chars: int = 16_000_000
    ) -> None:
        self.ctx = ctx
        self.everything = everything  # else only the records the load moves
        self.max_records, self.max_chars = max_records, max_chars
        self.ready: list[Prepared] = []  # prepared for verify, in the load's order
        self.complete = True  # every batch the load read went through `preparing`
        self.batches_seen = 0
        self._records = self._chars = 0
        self._last: Prepared | None = None

    def load_step(self, prepare: Callable[..., Prepared]) -> Callable[..., Prepared]:
        """The load's prepare, remembering its result for `preparing` (same thread, in turn)."""

        def step(items, ctx: Context) -> Prepared:
            self._last = prepare(items, ctx)
            return self._last

        return step

    def preparing(self, batches):
        """Pass the load's batches through; each is prepared for verify once the load has taken it."""
        for batch in batches:
            self._last = None
            yield batch
            if not self.complete:
                continue
            if self.everything:
                items = batch
            else:
                moving = {hash(rec.key) for rec in self._last.recs if rec.todo} if self._last else set()
                items = [item for item in batch if hash(item[0]) in moving]
            self._records += len(items)
            self._chars += sum(len(raw) for _, raw in items)
            if self._records > self.max_records or self._chars > self.max_chars:
                self.complete = False  # this batch and the next ones: replayed from the snapshot
                continue
            if items:
                self.ready.append(prepare_verify(items, self.ctx))
            self.batches_seen += 1

    def batches(self, snapshot: Snapshot):
        """For the verify pass: the prepared batches, then the snapshot's other batches (raw)."""
        while self.ready:
            yield self.ready.pop(0)  # each let go once compared
        if not self.complete:
            yield from snapshot.replay(start=self.batches_seen)


def _verified_before(run: MigrationRun | None) -> bool:
    """Whether the newest earlier load or verify run finished its verify pass, nothing mismatched."""
    earlier = MigrationRun.objects.filter(mode__in=[MigrationRun.Mode.MIGRATE, MigrationRun.Mode.VERIFY])
    if run is not None:
        earlier = earlier.exclude(pk=run.pk)
    last = earlier.order_by("-started_at", "-pk").first()
    if last is None or last.status not in (MigrationRun.Status.SUCCEEDED, MigrationRun.Status.ATTENTION):
        return False
    return not any(domain.get("mismatched") for domain in (last.counts or {}).values())


def analyze_targets() -> None:
    """Fresh planner statistics once the load has written its rows, before verify reads them back.

    Without them (autovacuum off, or behind a bulk load) PostgreSQL guesses that a large share of
    the ledger matches a batch's `user_id = ANY(...)` and may scan the whole ledger once per verify
    batch: 20 s of a 50 s run at 20,000 users read from Redis, and growing with the square of the
    store. ANALYZE reads a fixed-size sample of each table and is transactional (a dry run rolls it
    back with the rest).
    """
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {', '.join(TARGET_TABLES)}")


def _save_counts(run: MigrationRun | None, counts: Counts) -> None:
    if run is not None:
        MigrationRun.objects.filter(pk=run.pk).update(counts=counts.as_dict())


def _import_users(options: Options, ctx: Context, counts: Counts, progress: _Progress, run) -> None:
    started = time.monotonic()
    for raw_rows in users.iter_batches(
        options.users_from, table=options.users_table, columns=options.users_columns, batch_size=1000
    ):
        batch = users.import_batch(raw_rows, run_id=ctx.run_id)
        counts.merge(batch)
        progress.update("users", batch)
        _save_counts(run, counts)
        reset_queries()
    if not options.dry_run:  # sequences ignore rollbacks: a dry run must not move it
        account_services.move_user_id_sequence()
    counts.seconds["users"] = time.monotonic() - started


def _pass(
    phase: str,
    steps: tuple[Callable[..., Prepared], Callable[[Prepared, Context], Counts]],
    options: Options,
    ctx: Context,
    counts: Counts,
    progress: _Progress,
    run,
    keep: tuple[str, ...] | None = None,
    seen: set[int] | None = None,
    snapshot: Snapshot | None = None,
    replay: Snapshot | None = None,
    moved: set[int] | None = None,
    only: set[int] | None = None,
    early: EarlyVerify | None = None,
) -> None:
    """One pass over the store: a second thread reads and prepares batch n+1 while n is written.

    `snapshot` records what the pass reads; `replay` makes the pass read such a record instead of
    the store. `moved` collects a hash of each key the pass moved (created or updated); `only`
    limits the pass to the keys of such a set. `early`: the load prepares its batches for verify
    too, and the verify pass takes them from there.
    """
    prepare, apply = steps
    started = time.monotonic()
    try:
        with contextlib.nullcontext() if replay is not None else _open(options) as source:
            if replay is not None:
                batches = early.batches(replay) if early is not None else replay.replay()
            else:
                batches = source.iter_batches(options.batch_size)
            if snapshot is not None:
                batches = snapshot.recording(batches)
                if early is not None:
                    batches = early.preparing(batches)
            if seen is not None:
                batches = _remembering(batches, seen)
            if only is not None:
                batches = _limited(batches, only)

            def prepared_of(items):
                return items if isinstance(items, Prepared) else prepare(items, ctx)

            for prepared in ahead(prepared_of, batches):
                batch = apply(prepared, ctx)
                if moved is not None:
                    moved.update(hash(rec.key) for rec in prepared.recs if rec.todo)
                if keep is not None:
                    batch = batch.only(keep)
                counts.merge(batch)
                progress.update(phase, batch)
                _save_counts(run, counts)
                reset_queries()  # with DEBUG on, Django keeps every query's SQL: not for a whole store
            if phase == "load" or options.verify_only:  # once a run: verify reads the same file again
                counts.source_problems.extend(getattr(source, "problems", ()))
    except SourceError as exc:
        raise RunFailed(f"{phase}: {exc}") from None
    finally:
        counts.seconds[phase] = time.monotonic() - started


def _open(options: Options):
    """The run's source; a Replit Database is read with `options.concurrency` requests in flight."""
    if store_kind(options.source) == "replit":
        return open_source(options.source, concurrency=options.concurrency)
    return open_source(options.source)


def _limited(batches, keys: set[int]):
    """The batches' items whose key hash is in `keys` (empty batches dropped; prepared ones, which
    EarlyVerify limited already, pass as they are)."""
    for batch in batches:
        if isinstance(batch, Prepared):
            yield batch
            continue
        kept = [item for item in batch if hash(item[0]) in keys]
        if kept:
            yield kept


def _remembering(batches, seen: set[int]):
    """Pass batches through, remembering a 64-bit hash of every key (8 bytes a key, not the key)."""
    for batch in batches:
        seen.update(hash(key) for key, _ in batch)
        yield batch


def report_gone(seen: set[int], counts: Counts, chunk: int = 10_000) -> None:
    """Keys moved by an earlier run that this run's read of the store did not meet.

    They are counted as `gone` per domain and listed (up to the report's limit), never deleted
    from PostgreSQL: whether a record vanished on purpose is the operator's call.
    """
    with transaction.atomic():  # the server-side cursor streams the fingerprints in chunks
        for key, family in MigratedRecord.objects.values_list("key", "family").iterator(chunk_size=chunk):
            if hash(key) not in seen:
                domain = FAMILIES.get(family, ("other",))[0]
                counts.add(domain, "gone")
                if len(counts.gone) < EXAMPLES_MAX:
                    counts.gone.append({"key": key, "domain": domain})


def _reverse(options: Options, counts: Counts, progress: _Progress, run) -> None:
    started = time.monotonic()
    try:
        _write_back(options, counts, progress, run)
    finally:
        counts.seconds["reverse"] = time.monotonic() - started


def _write_back(options: Options, counts: Counts, progress: _Progress, run) -> None:
    from .reverse import reverse

    if options.dry_run:
        from .reverse import render_batch, user_batches

        for users_batch in user_batches(options.batch_size):
            batch = Counts()
            for key, _ in render_batch(users_batch, options.only):
                domain = {"user_credits": "credits", "user_tokens": "gmail"}.get(
                    key.partition(":")[0], "accounts"
                )
                batch.add(domain, "read")
                batch.add(domain, "skipped")
            counts.merge(batch)
            progress.update("reverse", batch)
        return
    try:
        writer = open_writer(options.target)
    except SourceError as exc:
        raise UsageError(str(exc)) from None
    ok = False
    try:
        counts.merge(
            reverse(writer, only=options.only, batch_size=options.batch_size,
                    progress=lambda b: progress.update("reverse", b))
        )  # fmt: skip
        ok = True
    except SourceError as exc:
        raise RunFailed(f"reverse: {exc}") from None
    finally:
        if not ok and hasattr(writer, "abort"):
            writer.abort()
        else:
            writer.close()
    _save_counts(run, counts)


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def remember_mirrored(items: list[tuple[str, str | None]]) -> None:
    """The KV mirror wrote these values (None: deleted the key): a delta run skips them unchanged.

    Their fingerprints are remembered as moved, exactly as if a run had read them from the store:
    what fivedocks wrote itself is not news to it. A value the old code changes afterwards has a
    new fingerprint and is moved as usual.
    """
    now = timezone.now()
    gone = [key for key, value in items if value is None]
    if gone:
        MigratedRecord.objects.filter(key__in=gone).delete()
    rows = []
    for key, value in items:
        if value is None:
            continue
        family, _, ident = key.partition(":")
        domains = list(FAMILIES.get(family, ()))
        rows.append(
            MigratedRecord(
                key=key,
                family=family,
                fingerprint=fingerprint(value),
                domains=domains,
                parts=domains,
                user_id=int(ident) if ident.isdigit() else None,
                updated_at=now,
            )
        )
    MigratedRecord.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["key"],
        update_fields=["fingerprint", "domains", "parts", "user_id", "updated_at"],
    )
