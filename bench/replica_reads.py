"""Read throughput over HTTP with the cache cold: the primary alone against primary + replica.

A benchmark, not a test. It starts its own PostgreSQL primary and a streaming replica from the
machine's binaries (tests/pgcluster.py, free ports, a temporary folder), seeds N users with a
ledger each through `credits.services`, waits for the replica to replay it, then starts two
production servers side by side (gunicorn, 2 gthread workers each, DEBUG=0): one with the primary
only, one with `DATABASE_REPLICA_URLS` set. Both are driven on `GET /api/credits/transactions/`
(the caller's ledger: no cache holds it, and django-cachalot is off here, so every request reads
the database) over alternating rounds, so a busy moment of a shared machine hits both alike.
pg_stat_statements on each server counts where the ledger reads went.

    python -m bench.replica_reads [--quick]

On one machine the replica shares the primary's CPU and disks, so the figure shows the cost of
the routing and that the reads did move; the gain it buys on separate hosts is the primary's
freed capacity (docs/scaling.md).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import Result, compare
from bench.http_balance import Load, Server, _base_env, _load, _wrk

DATABASE = "fd_bench_replica"
PATH = "/api/credits/transactions/"


@dataclass(frozen=True)
class Plan:
    users: int
    entries: int  # ledger rows per user
    warmup: int
    duration: int
    rounds: int


FULL = Plan(users=1000, entries=20, warmup=3, duration=20, rounds=10)
QUICK = Plan(users=200, entries=10, warmup=2, duration=6, rounds=6)


def log(message: str) -> None:
    print(f"[replica_reads] {message}", file=sys.stderr, flush=True)


def _seed(plan: Plan) -> list[str]:
    """Users with tokens and `plan.entries` ledger rows each; returns the token keys."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from accounts.services import issue_api_token
    from credits import services

    call_command("migrate", verbosity=0)
    user_model = get_user_model()
    keys = []
    for n in range(plan.users):
        user = user_model.objects.create_user(email=f"bench{n}@replica.bench", username=f"bench{n}")
        services.grant(user=user, amount=100_000, kind="purchase", reason="bench: opening")
        for i in range(plan.entries - 1):
            services.deduct(user=user, operation="company_search", idempotency_key=f"bench-{n}-{i}")
        keys.append(issue_api_token(user=user))  # the hashed API keys (issue 17)
    return keys


def run(quick: bool) -> list[Result]:
    from cryptography.fernet import Fernet

    from tests.pgcluster import ledger_reads, replicated_cluster

    def ledger_calls(server) -> int:
        with server.connect(DATABASE) as conn:
            return ledger_reads(conn, DATABASE)

    plan = QUICK if quick else FULL
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="fd-bench-replica-"))
    try:
        with replicated_cluster() as cluster:
            with cluster.primary.connect() as conn:
                conn.execute(f"CREATE DATABASE {DATABASE}")
            with cluster.primary.connect(DATABASE) as conn:
                conn.execute("CREATE EXTENSION pg_stat_statements")
            env = _base_env(secrets.token_urlsafe(50), Fernet.generate_key().decode())
            env.update(DATABASE_URL=cluster.primary.url(DATABASE), CACHALOT_ENABLED="0")
            os.environ.update(env)
            import django

            django.setup()
            started = time.monotonic()
            keys = _seed(plan)
            from django.db import connections

            connections.close_all()
            cluster.wait_replayed()
            took = time.monotonic() - started
            log(f"seeded {plan.users} users x {plan.entries} ledger rows in {took:.1f} s; "
                f"load generator: {'wrk' if _wrk() else 'bench.loadgen'}")  # fmt: skip
            tokens = workdir / "tokens.txt"
            tokens.write_text("\n".join(keys) + "\n")
            replica_env = {
                **env,
                "DATABASE_REPLICA_URLS": cluster.replica.url(DATABASE),
                "READ_YOUR_WRITES_SECONDS": "0",
            }
            loads = {"primary only": Load(), "primary + replica": Load()}
            share = {"primary": 0, "replica": 0}
            with (
                Server(env, workdir, "primary-only") as alone,
                Server(replica_env, workdir, "with-replica") as paired,
            ):
                servers = {"primary only": alone, "primary + replica": paired}
                for server in servers.values():
                    _load(server.base + PATH, tokens, plan.warmup, workdir)
                seconds = max(1, plan.duration // plan.rounds)
                for n in range(plan.rounds):
                    order = list(servers) if n % 2 == 0 else list(reversed(servers))
                    for name in order:
                        before = (ledger_calls(cluster.primary), ledger_calls(cluster.replica))
                        loads[name].add(_load(servers[name].base + PATH, tokens, seconds, workdir))
                        if name == "primary + replica":
                            share["primary"] += ledger_calls(cluster.primary) - before[0]
                            share["replica"] += ledger_calls(cluster.replica) - before[1]
            alone_load, paired_load = loads["primary only"], loads["primary + replica"]
            for name, load in loads.items():
                log(f"{name}: {load.summary()}")
            moved = share["replica"] / max(share["replica"] + share["primary"], 1)
            note = (
                f"GET {PATH}, cold cache, {plan.users} users, {plan.rounds} alternating rounds; both on one "
                "machine"
            )
            errors = sum(alone_load.errors.values()) + sum(paired_load.errors.values())
            return [
                compare("ledger reads, primary only", alone_load.rps, "req/s", note=note),
                compare(
                    "ledger reads, primary + replica",
                    paired_load.rps,
                    "req/s",
                    baseline=alone_load.rps,
                    note=f"p50 {paired_load.percentile_ms(50):.1f} ms, "
                    f"primary only {alone_load.percentile_ms(50):.1f} ms",
                ),
                compare(
                    "ledger reads served by the replica",
                    moved * 100,
                    "%",
                    target=">= 95",
                    note=f"counted by pg_stat_statements on each server; HTTP errors: {errors}",
                ),
            ]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    from bench.common import main

    main(run)
