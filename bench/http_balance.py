"""The caller's balance over real HTTP: fivedocks's `GET /api/credits/` against the KV store.

A benchmark, not a test. It builds its own database (fd_bench_http by default), seeds N users
with balances through `credits.services` and DRF tokens, writes the same balances to Redis db 7
in the platform's layout (`user_credits:{id}`, JSON encoded twice), then starts a production
server on 127.0.0.1 (gunicorn, 2 gthread workers, DEBUG=0, fresh SECRET_KEY/TOKEN_ENCRYPTION_KEYS, plain
HTTP) with DJANGO_SETTINGS_MODULE=bench.settings: the product's URLs plus the KV baseline view
(bench/kv_baseline.py), so both reads go through the same gunicorn, middleware and DRF token
authentication. `wrk` (or bench/loadgen.py when wrk is missing) drives each endpoint at a fixed
concurrency for a fixed time after a warm-up, rotating the Authorization header over the N users.
Run once with the product's default per-worker local-memory cache and once with a Redis cache.

    python -m bench.http_balance [--quick]

Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/fd_bench_http; the
database is dropped and recreated), BENCH_KV_REDIS_URL (redis://127.0.0.1:6379/7, flushed),
BENCH_CACHE_REDIS_URL (redis://127.0.0.1:6379/8, flushed; empty to skip the Redis-cache run),
BENCH_WORKER_CLASS (gthread) and BENCH_THREADS (4), BENCH_LOAD_GENERATOR=python to use
bench/loadgen.py even when wrk is installed. Traffic goes to 127.0.0.1 only; the server is
stopped (by its pid) whatever happens.
"""

from __future__ import annotations

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
from dataclasses import dataclass, field
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
P50_TARGET = "<= 1.2"
RPS_TARGET = ">= 0.8"

PRODUCT_PATH = "/api/credits/"
KV_PATH = "/bench/kv/credits/"


@dataclass(frozen=True)
class Plan:
    users: int
    warmup: float  # seconds per endpoint before timing
    duration: float  # seconds timed per endpoint, split into rounds
    rounds: int


