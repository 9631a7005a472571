"""The coherent local cache's benchmark (not a test): staleness window, write cost, read cost.

    .venv/bin/python -m bench.coherence            # full run (about a minute)
    .venv/bin/python -m bench.coherence --quick    # a few seconds per figure
    .venv/bin/python -m bench.run_all --only coherence

Against a real PostgreSQL, the default local-memory cache, the product's own code:

- **staleness window**: 4 worker processes each run the real listener (`fivedocks.coherence`,
  started as gunicorn's workers start it) on their own local cache; this process commits
  deductions through `credits.services.deduct`, one user per deduction, and each worker records
  when it evicted that user's entry (the bench wraps `coherence.evict_locally` in the workers).
  The window of one change is from the deduction's return (committed) to the last of the 4
  evictions; p50 and p99 over every change (goal p99 <= 100 ms).
- **write cost**: deductions/s through `credits.services.deduct` with 8 threads (own connection
  each, distinct users), with the broadcast on and off (`CACHE_BROADCAST`) in alternating rounds
  of the same run, the 4 listening workers running throughout (goal: on/off >= 0.9).
- the same write comparison with `synchronous_commit=off` on both sides (a second process):
  NOTIFY holds a database-wide lock from before each notifying commit until after its WAL flush,
  so notifying commits cannot share a flush; this row shows the cost apart from the disk.
- **read cost**: `credits.selectors.get_balance` p50 from the cache with this process's listener
  running and with none, alternating (goal: the difference within noise, <= 10 µs).

Database: `DATABASE_URL`, else postgres://postgres@127.0.0.1:5432/fd_bench_coherence (created
and migrated when missing). Its users are `@bench-coherence.invalid`, removed before and after.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench.credits import Latency, deduct_worker, ensure_database, percentile, run_workers  # noqa: E402

MARKER = "COHERENCE_WRITES_JSON: "
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/fd_bench_coherence"
EMAIL_DOMAIN = "bench-coherence.invalid"
LISTENING_WORKERS = 4
WRITE_WORKERS = 8
USERS_PER_WRITER = 25
OPERATION = "company_search"
TARGET_P99_MS = 100.0
TARGET_WRITE_RATIO = 0.9
TARGET_READ_DELTA_US = 10.0
GIVE_UP_SECONDS = 5.0  # an eviction later than this counts as missed


def configure_environment() -> None:
    import base64

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fivedocks.settings")
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-any-deployment-" + "x" * 20)
    os.environ.setdefault("TOKEN_ENCRYPTION_KEYS", base64.urlsafe_b64encode(os.urandom(32)).decode())
    os.environ["DEBUG"] = "0"
    os.environ["CACHE_URL"] = "locmemcache://bench-coherence"
    os.environ["CACHE_BROADCAST"] = "1"


# --- a listening worker (its own process) ------------------------------------------------------


def listening_worker(index: int, ready, stop, evictions) -> None:
    """As a gunicorn worker: Django set up, the listener started; report each eviction's time."""
    configure_environment()
    import django

    django.setup()
    from fivedocks import coherence

    original = coherence.evict_locally

    def recording(keys) -> None:
        keys = list(keys)
        original(keys)
        now = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process of the machine
        evictions.put([(index, key, now) for key in keys])

    coherence.evict_locally = recording
    listener = coherence.start_listener()
    while not listener.connected:
        time.sleep(0.01)
    ready.put(index)
    stop.wait()


# --- the bench -------------------------------------------------------------------------------


