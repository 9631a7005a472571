"""The caller's balance over real HTTP: fivedocks's `GET /api/credits/` against the KV store.

A benchmark, not a test. It builds its own database (fd_bench_http by default), seeds N users
with balances through `credits.services` and DRF tokens, writes the same balances to Redis db 7
in the platform's layout (`user_credits:{id}`, JSON encoded twice), then starts a production
server on 127.0.0.1 (gunicorn, 2 gthread workers, DEBUG=0, fresh SECRET_KEY/TOKEN_ENCRYPTION_KEYS, plain
HTTP) with DJANGO_SETTINGS_MODULE=bench.settings: the product's URLs plus the KV baseline view
(bench/kv_baseline.py) and the framework ceiling (bench/ceiling.py: a constant answer), so all
three go through the same gunicorn, middleware and DRF token authentication. `wrk` (or
bench/loadgen.py when wrk is missing) drives each endpoint at a fixed concurrency for a fixed
time after a warm-up, rotating the Authorization header over the N users. Run once with the
product's default per-worker local-memory cache and once with a Redis cache; with local memory a
second server runs beside the first with the credential cache off (`AUTH_CREDENTIAL_CACHE=0`).

Each cache also gets, on its freshly started server: a realistic read pattern (10,000 users,
the first N among them, each reading once per simulated minute: `_read_pattern`) and 16
connections probing `/healthz` (`_healthz_row`); both use bench/loadgen.py.

    python -m bench.http_balance [--quick]

Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/fd_bench_http; the
database is dropped and recreated), BENCH_KV_REDIS_URL (redis://127.0.0.1:6379/7, flushed),
BENCH_CACHE_REDIS_URL (redis://127.0.0.1:6379/8, flushed; empty to skip the Redis-cache run),
BENCH_WORKER_CLASS (gthread) and BENCH_THREADS (4), BENCH_LOAD_GENERATOR=python to use
bench/loadgen.py even when wrk is installed. Traffic goes to 127.0.0.1 only; the server is
stopped (by its pid) whatever happens.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench.common import Result, compare

ROOT = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/fd_bench_http")
KV_REDIS_URL = os.environ.get("BENCH_KV_REDIS_URL", "redis://127.0.0.1:6379/7")
CACHE_REDIS_URL = os.environ.get("BENCH_CACHE_REDIS_URL", "redis://127.0.0.1:6379/8")
# gthread, 4 threads: keep-alive, and a thread can run while another waits on PostgreSQL or Redis
# (sync measured slower here; see the README's Performance section).
WORKER_CLASS = os.environ.get("BENCH_WORKER_CLASS", "gthread")
THREADS = int(os.environ.get("BENCH_THREADS", "4"))
WORKERS = 2
CONCURRENCY = 16
WARMUP_LIMIT = 30  # seconds: the per-worker local-memory cache fills one worker at a time
# The product's defaults (fivedocks/settings.py), which the server runs with: stated in the notes.
BALANCE_TTL = int(os.environ.get("CREDITS_BALANCE_CACHE_TTL", "21600"))
CREDENTIAL_TTL = int(os.environ.get("AUTH_CREDENTIAL_CACHE_TTL", "3600"))
CACHALOT_TIMEOUT = int(os.environ.get("CACHALOT_TIMEOUT", "300"))
P50_TARGET = "<= 1.2"  # the plan's promise: no more than 20% slower than the KV store
RPS_TARGET = ">= 0.8"
# Issue 21: no slower than the KV store, within 80% of the framework ceiling, and the credential
# cache worth at least twice the throughput at half the median latency.
KV_P50_TARGET, KV_RPS_TARGET = "<= 1.0", ">= 1.0"
CEILING_RPS_TARGET = ">= 0.8"
# Issue 21's stricter ratios are the product's as shipped: the default local-memory cache. With a
# shared Redis cache every balance read is one more network round trip than the constant endpoint
# makes (and as many as the KV read makes): those rows are printed for comparison, untargeted.
DEFAULT_CACHE_LABEL = "locmem cache"
CREDENTIAL_RPS_TARGET, CREDENTIAL_P50_TARGET = ">= 2.0", "<= 0.5"
HIT_RATE_TARGET = ">= 95"  # percent of balance reads, steady state of the realistic pattern
WARM_MINUTE = 0.99  # a simulated minute with this share of balance hits ends the pattern's warm-up

PRODUCT_PATH = "/api/credits/"
KV_PATH = "/api/bench/kv/credits/"
CONSTANT_PATH = "/api/bench/constant/"


@dataclass(frozen=True)
class Pattern:
    """The realistic read pattern: `users` each reading once per simulated minute. Warm-up
    minutes run until one has WARM_MINUTE of its balance reads hit (each local-memory worker
    first meets each user), at most `max_warmup`; then `steady` more minutes are the steady state."""

    users: int
    max_warmup: int
    steady: int


@dataclass(frozen=True)
class Plan:
    users: int
    warmup: float  # seconds per endpoint before timing
    duration: float  # seconds timed per endpoint, split into rounds
    rounds: int
    health: float  # seconds of /healthz probing per cache
    pattern: Pattern


# Many short alternating rounds: on a shared machine a busy moment then hits both sides alike.
# wrk takes whole seconds: duration / rounds and warmup are integers. A Redis cache is warm after
# one minute of the pattern; with 2 local-memory workers and random routing a user meets a
# worker for the first time in minute k with probability 1/2^(k-1), so they need about 8. The
# quick run has fewer users (a minute then takes a quarter of the time; the shares are the same).
FULL = Plan(
    users=1000,
    warmup=3,
    duration=15,
    rounds=15,
    health=10,
    pattern=Pattern(users=10_000, max_warmup=10, steady=3),
)
QUICK = Plan(users=300, warmup=2, duration=6, rounds=6, health=5,
             pattern=Pattern(users=2_500, max_warmup=10, steady=2))  # fmt: skip


def log(message: str) -> None:
    print(f"[http_balance] {message}", file=sys.stderr, flush=True)


# --- database and data ----------------------------------------------------------------------


# The test run's variables (its explicit test mode included) never reach the measured processes.
_NOT_INHERITED = {"FIVEDOCKS_TEST_MODE", "PYTEST_VERSION", "DJANGO_SETTINGS_MODULE"}


def _recreate_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _base_env(secret_key: str, fernet_key: str) -> dict[str, str]:
    """Production settings for both this process (seeding) and the server."""
    env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
    env.update(
        DJANGO_SETTINGS_MODULE="bench.settings",
        ENV_FILE=str(ROOT / "bench" / ".no-env-file"),  # a developer's .env (DEBUG=1) must not leak in
        DATABASE_URL=DATABASE_URL,
        DEBUG="0",
        SECRET_KEY=secret_key,
        TOKEN_ENCRYPTION_KEYS=fernet_key,
        STRIPE_SECRET_KEY="sk_test_bench_unused",
        STRIPE_WEBHOOK_SECRET="whsec_bench_unused",
        SECURE_SSL_REDIRECT="0",  # plain HTTP on loopback; HSTS etc. stay as in production
        ALLOWED_HOSTS="127.0.0.1",
        CACHE_URL="locmemcache://fivedocks",
        BENCH_KV_REDIS_URL=KV_REDIS_URL,
        LOG_FORMAT="json",
        PYTHONPATH=str(ROOT),
    )
    return env


OPERATIONS = ["company_search", "contact_discovery", "individual_email", "company_and_contacts"]


def _seed(users: int) -> list[tuple[int, str, int]]:
    """N users with a welcome bonus, some purchases and a search each, through the services.
    Returns (user id, token key, balance); writes the same records to the KV store."""
    import redis
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from accounts.models import ApiToken
    from accounts.tokens import generate_key, hash_key
    from bench.kv_baseline import encode_record, kv_key
    from credits import services
    from credits.models import CreditTransaction

    call_command("migrate", verbosity=0, interactive=False)
    user_model = get_user_model()
    created = user_model.objects.bulk_create(
        [user_model(email=f"bench{i}@bench.invalid", password="!") for i in range(users)]
    )
    tokens = [generate_key() for _ in created]
    ApiToken.objects.bulk_create(
        [ApiToken(key_hash=hash_key(key), user=u) for key, u in zip(tokens, created, strict=True)]
    )
    rng = random.Random(8)
    kv = redis.Redis.from_url(KV_REDIS_URL)
    kv.flushdb()
    pipe = kv.pipeline(transaction=False)
    seeded = []
    for user, token in zip(created, tokens, strict=True):
        ms = int(time.time() * 1000)
        history = []
        result = services.grant(
            user=user, amount=250, kind=CreditTransaction.Type.BONUS, reason="Welcome bonus - 250 credits"
        )
        history.append({"type": "credit", "amount": 250, "description": "Welcome bonus", "timestamp": ms})
        if rng.random() < 0.3:
            result = services.grant(
                user=user, amount=5000, kind=CreditTransaction.Type.PURCHASE, reason="ugly-duckling"
            )
            history.append({"type": "credit", "amount": 5000, "description": "Purchase", "timestamp": ms})
        used = 0
        for operation in rng.sample(OPERATIONS, k=rng.randint(0, 2)):
            result = services.deduct(user=user, operation=operation)
            cost = services.operation_cost(operation)
            used += cost
            history.append(
                {"type": "debit", "amount": cost, "description": operation, "timestamp": ms,
                 "searchType": operation, "success": True}
            )  # fmt: skip
        record = {
            "currentBalance": result.balance,
            "lastTopUp": ms,
            "totalUsed": used,
            "isBlocked": False,
            "monthlyAllowance": 250,
            "createdAt": ms,
            "updatedAt": ms,
            "transactions": history,
            "notifications": [None, 1],
            "badges": [1],
            "easterEggs": [],
        }
        pipe.set(kv_key(user.pk), encode_record(record))
        seeded.append((user.pk, token, result.balance))
    pipe.execute()
    return seeded


@dataclass(frozen=True)
class _Entry:
    """A ledger entry for `credits.services.load_migrated_accounts` (its MigratedEntry)."""

    amount: int
    type: str
    reason: str
    created_at: datetime
    idempotency_key: str
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Account:
    """An account for `credits.services.load_migrated_accounts` (its MigratedAccount)."""

    user_id: int
    balance: int
    history: tuple[_Entry, ...]
    total_used: int = 0
    total_purchased: int | None = None
    is_blocked: bool = False
    monthly_allowance: int | None = 250
    last_top_up: datetime | None = None
    created_at: datetime | None = None
    last_updated: datetime | None = None
    metadata: dict = field(default_factory=dict)
    migration_key: str = "bench-migration"
    migration_metadata: dict = field(default_factory=dict)


def _seed_readers(first: int, count: int) -> list[str]:
    """`count` more users for the realistic read pattern, each with a token and a welcome bonus,
    written in bulk through the credits domain's own bulk path (kvmigrate's): seeding 10,000
    users one service call at a time would take minutes. Returns their token keys."""
    from django.contrib.auth import get_user_model

    from accounts.models import ApiToken
    from accounts.tokens import generate_key, hash_key
    from credits import services
    from credits.models import CreditTransaction

    user_model = get_user_model()
    keys: list[str] = []
    now = datetime.now(UTC)
    for start in range(first, first + count, 1000):
        created = user_model.objects.bulk_create(
            [
                user_model(email=f"bench{i}@bench.invalid", password="!")
                for i in range(start, min(start + 1000, first + count))
            ]
        )
        batch = [generate_key() for _ in created]
        ApiToken.objects.bulk_create(
            [ApiToken(key_hash=hash_key(key), user=u) for key, u in zip(batch, created, strict=True)]
        )
        bonus = CreditTransaction.Type.BONUS
        welcome = [_Entry(250, bonus, "Welcome bonus", now, f"bench-welcome-{u.pk}") for u in created]
        services.load_migrated_accounts(
            records=[_Account(u.pk, 250, (w,)) for u, w in zip(created, welcome, strict=True)]
        )
        keys += batch
    return keys


# --- the server ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, headers: dict[str, str] | None = None, timeout: float = 5) -> tuple[int, bytes]:
    assert url.startswith("http://127.0.0.1:"), url  # loopback only
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _resolve_prctl():
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _resolve_prctl()  # looked up before any fork: the child only makes the call
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the gunicorn master, before exec: Linux sends it SIGTERM if this process dies, even
    by SIGKILL, so no server outlives the benchmark."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


class Server:
    """gunicorn on 127.0.0.1:<free port>; always stopped (by its pid) on exit."""

    def __init__(self, env: dict[str, str], workdir: Path, label: str):
        self.env, self.workdir, self.label = env, workdir, label
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"gunicorn-{label}.log"
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "gunicorn", "fivedocks.wsgi:application",
               "--bind", f"127.0.0.1:{self.port}", "--workers", str(WORKERS),
               "--worker-class", WORKER_CLASS, "--chdir", str(ROOT),
               "--log-level", "warning", "--error-logfile", "-"]  # fmt: skip
        if WORKER_CLASS == "gthread":
            cmd += ["--threads", str(THREADS)]
        return cmd

    def __enter__(self) -> Server:
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                self.command(), cwd=ROOT, env=self.env, stdout=log_file, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )  # fmt: skip
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited at start:\n{self.log_path.read_text()[-3000:]}")
            try:
                if _get(self.base + "/healthz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer /healthz:\n{self.log_path.read_text()[-3000:]}")

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # the master stops its workers
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


# --- load -------------------------------------------------------------------------------


@dataclass
class Load:
    """What the load generator saw, merged over rounds, plus what the server counted."""

    requests: int = 0
    seconds: float = 0.0
    hist: Counter = field(default_factory=Counter)  # latency in microseconds -> requests
    errors: Counter = field(default_factory=Counter)
    server: Counter = field(default_factory=Counter)  # deltas of the server's own /metrics

    def add(self, run: dict) -> None:
        self.requests += run["requests"]
        self.seconds += run["duration_us"] / 1e6
        self.hist.update({int(us): n for us, n in run["hist"].items()})
        self.errors.update({k: v for k, v in run["errors"].items() if v})

    def percentile_ms(self, q: float) -> float:
        """The smallest latency at or below which q% of the requests finished."""
        rank, seen = q / 100 * sum(self.hist.values()), 0
        for us in sorted(self.hist):
            seen += self.hist[us]
            if seen >= rank:
                return us / 1000
        return 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def per_request(self, name: str) -> float:
        return self.server[name] / self.server["requests"] if self.server["requests"] else 0.0

    def summary(self) -> dict:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
            "rps": round(self.rps, 1),
            "p50_ms": self.percentile_ms(50),
            "p90_ms": self.percentile_ms(90),
            "p99_ms": self.percentile_ms(99),
            "max_ms": max(self.hist, default=0) / 1000,
            "errors": dict(self.errors),
            "server": dict(self.server),
        }


def _wrk() -> str | None:
    """wrk's path; None when missing or when BENCH_LOAD_GENERATOR=python asks for bench.loadgen."""
    return None if os.environ.get("BENCH_LOAD_GENERATOR") == "python" else shutil.which("wrk")