# Many short alternating rounds: on a shared machine a busy moment then hits both sides alike.
# wrk takes whole seconds: duration / rounds and warmup are integers.
FULL = Plan(users=1000, warmup=3, duration=15, rounds=15)
QUICK = Plan(users=300, warmup=2, duration=6, rounds=6)


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
    cmd = [sys.executable, "-m", "bench.loadgen", url, "--tokens", str(tokens_file),
           "--connections", str(CONCURRENCY), "--duration", str(duration)]  # fmt: skip
    done = subprocess.run(
        cmd, env=env, cwd=ROOT, check=True, capture_output=True, text=True, timeout=duration + 60
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
    return Counter(
        requests=_sum(samples, "fivedocks_http_request_duration_seconds_count", view=view),
        queries=_sum(samples, "fivedocks_db_queries_total"),
        balance_hits=_sum(samples, "fivedocks_cache_requests_total", family="balance", result="hit"),
        balance_misses=_sum(samples, "fivedocks_cache_requests_total", family="balance", result="miss"),
    )


def _check_same_answers(server: Server, seeded: list[tuple[int, str, int]]) -> None:
    """Both endpoints must give every sampled user the seeded balance (and a 200) before timing."""
    for _, key, balance in random.Random(1).sample(seeded, k=min(20, len(seeded))):
        headers = {"Authorization": f"Token {key}"}
        for path in (PRODUCT_PATH, KV_PATH):
            status, body = _get(server.base + path, headers)
            if status != 200 or json.loads(body)["balance"] != balance:
                raise RuntimeError(f"{path} answered {status} {body[:200]!r}, expected balance {balance}")


def _warm_up(server: Server, tokens_file: Path, plan: Plan, workdir: Path, metrics_token: str) -> None:
    """Fill the balance cache of every worker: repeat short runs on the product endpoint until
    fewer than 1% of its balance reads miss (or WARMUP_LIMIT seconds), then warm the KV side."""
    path, view = ENDPOINTS["fivedocks"]
    spent = 0.0
    while spent < WARMUP_LIMIT:
        before = _server_counts(_metrics(server, metrics_token), view)
        _load(server.base + path, tokens_file, plan.warmup, workdir)
        spent += plan.warmup
        counts = _server_counts(_metrics(server, metrics_token), view)
        counts.subtract(before)
        if counts["balance_misses"] < 0.01 * max(counts["requests"], 1):
            break
    log(f"warm-up: {spent:g} s on fivedocks (balance misses in the last {plan.warmup:g} s: "
        f"{counts['balance_misses']:.0f} of {counts['requests']:.0f} reads)")  # fmt: skip
    _load(server.base + ENDPOINTS["KV"][0], tokens_file, plan.warmup, workdir)


ENDPOINTS = {"fivedocks": (PRODUCT_PATH, "credits-balance"), "KV": (KV_PATH, "bench-kv-balance")}


def _measure(server: Server, tokens_file: Path, plan: Plan, workdir: Path, metrics_token: str):
    """Warm each endpoint up, then alternate them over `plan.rounds` rounds (A B, B A, ...), so
    that a slow moment of a shared machine does not land on one side only."""
    _warm_up(server, tokens_file, plan, workdir, metrics_token)
    loads = {name: Load() for name in ENDPOINTS}
    order = list(ENDPOINTS)
    for round_no in range(plan.rounds):
        for name in order if round_no % 2 == 0 else reversed(order):
            path, view = ENDPOINTS[name]
            before = _metrics(server, metrics_token)
            loads[name].add(_load(server.base + path, tokens_file, plan.duration / plan.rounds, workdir))
            after = _metrics(server, metrics_token)
            loads[name].server.update(_server_counts(after, view))
            loads[name].server.subtract(_server_counts(before, view))
    for name, load in loads.items():
        hits, misses = load.server["balance_hits"], load.server["balance_misses"]
        log(
            f"{name:9} {load.rps:7.0f} req/s  p50 {load.percentile_ms(50):6.2f} ms  "
            f"p99 {load.percentile_ms(99):6.2f} ms  {load.per_request('queries'):.2f} queries/request  "
            f"balance cache {hits:.0f} hits / {misses:.0f} misses  errors {sum(load.errors.values())}"
        )
    return loads


def _scenario(label, env, workdir, tokens_file, plan, seeded, metrics_token) -> list[Result]:
    slug = label.split()[0].lower()
    multiproc = workdir / f"prometheus-{slug}"
    multiproc.mkdir()
    env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(multiproc), "METRICS_TOKEN": metrics_token}
    log(f"{label}: gunicorn, {WORKERS} {WORKER_CLASS} workers")
    with Server(env, workdir, slug) as server:
        _check_same_answers(server, seeded)
        loads = _measure(server, tokens_file, plan, workdir, metrics_token)
    product, kv = loads["fivedocks"], loads["KV"]
    problems = [f"{name}: errors {dict(load.errors)}" for name, load in loads.items() if load.errors]
    lookups = product.server["balance_hits"] + product.server["balance_misses"]
    hit_rate = product.server["balance_hits"] / lookups if lookups else 0.0
    note = (
        f"{WORKERS} gunicorn {WORKER_CLASS} workers, {CONCURRENCY} connections, "
        f"{plan.duration:g} s per endpoint in {plan.rounds} alternating rounds after warm-up, "
        f"{plan.users} users; "
        f"balance cache hit rate {hit_rate:.1%}; DB queries per request: fivedocks "
        f"{product.per_request('queries'):.2f}, KV {kv.per_request('queries'):.2f}"
    ) + (f"; {'; '.join(problems)}" if problems else "")
    extra = {"fivedocks": product.summary(), "kv": kv.summary()}
    rows = [
        compare(f"HTTP balance p50, {label}", product.percentile_ms(50), "ms",
                baseline=kv.percentile_ms(50), target=P50_TARGET),
        compare(f"HTTP balance p99, {label}", product.percentile_ms(99), "ms", baseline=kv.percentile_ms(99)),
        compare(f"HTTP balance throughput, {label}", product.rps, "req/s",
                baseline=kv.rps, target=RPS_TARGET, note=note, extra=extra),
    ]  # fmt: skip
    if problems:  # a run with errors proves nothing
        for row in rows:
            row.passed = False if row.passed is not None else None
    return rows


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
        log(f"database {urlsplit(DATABASE_URL).path.lstrip('/')} recreated; seeding {plan.users} users")
        import django

        django.setup()
        started = time.monotonic()
        seeded = _seed(plan.users)
        from django.db import connections

        connections.close_all()
        generator = "wrk" if _wrk() else "bench.loadgen"
        log(f"seeded in {time.monotonic() - started:.1f} s; load generator: {generator}")
        tokens_file = workdir / "tokens.txt"
        tokens_file.write_text("\n".join(key for _, key, _ in seeded) + "\n")
        metrics_token = secrets.token_urlsafe(24)

        results = _scenario("locmem cache", env, workdir, tokens_file, plan, seeded, metrics_token)
        if CACHE_REDIS_URL:
            import redis

            cache_db = redis.Redis.from_url(CACHE_REDIS_URL)
            cache_db.flushdb()  # entries of an earlier run name users of a dropped database
            try:
                redis_env = {**env, "CACHE_URL": CACHE_REDIS_URL}
                results += _scenario(
                    "Redis cache", redis_env, workdir, tokens_file, plan, seeded, metrics_token
                )
            finally:
                cache_db.flushdb()
        return results
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    from bench.common import main

    main(run)