class Bench:
    def __init__(self, *, changes: int, seconds: float, rounds: int, reads: int) -> None:
        self.changes = changes
        self.seconds = seconds
        self.rounds = rounds
        self.reads = reads
        self.run_id = uuid.uuid4().hex[:8]

    def remove_rows(self) -> None:
        from django.db import connection, transaction

        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT id FROM users WHERE email LIKE %s", [f"%@{EMAIL_DOMAIN}"])
            ids = [row[0] for row in cursor.fetchall()]
            if ids:
                cursor.execute("DELETE FROM credit_transactions WHERE user_id = ANY(%s)", [ids])
                cursor.execute("DELETE FROM user_credits WHERE user_id = ANY(%s)", [ids])
                cursor.execute("DELETE FROM users WHERE id = ANY(%s)", [ids])

    def create_users(self, count: int) -> list:
        from accounts.models import User
        from credits import services

        users = User.objects.bulk_create(
            [User(email=f"u{i}-{self.run_id}@{EMAIL_DOMAIN}", password="!") for i in range(count)]
        )
        for user in users:
            services.grant(user=user, amount=10**9, kind="bonus", reason="bench opening grant")
        return users

    # 1. staleness window

    def staleness(self, users: list, evictions) -> dict:
        from django.db import transaction

        from credits import cache as balance_cache
        from credits import services

        committed: dict[str, float] = {}
        for n, user in enumerate(users[: self.changes]):
            key = balance_cache.key_for(user.pk)
            with transaction.atomic():
                # The first commit callback runs as soon as COMMIT has returned: the commit time.
                transaction.on_commit(lambda key=key: committed.__setitem__(key, time.monotonic()))
                services.deduct(user=user, operation=OPERATION, idempotency_key=f"stale-{self.run_id}-{n}")
            time.sleep(0.02)  # changes one by one: the window of each, not a queue's backlog
        seen: dict[str, dict[int, float]] = {key: {} for key in committed}
        deadline = time.monotonic() + GIVE_UP_SECONDS
        while time.monotonic() < deadline and any(len(w) < LISTENING_WORKERS for w in seen.values()):
            try:
                batch = evictions.get(timeout=0.2)
            except queue.Empty:
                continue
            for index, key, at in batch:
                if key in seen and index not in seen[key]:
                    seen[key][index] = at
        # A worker may evict before this process has resumed from its COMMIT call: that is 0.
        windows = sorted(
            max(0.0, max(w.values()) - committed[key]) * 1000
            for key, w in seen.items()
            if len(w) == LISTENING_WORKERS
        )
        missed = sum(1 for w in seen.values() if len(w) < LISTENING_WORKERS)
        return {
            "p50_ms": statistics.median(windows) if windows else float("nan"),
            "p99_ms": percentile(windows, 0.99) if windows else float("nan"),
            "max_ms": windows[-1] if windows else float("nan"),
            "changes": len(committed),
            "missed": missed,
        }

    # 2. write cost

    def write_cost(self, users: list) -> dict:
        from django.conf import settings

        slices = [users[i * USERS_PER_WRITER : (i + 1) * USERS_PER_WRITER] for i in range(WRITE_WORKERS)]
        totals = {True: [0, 0.0, 0], False: [0, 0.0, 0]}
        for round_ in range(self.rounds):
            for broadcast in (True, False) if round_ % 2 == 0 else (False, True):
                settings.CACHE_BROADCAST = broadcast
                result = run_workers(
                    "deduct", WRITE_WORKERS, self.seconds, deduct_worker(slices, f"w-{self.run_id}")
                )
                totals[broadcast][0] += result.ops
                totals[broadcast][1] += result.seconds
                totals[broadcast][2] += result.errors
        settings.CACHE_BROADCAST = True
        on, off = (totals[b][0] / totals[b][1] for b in (True, False))
        return {"on": on, "off": off, "errors": totals[True][2] + totals[False][2]}

    # 3. read cost

    def read_cost(self, user) -> dict:
        from credits import selectors
        from fivedocks import coherence

        def sample() -> Latency:
            selectors.get_balance(user_id=user.pk)  # filled
            samples = []
            clock = time.perf_counter_ns
            for _ in range(self.reads):
                start = clock()
                selectors.get_balance(user_id=user.pk)
                samples.append(clock() - start)
            return Latency.from_ns(samples)

        with_listener, without = [], []
        for _ in range(3):
            listener = coherence.start_listener()
            while not listener.connected:
                time.sleep(0.01)
            with_listener.append(sample())
            coherence.stop_listener()
            listener.join(timeout=10)
            without.append(sample())
        return {
            "with_p50_us": statistics.median(s.p50_us for s in with_listener),
            "without_p50_us": statistics.median(s.p50_us for s in without),
            "with_p99_us": statistics.median(s.p99_us for s in with_listener),
            "without_p99_us": statistics.median(s.p99_us for s in without),
        }


