"""Credits hot-path benchmark (not a test): prints figures, the issue's targets and PASS/FAIL.

    .venv/bin/python bench/credits.py            # full run (about a minute)
    .venv/bin/python bench/credits.py --quick    # short run
    .venv/bin/python -m bench.run_all --only credits   # as a row group of `make bench` (run(quick))

It measures, in one process against a real PostgreSQL:

- balance read p50 through `credits.selectors.get_balance`, from the cache (warm) and uncached
  (the entry forgotten before every read);
- the cache hit rate under a mix of one deduction per 20 reads over 100 active users (random
  user per operation; each deduction its own transaction in autocommit mode, so `on_commit`
  fires), counted by wrapping `credits.cache.read` here, outside the product code;
- deductions per second through `credits.services.deduct` with 1 and 8 worker threads (each
  with its own connection), over distinct users and on one hot user;
- the raw-SQL ceiling for the same transaction (one `UPDATE ... RETURNING` plus one
  `INSERT INTO credit_transactions` through plain psycopg, a commit per operation), same
  workers, and the service/raw ratio;
- hold + capture pairs per second at 8 workers (`credits.services.open_hold` then
  `capture_hold`, two transactions per pair) against the raw-SQL ceiling of the very same
  statements (the SQL strings of credits.services run through plain psycopg), same run.

Database: `DATABASE_URL`, else postgres://postgres@127.0.0.1:5432/fd_bench_credits (created
if missing, then migrated). The bench adds its own users (`@bench-credits.invalid`) and removes
them and their rows at the start and the end; it touches nothing else. Exit code 1 when a
target fails.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as `python bench/credits.py`, this file's folder comes first on sys.path and would shadow
# the `credits` app: put the project root there instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/fd_bench_credits"
BENCH_EMAIL_DOMAIN = "bench-credits.invalid"
OPERATION = "company_search"
ACTIVE_USERS = 100  # the mix's active users (the figure; --active-users changes it)
USERS_PER_WORKER = 25  # distinct-users throughput: each worker cycles through its own users
MAX_WORKERS = 8
# The largest single grant credits.services allows (MAX_CHANGE): far more than a run deducts.
START_BALANCE = 10**9

# The acceptance targets.
TARGET_CACHED_P50_US = 20.0
TARGET_HIT_RATE = 0.90
TARGET_SERVICE_RAW_RATIO = 0.30


def configure_environment() -> None:
    """Bench-only defaults, set before Django reads its settings."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fivedocks.settings")
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-any-deployment-" + "x" * 20)
    os.environ.setdefault("TOKEN_ENCRYPTION_KEYS", base64.urlsafe_b64encode(os.urandom(32)).decode())
    # Query logging (DEBUG) would distort every figure: always off here, whatever .env says.
    os.environ["DEBUG"] = "0"


def db_params(url: str) -> dict:
    import environ

    config = environ.Env.db_url_config(url)
    params = {
        "dbname": config.get("NAME"),
        "user": config.get("USER"),
        "password": config.get("PASSWORD"),
        "host": config.get("HOST"),
        "port": config.get("PORT"),
    }
    return {k: str(v) for k, v in params.items() if v not in (None, "")}