def _load(url: str, tokens_file: Path, duration: float, workdir: Path) -> dict:
    """Closed loop, CONCURRENCY connections, `duration` seconds; wrk when installed."""
    out = workdir / "wrk.json"
    out.unlink(missing_ok=True)
    wrk = _wrk()
    env = {**os.environ, "BENCH_TOKENS": str(tokens_file), "BENCH_WRK_OUT": str(out)}
    if wrk:
        threads = max(1, min(CONCURRENCY, os.cpu_count() or 1, 2))
        cmd = [wrk, f"-t{threads}", f"-c{CONCURRENCY}", f"-d{round(duration)}s", "--timeout", "5s",
               "-s", str(ROOT / "bench" / "wrk_rotate.lua"), url]  # fmt: skip
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"wrk failed ({done.returncode}): {(done.stderr or done.stdout)[-500:]}")
        return json.loads(out.read_text())
    return _loadgen(url, tokens_file, duration=duration)


def _loadgen(
    url: str, tokens_file: Path, *, duration: float, once: bool = False, health: bool = False
) -> dict:
    """bench/loadgen.py in its own process, CONCURRENCY connections: `duration` seconds rotating
    the tokens, or (`once`) each line of the file once in order; `health` checks the bodies."""
    cmd = [sys.executable, "-m", "bench.loadgen", url, "--tokens", str(tokens_file),
           "--connections", str(CONCURRENCY), "--duration", str(duration)]  # fmt: skip
    cmd += ["--once"] if once else []
    cmd += ["--health"] if health else []
    done = subprocess.run(
        cmd, env=os.environ, cwd=ROOT, check=True, capture_output=True, text=True, timeout=duration + 300
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _metrics(server: Server, token: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    status, body = _get(server.base + "/metrics", {"Authorization": f"Bearer {token}"})
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def _sum(samples: dict, name: str, **labels: str) -> float:
    return sum(
        v for (n, lbls), v in samples.items() if n == name and all((k, w) in lbls for k, w in labels.items())
    )


def _server_counts(samples: dict, view: str) -> Counter:
    """Counters of the whole server (every worker) summed; `requests` of one view only."""
    return Counter(
        requests=_sum(samples, "fivedocks_http_request_duration_seconds_count", view=view),
        queries=_sum(samples, "fivedocks_db_queries_total"),
        balance_hits=_sum(samples, "fivedocks_cache_requests_total", family="balance", result="hit"),
        balance_misses=_sum(samples, "fivedocks_cache_requests_total", family="balance", result="miss"),
        # accounts.credential_cache's entries (`auth:credential:...`): token -> user id
        credential_hits=_sum(samples, "fivedocks_cache_requests_total", family="auth", result="hit"),
        credential_misses=_sum(samples, "fivedocks_cache_requests_total", family="auth", result="miss"),
    )


def _scrape_queries(server: Server, token: str) -> float:
    """The queries one /metrics scrape runs itself (its collectors read the database: kvmigrate
    progress, the mirror's lag, holds), which the next scrape counts. Every measured delta
    contains exactly one scrape's, subtracted so that "queries per request" is the requests' own.
    The smallest of three back-to-back deltas: if they differ, the figure errs towards more."""
    totals = [_sum(_metrics(server, token), "fivedocks_db_queries_total") for _ in range(4)]
    return min(b - a for a, b in itertools.pairwise(totals))


def _delta(server: Server, token: str, view: str, before: dict, scrape_queries: float) -> Counter:
    """What the server counted for `view` since `before` (a scrape), the scrape's queries apart."""
    counts = _server_counts(_metrics(server, token), view)
    counts.subtract(_server_counts(before, view))
    counts["queries"] -= scrape_queries
    return counts


def _check_same_answers(
    server: Server, seeded: list[tuple[int, str, int]], paths=(PRODUCT_PATH, KV_PATH)
) -> None:
    """Each endpoint must give every sampled user the seeded balance (and a 200) before timing."""
    for _, key, balance in random.Random(1).sample(seeded, k=min(20, len(seeded))):
        headers = {"Authorization": f"Token {key}"}
        for path in paths:
            status, body = _get(server.base + path, headers)
            if status != 200 or json.loads(body)["balance"] != balance:
                raise RuntimeError(f"{path} answered {status} {body[:200]!r}, expected balance {balance}")


@dataclass(frozen=True)
class Side:
    """One measured endpoint on one server."""

    name: str
    server: Server
    path: str
    view: str  # the route's name, as /metrics labels its requests


@dataclass
class Probe:
    """A server with the metrics token and the queries each of its scrapes runs itself."""

    server: Server
    token: str
    scrape_queries: float = 0.0

    def scrape(self) -> dict:
        return _metrics(self.server, self.token)

    def since(self, before: dict, view: str) -> Counter:
        return _delta(self.server, self.token, view, before, self.scrape_queries)


def _warm_up(side: Side, probe: Probe, tokens_file: Path, plan: Plan, workdir: Path) -> None:
    """Fill the balance cache of every worker: repeat short runs on the product endpoint until
    fewer than 1% of its balance reads miss (or WARMUP_LIMIT seconds)."""
    spent = 0.0
    while spent < WARMUP_LIMIT:
        before = probe.scrape()
        _load(side.server.base + side.path, tokens_file, plan.warmup, workdir)
        spent += plan.warmup
        counts = probe.since(before, side.view)
        if counts["balance_misses"] < 0.01 * max(counts["requests"], 1):
            break
    log(f"warm-up: {spent:g} s on {side.name} (balance misses in the last {plan.warmup:g} s: "
        f"{counts['balance_misses']:.0f} of {counts['requests']:.0f} reads)")  # fmt: skip


def _measure(sides: list[Side], probes: dict[int, Probe], tokens_file: Path, plan: Plan, workdir: Path):
    """Warm each endpoint up, then alternate them over `plan.rounds` rounds (A B C, C B A, ...), so
    that a slow moment of a shared machine does not land on one side only."""
    for side in sides:
        if side.path == PRODUCT_PATH:  # the balance cache, per worker, per server
            _warm_up(side, probes[side.server.port], tokens_file, plan, workdir)
        else:  # the credential cache is warm already (same server, same users)
            _load(side.server.base + side.path, tokens_file, plan.warmup, workdir)
    loads = {side.name: Load() for side in sides}
    for round_no in range(plan.rounds):
        for side in sides if round_no % 2 == 0 else reversed(sides):
            probe = probes[side.server.port]
            before = probe.scrape()
            loads[side.name].add(
                _load(side.server.base + side.path, tokens_file, plan.duration / plan.rounds, workdir)
            )
            loads[side.name].server.update(probe.since(before, side.view))
    for name, load in loads.items():
        hits, misses = load.server["balance_hits"], load.server["balance_misses"]
        log(
            f"{name:32} {load.rps:7.0f} req/s  p50 {load.percentile_ms(50):6.2f} ms  "
            f"p99 {load.percentile_ms(99):6.2f} ms  {load.per_request('queries'):.3f} queries/request  "
            f"balance cache {hits:.0f} hits / {misses:.0f} misses  errors {sum(load.errors.values())}"
        )
    return loads


# --- the realistic read pattern and the health probe -----------------------------------------


def _hit_rate(minutes: list[Counter], family: str) -> float:
    hits = sum(m[f"{family}_hits"] for m in minutes)
    lookups = hits + sum(m[f"{family}_misses"] for m in minutes)
    return hits / lookups if lookups else 0.0


def _read_pattern(probe: Probe, tokens: list[str], pattern: Pattern, workdir: Path) -> tuple[list, int]:
    """Each of the users reads their balance once per simulated minute, in a new random order
    every minute, 16 at a time, on a server that has served no balance yet. Nothing in the server
    is time-based but the entries' TTLs, so a compressed minute gives the hit rate of a real one
    as long as the whole run is far shorter than the TTLs (stated in the row's note). Returns
    what the server counted in each minute, and how many of them were the warm-up."""
    rng = random.Random(21)
    minute_file = workdir / "minute.txt"
    minutes: list[Counter] = []
    warmup = 0
    while not warmup or len(minutes) < warmup + pattern.steady:
        number = len(minutes) + 1
        order = tokens[:]
        rng.shuffle(order)
        minute_file.write_text("\n".join(order) + "\n")
        before = probe.scrape()
        run = _loadgen(probe.server.base + PRODUCT_PATH, minute_file, duration=0, once=True)
        counts = probe.since(before, "credits-balance")
        counts["seconds"] = run["duration_us"] / 1e6
        counts["errors"] = sum(run["errors"].values())
        minutes.append(counts)
        log(f"minute {number}: balance cache {_hit_rate([counts], 'balance'):.1%} hits, credential cache "
            f"{_hit_rate([counts], 'credential'):.1%}, {counts['queries'] / max(counts['requests'], 1):.2f} "
            f"queries/request, {counts['seconds']:.1f} s, errors {counts['errors']:.0f}")  # fmt: skip
        if not warmup and (_hit_rate([counts], "balance") >= WARM_MINUTE or number == pattern.max_warmup):
            warmup = number  # this minute is the last of the warm-up
    return minutes, warmup


def _pattern_rows(label: str, minutes: list[Counter], warmup: int, max_warmup: int) -> list[Result]:
    steady = minutes[warmup:]
    seconds = sum(m["seconds"] for m in minutes)
    errors = sum(m["errors"] for m in minutes)
    requests = sum(m["requests"] for m in minutes)
    queries = sum(m["queries"] for m in minutes)
    users = round(requests / len(minutes)) if minutes else 0
    per_minute = ", ".join(f"{_hit_rate([m], 'balance'):.1%}" for m in minutes)
    steady_queries = sum(m["queries"] for m in steady) / max(sum(m["requests"] for m in steady), 1)
    note = (
        f"{users:,} users, each reading once per simulated minute (every user once, in a new random "
        f"order, {CONCURRENCY} connections), on a fresh server; {len(minutes)} minutes in {seconds:.0f} s "
        f"(one minute ≈ {seconds / len(minutes):.1f} s: {60 * len(minutes) / seconds:.0f}× compressed; the "
        f"balance TTL is {BALANCE_TTL} s, the credential TTL {CREDENTIAL_TTL} s, so neither expired in "
        f"the run or would in {len(minutes)} real minutes; cachalot's user rows live {CACHALOT_TIMEOUT} s: "
        f"in real time a worker would read a user's row again every {CACHALOT_TIMEOUT // 60} minutes, "
        f"not simulated, the balance figures do not depend on it); warm-up until a minute with "
        f"{WARM_MINUTE:.0%} hits (at most {max_warmup}): {warmup}, steady state = minutes "
        f"{warmup + 1}–{len(minutes)}; balance hit rate per minute {per_minute}; credential cache "
        f"{_hit_rate(minutes, 'credential'):.1%} overall, {_hit_rate(steady, 'credential'):.1%} steady; "
        f"DB queries per request {queries / max(requests, 1):.3f} overall, {steady_queries:.3f} steady"
        f"; errors {errors:.0f}"
    )  # fmt: skip
    name = "balance cache hit rate, users reading once a minute"
    rows = [
        compare(f"{name}, steady state, {label}", 100 * _hit_rate(steady, "balance"), "%",
                target=HIT_RATE_TARGET, note=note),
        compare(f"{name}, all {len(minutes)} minutes, {label}", 100 * _hit_rate(minutes, "balance"), "%"),
    ]  # fmt: skip
    if errors:
        rows[0].passed = False
    return rows


def _healthz_row(probe: Probe, label: str, seconds: float, tokens_file: Path) -> Result:
    """16 connections probing /healthz back to back: a probe fails on a lost connection, a
    timeout (5 s), a status other than 200 or a body whose `status` is not "ok"."""
    run = _loadgen(probe.server.base + "/healthz", tokens_file, duration=seconds, health=True)
    errors = run["errors"]
    failed = errors.get("health", 0) + errors.get("read", 0)
    probes = run["requests"] + errors.get("read", 0)
    seconds = run["duration_us"] / 1e6
    log(f"/healthz: {probes} probes in {seconds:.1f} s, {failed} failed")
    return compare(
        f"/healthz failed probes, {CONCURRENCY} connections, {label}", failed, "probes", target="<= 0",
        note=f"{probes:,} probes in {seconds:.1f} s ({probes / seconds:.0f}/s); "
        f"failed: {errors.get('health', 0)} not 200 + ok, {errors.get('read', 0)} lost or timed out",
    )  # fmt: skip


# --- rows ---------------------------------------------------------------------------------


def _vs_kv_rows(label: str, product: Load, kv: Load, note: str, extra: dict) -> list[Result]:
    """The earlier rows (the plan's 20% promise), unchanged, then issue 21's stricter ones."""
    strict = label == DEFAULT_CACHE_LABEL
    return [
        compare(f"HTTP balance p50, {label}", product.percentile_ms(50), "ms",
                baseline=kv.percentile_ms(50), target=P50_TARGET),
        compare(f"HTTP balance p99, {label}", product.percentile_ms(99), "ms", baseline=kv.percentile_ms(99)),
        compare(f"HTTP balance throughput, {label}", product.rps, "req/s",
                baseline=kv.rps, target=RPS_TARGET, note=note, extra=extra),
        compare(f"HTTP balance p50 vs KV, no slower, {label}", product.percentile_ms(50), "ms",
                baseline=kv.percentile_ms(50), target=KV_P50_TARGET if strict else None),
        compare(f"HTTP balance throughput vs KV, no less, {label}", product.rps, "req/s",
                baseline=kv.rps, target=KV_RPS_TARGET if strict else None),
    ]  # fmt: skip


def _ceiling_rows(label: str, product: Load, constant: Load) -> list[Result]:
    return [
        compare(f"HTTP balance throughput vs framework ceiling, {label}", product.rps, "req/s",
                baseline=constant.rps, target=CEILING_RPS_TARGET if label == DEFAULT_CACHE_LABEL else None,
                note=f"ceiling: {CONSTANT_PATH}, a constant answer behind the same gunicorn, middleware "
                f"and DRF token authentication (bench/ceiling.py)"),
        compare(f"HTTP balance p50 vs framework ceiling, {label}", product.percentile_ms(50), "ms",
                baseline=constant.percentile_ms(50)),
    ]  # fmt: skip


def _credential_rows(on: Load, off: Load) -> list[Result]:
    note = (
        f"the same {PRODUCT_PATH} on two servers up side by side in alternating rounds, the second "
        f"with AUTH_CREDENTIAL_CACHE=0; DB queries per request {on.per_request('queries'):.3f} on, "
        f"{off.per_request('queries'):.3f} off; p99 {on.percentile_ms(99):.1f} / "
        f"{off.percentile_ms(99):.1f} ms"
    )
    return [
        compare("HTTP balance throughput, credential cache on vs off, locmem cache", on.rps, "req/s",
                baseline=off.rps, target=CREDENTIAL_RPS_TARGET, note=note),
        compare("HTTP balance p50, credential cache on vs off, locmem cache", on.percentile_ms(50), "ms",
                baseline=off.percentile_ms(50), target=CREDENTIAL_P50_TARGET),
    ]  # fmt: skip


def _fail_on_errors(rows: list[Result], loads: dict[str, Load]) -> list[str]:
    """A run with errors proves nothing: its verdicts become FAIL. Returns the problems."""
    problems = [f"{name}: errors {dict(load.errors)}" for name, load in loads.items() if load.errors]
    if problems:
        for row in rows:
            row.passed = False if row.passed is not None else None
    return problems


CREDENTIAL_OFF = "fivedocks, credential cache off"


def _scenario(label, env, workdir, tokens_file, plan, seeded, metrics_token, readers) -> list[Result]:
    """One cache: the pattern and the sides on fresh servers, then /healthz under load."""
    slug = label.split()[0].lower()
    envs = {slug: env}
    if slug == "locmem":  # the credential cache's worth, measured on the default cache
        envs[f"{slug}-nocred"] = {**env, "AUTH_CREDENTIAL_CACHE": "0"}
    log(
        f"{label}: gunicorn, {WORKERS} {WORKER_CLASS} workers"
        + (", twice (credential cache on, off)" if len(envs) > 1 else "")
    )
    with ExitStack() as stack:
        servers = {}
        for name, server_env in envs.items():
            multiproc = workdir / f"prometheus-{name}"
            multiproc.mkdir()
            server_env = {
                **server_env,
                "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
                "METRICS_TOKEN": metrics_token,
            }
            servers[name] = stack.enter_context(Server(server_env, workdir, name))
        probes = {
            s.port: Probe(s, metrics_token, _scrape_queries(s, metrics_token)) for s in servers.values()
        }
        main = servers[slug]
        minutes, warmup = _read_pattern(probes[main.port], readers, plan.pattern, workdir)  # caches cold
        _check_same_answers(main, seeded)
        sides = [
            Side("fivedocks", main, PRODUCT_PATH, "credits-balance"),
            Side("KV", main, KV_PATH, "bench-kv-balance"),
            Side("constant", main, CONSTANT_PATH, "bench-constant"),
        ]
        if f"{slug}-nocred" in servers:
            off = servers[f"{slug}-nocred"]
            _check_same_answers(off, seeded, paths=(PRODUCT_PATH,))
            sides.append(Side(CREDENTIAL_OFF, off, PRODUCT_PATH, "credits-balance"))
        loads = _measure(sides, probes, tokens_file, plan, workdir)
        health = _healthz_row(probes[main.port], label, plan.health, tokens_file)
    product, kv = loads["fivedocks"], loads["KV"]
    lookups = product.server["balance_hits"] + product.server["balance_misses"]
    hit_rate = product.server["balance_hits"] / lookups if lookups else 0.0
    note = (
        f"{WORKERS} gunicorn {WORKER_CLASS} workers, {CONCURRENCY} connections, "
        f"{plan.duration:g} s per endpoint in {plan.rounds} alternating rounds after warm-up, "
        f"{plan.users} users; "
        f"balance cache hit rate {hit_rate:.1%}; DB queries per request: fivedocks "
        f"{product.per_request('queries'):.3f}, KV {kv.per_request('queries'):.3f}"
    )
    extra = {name.lower(): load.summary() for name, load in loads.items()}
    timed = _vs_kv_rows(label, product, kv, note, extra) + _ceiling_rows(label, product, loads["constant"])
    if CREDENTIAL_OFF in loads:
        timed += _credential_rows(product, loads[CREDENTIAL_OFF])
    queries = compare(
        f"HTTP balance DB queries per request, warm, {label}", product.per_request("queries"), "queries",
        target="<= 0", note=f"{product.server['queries']:.0f} queries in {product.server['requests']:.0f} "
        f"requests (server-side counters; the /metrics scrapes' own queries subtracted)",
    )  # fmt: skip
    timed.append(queries)
    problems = _fail_on_errors(timed, loads)
    if problems:
        timed[2].note += f"; {'; '.join(problems)}"
    return timed + _pattern_rows(label, minutes, warmup, plan.pattern.max_warmup) + [health]


def run(quick: bool) -> list[Result]:
    from cryptography.fernet import Fernet

    plan = QUICK if quick else FULL
    # A SIGTERM (a CI timeout, `kill`) unwinds through the finally blocks that stop the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env = _base_env(secrets.token_urlsafe(50), Fernet.generate_key().decode())
    os.environ.update(env)
    workdir = Path(tempfile.mkdtemp(prefix="fd-bench-http-"))
    try:
        _recreate_database(DATABASE_URL)
        log(f"database {urlsplit(DATABASE_URL).path.lstrip('/')} recreated; seeding {plan.users} users "
            f"(+{plan.pattern.users - plan.users} for the read pattern)")  # fmt: skip
        import django

        django.setup()
        started = time.monotonic()
        seeded = _seed(plan.users)
        readers = [key for _, key, _ in seeded] + _seed_readers(plan.users, plan.pattern.users - plan.users)
        from django.db import connections

        connections.close_all()
        generator = "wrk" if _wrk() else "bench.loadgen"
        log(f"seeded in {time.monotonic() - started:.1f} s; load generator: {generator}")
        tokens_file = workdir / "tokens.txt"
        tokens_file.write_text("\n".join(key for _, key, _ in seeded) + "\n")
        metrics_token = secrets.token_urlsafe(24)

        args = (workdir, tokens_file, plan, seeded, metrics_token, readers)
        results = _scenario(DEFAULT_CACHE_LABEL, env, *args)
        if CACHE_REDIS_URL:
            import redis

            cache_db = redis.Redis.from_url(CACHE_REDIS_URL)
            cache_db.flushdb()  # entries of an earlier run name users of a dropped database
            try:
                results += _scenario("Redis cache", {**env, "CACHE_URL": CACHE_REDIS_URL}, *args)
            finally:
                cache_db.flushdb()
        return results
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    from bench.common import main

    main(run)