def measure(quick: bool, *, write_only: bool = False) -> dict:
    configure_environment()
    created = ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    if created:
        print(f"created database {connection.settings_dict['NAME']}", file=sys.stderr)
    bench = Bench(
        changes=50 if quick else 300,
        seconds=1.0 if quick else 3.0,
        rounds=4 if quick else 8,
        reads=2000 if quick else 20000,
    )
    context = multiprocessing.get_context("spawn")
    evictions, stop = context.Queue(), context.Event()
    ready = context.Queue()
    workers = [
        context.Process(target=listening_worker, args=(i, ready, stop, evictions), daemon=True)
        for i in range(LISTENING_WORKERS)
    ]
    bench.remove_rows()
    try:
        users = bench.create_users(max(bench.changes, WRITE_WORKERS * USERS_PER_WRITER) + 1)
        for worker in workers:
            worker.start()
        for _ in workers:
            ready.get(timeout=60)
        stale = reads = None
        if not write_only:
            print("staleness window ...", file=sys.stderr)
            stale = bench.staleness(users, evictions)
        print("write cost ...", file=sys.stderr)
        writes = bench.write_cost(users)
        if not write_only:
            print("read cost ...", file=sys.stderr)
            reads = bench.read_cost(users[-1])
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
        bench.remove_rows()
        connection.close()
    return {"stale": stale, "writes": writes, "reads": reads, "bench": bench}


def run(quick: bool) -> list:
    """The bench protocol (bench/common.py): rows of `make bench`'s table."""
    from bench.common import compare

    m = measure(quick)
    stale, writes, reads, bench = m["stale"], m["writes"], m["reads"], m["bench"]
    # The same write comparison with commits that do not wait for the disk (both sides), in a
    # process of its own: what the broadcast costs apart from the disk's flush time (see docs).
    command = [sys.executable, "-m", "bench.coherence", "--write-only", *(["--quick"] if quick else [])]
    env = {**os.environ, "PGOPTIONS": "-c synchronous_commit=off"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    line = [x for x in done.stdout.splitlines() if x.startswith(MARKER)]
    async_writes = json.loads(line[-1][len(MARKER) :]) if line else None
    rows = [
        compare(
            f"coherence: staleness window p99, commit to last of {LISTENING_WORKERS} workers' eviction",
            stale["p99_ms"],
            "ms",
            target=f"<= {TARGET_P99_MS:g}",
            note=f"p50 {stale['p50_ms']:.2f} ms, max {stale['max_ms']:.2f} ms over {stale['changes']} "
            f"deductions; {stale['missed']} not evicted everywhere within {GIVE_UP_SECONDS:g} s",
        ),
        compare(
            "coherence: missed evictions",
            stale["missed"],
            "",
            target="<= 0",
            note="changes some listening worker never evicted",
        ),
        compare(
            f"coherence: deductions/s, {WRITE_WORKERS} workers, broadcast on vs off",
            writes["on"],
            "ops/s",
            baseline=writes["off"],
            target=f">= {TARGET_WRITE_RATIO:g}",
            note=f"{bench.rounds} alternating rounds of {bench.seconds:g} s each side; "
            f"{writes['errors']} errors",
        ),
        compare(
            "coherence: cached balance read p50 with the listener running",
            reads["with_p50_us"],
            "µs",
            baseline=reads["without_p50_us"],
            note=f"without a listener {reads['without_p50_us']:.2f} µs; p99 {reads['with_p99_us']:.1f} / "
            f"{reads['without_p99_us']:.1f} µs; difference "
            f"{reads['with_p50_us'] - reads['without_p50_us']:+.2f} µs "
            f"(goal within {TARGET_READ_DELTA_US:g})",
        ),
    ]
    if async_writes:
        rows.insert(
            3,
            compare(
                f"coherence: deductions/s, {WRITE_WORKERS} workers, broadcast on vs off, "
                "commits not waiting for the disk",
                async_writes["on"],
                "ops/s",
                baseline=async_writes["off"],
                note="synchronous_commit=off on both sides (PGOPTIONS): the broadcast's cost apart from "
                "NOTIFY holding its lock through each commit's WAL flush",
            ),
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--write-only", action="store_true", help="only the write cost, as JSON")
    args = parser.parse_args(argv)
    if args.write_only:
        writes = measure(args.quick, write_only=True)["writes"]
        print(MARKER + json.dumps(writes))
        return 0
    rows = run(args.quick)
    failed = False
    for row in rows:
        verdict = "" if row.passed is None else (" PASS" if row.passed else " FAIL")
        ratio = f" (ratio {row.ratio:.3f})" if row.ratio is not None else ""
        baseline = f" vs {row.baseline:,.2f}" if row.baseline is not None else ""
        print(f"{row.name}: {row.value:,.2f} {row.unit}{baseline}{ratio}{verdict}\n    {row.note}")
        failed = failed or row.passed is False
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