def ensure_database(url: str) -> bool:
    """Create the database if missing; True when created."""
    import psycopg
    from psycopg import sql

    params = db_params(url)
    name = params["dbname"]
    with psycopg.connect(**{**params, "dbname": "postgres"}, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


# --- measurement helpers ------------------------------------------------------------------


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


@dataclass
class Latency:
    p50_us: float
    p90_us: float
    p99_us: float
    mean_us: float
    count: int

    @classmethod
    def from_ns(cls, samples: list[int]) -> Latency:
        values = sorted(s / 1000 for s in samples)
        return cls(
            p50_us=statistics.median(values),
            p90_us=percentile(values, 0.90),
            p99_us=percentile(values, 0.99),
            mean_us=statistics.fmean(values),
            count=len(values),
        )


@dataclass
class Throughput:
    label: str
    workers: int
    ops: int
    seconds: float
    errors: int = 0
    first_error: str = ""

    @property
    def per_second(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0


def deduct_worker(users: list, prefix: str):
    """A `run_workers` factory: thread `index` deducts through `credits.services.deduct`, cycling
    over its own users (`users[index]`) under idempotency keys no other run or thread uses."""

    def make(index: int):
        from django.db import connection

        from credits import services

        mine = users[index]
        keys = f"{prefix}-{uuid.uuid4().hex[:6]}-"
        counter = itertools.count(1)

        def op() -> None:
            n = next(counter)
            services.deduct(user=mine[n % len(mine)], operation=OPERATION, idempotency_key=f"{keys}{n}")

        return op, connection.close

    return make


def run_workers(label: str, workers: int, seconds: float, make_worker) -> Throughput:
    """Start `workers` threads together, let them loop for `seconds`, count completed ops.

    `make_worker(index)` runs inside the thread and returns `(op, close)`: `op()` performs one
    operation; `close()` releases the thread's connection.
    """
    ready = threading.Barrier(workers + 1)
    stop = threading.Event()
    counts = [0] * workers
    errors = [0] * workers
    first_errors: list[str] = []
    finished = [0.0] * workers

    def body(index: int) -> None:
        try:
            op, close = make_worker(index)
        except BaseException:
            ready.abort()
            raise
        try:
            try:
                op()  # opens the connection and warms statement caches before the clock starts
            except BaseException:
                ready.abort()
                raise
            ready.wait()
            done = failed = 0
            while not stop.is_set():
                try:
                    op()
                    done += 1
                except Exception as exc:  # counted and reported, never hidden
                    failed += 1
                    if not first_errors:
                        first_errors.append(f"{type(exc).__name__}: {exc}")
            counts[index], errors[index] = done, failed
            finished[index] = time.perf_counter()
        finally:
            close()

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    ready.wait()
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = max(finished) - started
    return Throughput(
        label=label,
        workers=workers,
        ops=sum(counts),
        seconds=elapsed,
        errors=sum(errors),
        first_error=first_errors[0] if first_errors else "",
    )


# --- the bench ------------------------------------------------------------------------------


class Bench:
    def __init__(
        self,
        *,
        reads: int,
        uncached_reads: int,
        mix_reads: int,
        seconds: float,
        rounds: int,
        active_users: int,
    ):
        from django.conf import settings

        self.reads = reads
        self.uncached_reads = uncached_reads
        self.mix_reads = mix_reads
        self.seconds = seconds
        self.rounds = rounds
        self.active_users = active_users
        self.run_id = uuid.uuid4().hex[:8]
        self.cost = settings.CREDIT_OPERATION_COSTS[OPERATION]
        self.params = db_params(os.environ["DATABASE_URL"])
        self.users: list = []

    # setup / teardown

    def remove_bench_rows(self) -> None:
        from django.db import connection, transaction

        pattern = f"%@{BENCH_EMAIL_DOMAIN}"
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT id FROM users WHERE email LIKE %s", [pattern])
            ids = [row[0] for row in cursor.fetchall()]
            if ids:
                cursor.execute("DELETE FROM credit_holds WHERE user_id = ANY(%s)", [ids])
                cursor.execute("DELETE FROM credit_transactions WHERE user_id = ANY(%s)", [ids])
                cursor.execute("DELETE FROM user_credits WHERE user_id = ANY(%s)", [ids])
                cursor.execute("DELETE FROM users WHERE id = ANY(%s)", [ids])

    def create_users(self) -> None:
        from accounts.models import User
        from credits import services

        count = max(self.active_users, MAX_WORKERS * USERS_PER_WORKER) + 1
        created = User.objects.bulk_create(
            [
                User(email=f"u{i}-{self.run_id}@{BENCH_EMAIL_DOMAIN}", password="!")  # unusable
                for i in range(count)
            ]
        )
        for user in created:
            services.grant(user=user, amount=START_BALANCE, kind="bonus", reason="bench opening grant")
        self.users = created
        self.hot_user = created[-1]

    # 1. balance reads

    def bench_reads(self) -> tuple[Latency, Latency]:
        from django.core.cache import cache

        from credits import cache as balance_cache
        from credits.selectors import balance_from_database, get_balance

        ids = [u.pk for u in self.users[: self.active_users]]
        rng = random.Random(1)
        cache.clear()
        for uid in ids:
            get_balance(user_id=uid)
        for uid in ids[:5]:  # sanity: the cache serves what the database holds
            assert get_balance(user_id=uid) == balance_from_database(user_id=uid)

        clock = time.perf_counter_ns
        sequence = [rng.choice(ids) for _ in range(self.reads)]
        samples = []
        for uid in sequence:
            started = clock()
            get_balance(user_id=uid)
            samples.append(clock() - started)
        cached = Latency.from_ns(samples)

        forget = balance_cache.forget
        samples = []
        for uid in sequence[: self.uncached_reads]:
            forget(uid)
            started = clock()
            get_balance(user_id=uid)
            samples.append(clock() - started)
        uncached = Latency.from_ns(samples)
        return cached, uncached

    # 2. hit rate under the mix

    def bench_mix(self) -> dict:
        from django.core.cache import cache
        from django.db import connection

        from credits import cache as balance_cache
        from credits import services
        from credits.selectors import get_balance

        assert connection.get_autocommit() and not connection.in_atomic_block
        counts = {"hits": 0, "misses": 0}
        original_read = balance_cache.read

        def counting_read(user_id):
            snapshot = original_read(user_id)
            counts["hits" if snapshot is not None else "misses"] += 1
            return snapshot

        users = {u.pk: u for u in self.users[: self.active_users]}
        ids = list(users)
        rng = random.Random(2)
        known: dict[int, int] = {}  # balance each user's last deduction committed
        stale = deductions = 0
        cache.clear()
        balance_cache.read = counting_read
        started = time.perf_counter()
        try:
            for i in range(self.mix_reads + self.mix_reads // 20):
                uid = rng.choice(ids)
                if i % 21 == 20:
                    result = services.deduct(
                        user=users[uid], operation=OPERATION, idempotency_key=f"mix-{self.run_id}-{i}"
                    )
                    known[uid] = result.balance
                    deductions += 1
                else:
                    balance = get_balance(user_id=uid).balance
                    if uid in known and balance != known[uid]:
                        stale += 1
        finally:
            balance_cache.read = original_read
        elapsed = time.perf_counter() - started
        reads = counts["hits"] + counts["misses"]
        return {
            **counts,
            "reads": reads,
            "deductions": deductions,
            "stale": stale,
            "rate": counts["hits"] / reads,
            "seconds": elapsed,
        }

    # 3. deductions per second: service and raw SQL

    def service_worker(self, users: list):
        return deduct_worker(users, f"svc-{self.run_id}")

    def raw_worker(self, users: list):
        import psycopg

        update = """
            UPDATE user_credits
               SET balance = balance - %(cost)s, total_used = total_used + %(cost)s, last_updated = now()
             WHERE user_id = %(user_id)s AND balance >= %(cost)s
         RETURNING balance
        """
        insert = """
            INSERT INTO credit_transactions
                (user_id, amount, type, reason, balance_after, metadata, idempotency_key, created_at)
            VALUES (%(user_id)s, %(amount)s, 'deduction', %(reason)s, %(balance)s,
                    %(metadata)s::jsonb, %(key)s, now())
        """
        metadata = json.dumps({"operation": OPERATION})

        def make(index: int):
            conn = psycopg.connect(**self.params)  # autocommit off: one transaction per op
            cursor = conn.cursor()
            mine = [u.pk for u in users[index]]
            prefix = f"raw-{self.run_id}-{uuid.uuid4().hex[:6]}-"
            state = {"n": 0}

            def op() -> None:
                n = state["n"] = state["n"] + 1
                user_id = mine[n % len(mine)]
                cursor.execute(update, {"cost": self.cost, "user_id": user_id})
                row = cursor.fetchone()
                if row is None:
                    conn.rollback()
                    raise RuntimeError("insufficient credits")
                cursor.execute(
                    insert,
                    {
                        "user_id": user_id,
                        "amount": -self.cost,
                        "reason": OPERATION,
                        "balance": row[0],
                        "metadata": metadata,
                        "key": f"{prefix}{n}",
                    },
                )
                conn.commit()

            def close() -> None:
                cursor.close()
                conn.close()

            return op, close

        return make

    def bench_throughput(self) -> list[Throughput]:
        """Service and raw SQL alternate in short rounds, so a load change on a shared machine
        hits both sides of the ratio alike; each row sums its rounds."""
        distinct = [self.users[i * USERS_PER_WORKER : (i + 1) * USERS_PER_WORKER] for i in range(MAX_WORKERS)]
        hot = [[self.hot_user] for _ in range(MAX_WORKERS)]
        results = []
        for users_label, users in (("distinct users", distinct), ("one hot user", hot)):
            for workers in (1, MAX_WORKERS):
                rows = {}
                for _ in range(self.rounds):
                    for path, make in (("service", self.service_worker), ("raw SQL", self.raw_worker)):
                        label = f"{path}, {users_label}"
                        part = run_workers(label, workers, self.seconds / self.rounds, make(users))
                        row = rows.setdefault(
                            label, Throughput(label=label, workers=workers, ops=0, seconds=0)
                        )
                        row.ops += part.ops
                        row.seconds += part.seconds
                        row.errors += part.errors
                        row.first_error = row.first_error or part.first_error
                results.extend(rows.values())
        return results

    # 4. hold + capture pairs per second: service and the same statements in raw SQL

    def hold_service_worker(self, users: list):
        def make(index: int):
            from django.db import connection

            from credits import services

            mine = users[index]
            prefix = f"hold-{self.run_id}-{uuid.uuid4().hex[:6]}-"
            state = {"n": 0}

            def op() -> None:
                n = state["n"] = state["n"] + 1
                hold = services.open_hold(
                    user=mine[n % len(mine)], amount=self.cost, idempotency_key=f"{prefix}{n}", owner="bench"
                ).hold
                services.capture_hold(hold_id=hold.pk, owner="bench")

            return op, connection.close

        return make

    def hold_raw_worker(self, users: list):
        import psycopg

        from credits import services as s

        def make(index: int):
            conn = psycopg.connect(**self.params)  # autocommit off: a transaction per half
            cursor = conn.cursor()
            mine = [u.pk for u in users[index]]
            prefix = f"rawhold-{self.run_id}-{uuid.uuid4().hex[:6]}-"
            state = {"n": 0}

            def op() -> None:
                n = state["n"] = state["n"] + 1
                user_id = mine[n % len(mine)]
                now = datetime.now(UTC)
                cursor.execute(s._LOCK_ACCOUNT_SQL, [user_id])
                balance = cursor.fetchone()[0]
                cursor.execute(
                    s._OPEN_HOLD_SQL,
                    {
                        "user_id": user_id,
                        "amount": self.cost,
                        "operation": "",
                        "owner": "bench",
                        "key": f"{prefix}{n}",
                        "expires_at": now + s.hold_ttl(None),
                        "metadata": "{}",
                        "now": now,
                        "balance": balance,
                    },
                )
                hold_id, _ = cursor.fetchone()
                if hold_id is None:
                    conn.rollback()
                    raise RuntimeError("insufficient credits")
                conn.commit()
                now = datetime.now(UTC)
                cursor.execute(s._CAPTURE_SQL, {"id": hold_id, "owner": "bench", "amount": None, "now": now})
                captured = cursor.fetchone()[-1]
                cursor.execute(
                    s._UPDATE_SQL,
                    {
                        "amount": -captured,
                        "purchased": 0,
                        "used": captured,
                        "now": now,
                        "user_id": user_id,
                        "max_balance": s.MAX_BALANCE,
                    },
                )
                balance = cursor.fetchone()[0]
                cursor.execute(
                    s._INSERT_SQL,
                    {
                        "amount": -captured,
                        "type": "deduction",
                        "reason": "hold capture",
                        "balance_after": balance,
                        "metadata": json.dumps({"hold_id": hold_id}),
                        "idempotency_key": f"hold-capture:{hold_id}",
                        "created_at": now,
                        "created_by_id": None,
                        "user_id": user_id,
                        "now": now,
                    },
                )
                if cursor.fetchone()[0] is None:
                    conn.rollback()
                    raise RuntimeError("capture not written")
                conn.commit()

            def close() -> None:
                cursor.close()
                conn.close()

            return op, close

        return make

    def bench_holds(self) -> list[Throughput]:
        """Hold + capture pairs at MAX_WORKERS over distinct users, service and raw SQL alternating."""
        distinct = [self.users[i * USERS_PER_WORKER : (i + 1) * USERS_PER_WORKER] for i in range(MAX_WORKERS)]
        rows: dict[str, Throughput] = {}
        for _ in range(self.rounds):
            for label, make in (("service", self.hold_service_worker), ("raw SQL", self.hold_raw_worker)):
                part = run_workers(label, MAX_WORKERS, self.seconds / self.rounds, make(distinct))
                row = rows.setdefault(label, Throughput(label=label, workers=MAX_WORKERS, ops=0, seconds=0))
                row.ops += part.ops
                row.seconds += part.seconds
                row.errors += part.errors
                row.first_error = row.first_error or part.first_error
        return list(rows.values())

    def check_ledger(self) -> int:
        """Accounts touched by the bench whose balance differs from their ledger sum (expect 0)."""
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT count(*) FROM user_credits a
                  JOIN users u ON u.id = a.user_id
                 WHERE u.email LIKE %s
                   AND a.balance <> (SELECT coalesce(sum(t.amount), 0)
                                       FROM credit_transactions t WHERE t.user_id = a.user_id)
                """,
                [f"%@{BENCH_EMAIL_DOMAIN}"],
            )
            return cursor.fetchone()[0]


# --- report ---------------------------------------------------------------------------------


def environment_lines() -> list[str]:
    import django
    from django.conf import settings
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    cache = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    # Other work on the machine moves every figure; the 1-minute load average says how much.
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg()) + " over 1/5/15 min"
    return [
        f"- run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit}",
        f"- machine: {os.cpu_count()} CPUs (load average at the end of the run {load}), "
        f"Python {platform.python_version()}, Django {django.get_version()}, "
        f"PostgreSQL {pg_version} (database `{settings.DATABASES['default']['NAME']}` on "
        f"{settings.DATABASES['default'].get('HOST') or 'local socket'})",
        f"- cache: {cache}; balance TTL {settings.CREDITS_BALANCE_CACHE_TTL}s; "
        f"cachalot {'on' if settings.CACHALOT_ENABLED else 'off'}; "
        f"operation `{OPERATION}` ({settings.CREDIT_OPERATION_COSTS[OPERATION]} credits)",
    ]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def render(
    args, bench: Bench, cached, uncached, mix, throughput, ledger_mismatches, holds=()
) -> tuple[str, bool]:
    by_key = {(t.label, t.workers): t for t in throughput}
    svc8 = by_key[("service, distinct users", MAX_WORKERS)]
    raw8 = by_key[("raw SQL, distinct users", MAX_WORKERS)]
    ratio8 = svc8.per_second / raw8.per_second if raw8.per_second else 0.0
    targets = [
        (
            "cached balance read p50",
            f"{cached.p50_us:.1f} µs",
            f"<= {TARGET_CACHED_P50_US:.0f} µs",
            cached.p50_us <= TARGET_CACHED_P50_US,
        ),
        (
            f"cache hit rate, 1 deduction per 20 reads, {bench.active_users} users",
            f"{mix['rate'] * 100:.2f} %",
            f">= {TARGET_HIT_RATE * 100:.0f} %",
            mix["rate"] >= TARGET_HIT_RATE,
        ),
        (
            f"deductions/s at {MAX_WORKERS} workers vs raw-SQL ceiling (distinct users)",
            f"{svc8.per_second:,.0f} / {raw8.per_second:,.0f} = {ratio8 * 100:.0f} %",
            f">= {TARGET_SERVICE_RAW_RATIO * 100:.0f} %",
            ratio8 >= TARGET_SERVICE_RAW_RATIO,
        ),
    ]
    all_ok = all(ok for *_, ok in targets) and ledger_mismatches == 0 and mix["stale"] == 0
    all_ok = all_ok and not any(t.errors for t in [*throughput, *holds])

    lines = [
        f"# Credits benchmark{' (--quick)' if args.quick else ''}",
        "",
        *environment_lines(),
        "",
        "## Targets",
        "",
        "| target | measured | goal | result |",
        "|---|---:|---:|---|",
        *(f"| {name} | {value} | {goal} | {verdict(ok)} |" for name, value, goal, ok in targets),
        "",
        "## Balance reads (`credits.selectors.get_balance`)",
        "",
        "| read | p50 | p90 | p99 | mean | reads |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, lat in (("cached (warm)", cached), ("uncached (entry forgotten first)", uncached)):
        lines.append(
            f"| {name} | {lat.p50_us:.1f} µs | {lat.p90_us:.1f} µs | {lat.p99_us:.1f} µs | "
            f"{lat.mean_us:.1f} µs | {lat.count:,} |"
        )
    lines += [
        "",
        f"## Mix: one deduction per 20 reads, {bench.active_users} active users, cold cache at the start",
        "",
        "| reads | hits | misses | hit rate | deductions | stale reads after a write | seconds |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {mix['reads']:,} | {mix['hits']:,} | {mix['misses']:,} | {mix['rate'] * 100:.2f} % | "
        f"{mix['deductions']:,} | {mix['stale']} | {mix['seconds']:.1f} |",
        "",
        f"## Deductions per second ({bench.seconds:g} s per row in {bench.rounds} rounds alternating "
        "service and raw SQL; a commit per deduction)",
        "",
        "| path | users | workers | deductions/s | service / raw | errors |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for t in throughput:
        path, users = t.label.split(", ", 1)
        ratio = ""
        if path == "service":
            raw = by_key[(f"raw SQL, {users}", t.workers)]
            ratio = f"{t.per_second / raw.per_second * 100:.0f} %" if raw.per_second else "-"
        error = f"{t.errors}" + (f" ({t.first_error})" if t.first_error else "")
        lines.append(f"| {path} | {users} | {t.workers} | {t.per_second:,.0f} | {ratio} | {error} |")
    if holds:
        by_path = {t.label: t for t in holds}
        svc, raw = by_path["service"], by_path["raw SQL"]
        lines += [
            "",
            f"## Hold + capture pairs per second ({MAX_WORKERS} workers, distinct users; two transactions "
            "per pair; raw SQL runs the same statements as credits.services through plain psycopg)",
            "",
            "| path | workers | pairs/s | service / raw | errors |",
            "|---|---:|---:|---:|---:|",
        ]
        for t in (svc, raw):
            ratio = f"{svc.per_second / raw.per_second * 100:.0f} %" if t is svc and raw.per_second else ""
            error = f"{t.errors}" + (f" ({t.first_error})" if t.first_error else "")
            lines.append(f"| {t.label} | {t.workers} | {t.per_second:,.0f} | {ratio} | {error} |")
    lines += [
        "",
        f"Ledger check: {ledger_mismatches} bench accounts whose balance differs from their ledger sum.",
        "",
        f"Overall: {verdict(all_ok)}",
    ]
    return "\n".join(lines) + "\n", all_ok


@dataclass
class Measured:
    args: argparse.Namespace
    bench: Bench
    cached: Latency
    uncached: Latency
    mix: dict
    throughput: list[Throughput]
    ledger_mismatches: int
    report: str
    ok: bool
    holds: list[Throughput]


def measure(args: argparse.Namespace) -> Measured:
    """The whole run: database ready, users made, every figure measured, bench rows removed."""
    reads = args.reads or (2000 if args.quick else 20000)
    seconds = args.seconds or (1.0 if args.quick else 5.0)

    configure_environment()
    created = ensure_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    if created:
        print(f"created database {connection.settings_dict['NAME']}", file=sys.stderr)
    # As a serving process runs (fivedocks/wsgi.py): its cache listener connected, so what it may
    # keep locally (balances, the write freeze) is kept; without one every write reads the freeze.
    from fivedocks import coherence

    listener = coherence.start_listener()
    if listener is not None:
        deadline = time.monotonic() + 10
        while not listener.connected and time.monotonic() < deadline:
            time.sleep(0.01)

    bench = Bench(
        reads=reads,
        uncached_reads=reads,
        mix_reads=reads,
        seconds=seconds,
        rounds=2 if args.quick else 5,
        active_users=args.active_users,
    )
    bench.remove_bench_rows()
    try:
        bench.create_users()
        print("balance reads ...", file=sys.stderr)
        cached, uncached = bench.bench_reads()
        print("mix ...", file=sys.stderr)
        mix = bench.bench_mix()
        print("throughput ...", file=sys.stderr)
        throughput = bench.bench_throughput()
        print("hold + capture ...", file=sys.stderr)
        holds = bench.bench_holds()
        ledger_mismatches = bench.check_ledger()
        report, ok = render(args, bench, cached, uncached, mix, throughput, ledger_mismatches, holds)
    finally:
        bench.remove_bench_rows()
        connection.close()
        coherence.stop_listener()

    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report)
    return Measured(args, bench, cached, uncached, mix, throughput, ledger_mismatches, report, ok, holds)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a short run (a few seconds)")
    parser.add_argument("--seconds", type=float, help="seconds per throughput row (default 5, quick 1)")
    parser.add_argument("--reads", type=int, help="cached reads and mix reads (default 20000, quick 2000)")
    parser.add_argument(
        "--out", default=str(ROOT / "bench" / "out" / "credits.md"), help="also write the table here"
    )
    parser.add_argument(
        "--active-users", type=int, default=ACTIVE_USERS, help="users of the read/deduct mix (default 100)"
    )
    return parser


def run(quick: bool) -> list:
    """The bench protocol (bench/common.py): the figures as rows of `make bench`'s table.

    The full report (every latency, every throughput row) goes to stderr and bench/out/credits.md.
    """
    from bench.common import compare

    m = measure(parser().parse_args(["--quick"] if quick else []))
    print(m.report, file=sys.stderr, end="")
    by_key = {(t.label, t.workers): t for t in m.throughput}
    svc8 = by_key[("service, distinct users", MAX_WORKERS)]
    raw8 = by_key[("raw SQL, distinct users", MAX_WORKERS)]
    rows = [
        compare(
            "credits: cached balance read p50",
            m.cached.p50_us,
            "µs",
            target=f"<= {TARGET_CACHED_P50_US:g}",
            note=f"credits.selectors.get_balance in process, {m.cached.count:,} reads; "
            f"p99 {m.cached.p99_us:.1f} µs; uncached p50 {m.uncached.p50_us:.0f} µs",
        ),
        compare(
            f"credits: cache hit rate, 1 deduction per 20 reads, {m.bench.active_users} users",
            m.mix["rate"] * 100,
            "%",
            target=f">= {TARGET_HIT_RATE * 100:g}",
            note=f"{m.mix['reads']:,} reads, {m.mix['deductions']:,} deductions, "
            f"{m.mix['stale']} stale reads after a write",
        ),
        compare(
            f"credits: deductions/s, {MAX_WORKERS} workers, service vs raw SQL",
            svc8.per_second,
            "ops/s",
            baseline=raw8.per_second,
            target=f">= {TARGET_SERVICE_RAW_RATIO:g}",
            note=f"distinct users, a commit per deduction, {m.bench.seconds:g} s per side in "
            f"{m.bench.rounds} alternating rounds",
        ),
    ]
    for t in m.throughput:
        path, users = t.label.split(", ", 1)
        if path != "service" or (users == "distinct users" and t.workers == MAX_WORKERS):
            continue
        raw = by_key[(f"raw SQL, {users}", t.workers)]
        workers = f"{t.workers} worker{'s' * (t.workers > 1)}"
        rows.append(
            compare(
                f"credits: deductions/s, {workers}, {users}", t.per_second, "ops/s", baseline=raw.per_second
            )
        )
    hold_svc, hold_raw = ({t.label: t for t in m.holds}[k] for k in ("service", "raw SQL"))
    rows.append(
        compare(
            f"credits: hold + capture pairs/s, {MAX_WORKERS} workers, service vs raw SQL",
            hold_svc.per_second,
            "pairs/s",
            baseline=hold_raw.per_second,
            note="distinct users; open_hold + capture_hold (two transactions) vs the same statements "
            f"through plain psycopg; {m.bench.seconds:g} s per side in {m.bench.rounds} alternating rounds",
        )
    )
    errors = sum(t.errors for t in [*m.throughput, *m.holds])
    problems = m.ledger_mismatches + m.mix["stale"] + errors
    rows.append(
        compare(
            "credits: ledger mismatches, stale reads, errors",
            problems,
            "",
            target="<= 0",
            note=f"{m.ledger_mismatches} accounts whose balance is not their ledger sum, "
            f"{m.mix['stale']} stale reads, {errors} failed operations",
        )
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    m = measure(parser().parse_args(argv))
    print(m.report, end="")
    return 0 if m.ok else 1


if __name__ == "__main__":
    sys.exit(main())
