"""Writes with the KV mirror on vs off (not a test): deductions/s through the service, same run.

    .venv/bin/python bench/mirror.py --quick
    .venv/bin/python -m bench.run_all --only mirror

With the mirror on, a deduction's transaction also records which KV key changed (one outbox
row, no rendering, no read of the ledger); the drain renders later, in `manage.py kvmirror`.
Alternating rounds of mirror off and on, each `--seconds` long, with 1 and 4 worker threads over
distinct users (each thread its own connection, a commit per deduction); the outbox is emptied
between rounds (as a running drainer keeps it short). The issue's target: on/off >= 0.8.

Database: `DATABASE_URL`, else postgres://postgres@127.0.0.1:5432/fd_bench_credits (created if
missing, migrated). Its users (`@bench-credits.invalid`) and their rows are removed at the start
and the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench.credits import (  # noqa: E402 - after the sys.path fix above
    BENCH_EMAIL_DOMAIN,
    START_BALANCE,
    configure_environment,
    deduct_worker,
    ensure_database,
    run_workers,
)
from fivedocks.domains import MIRRORED_DOMAINS  # noqa: E402

TARGET_RATIO = 0.8
MIRRORED = frozenset(MIRRORED_DOMAINS)  # every domain the KV mirror writes back


class BenchUsers:
    """The bench's own users, each with a large opening grant; removed with their rows."""

    def __init__(self, count: int):
        self.count = count
        self.run_id = uuid.uuid4().hex[:8]
        self.users: list = []

    def remove(self) -> None:
        from django.db import connection, transaction

        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT id FROM users WHERE email LIKE %s", [f"%@{BENCH_EMAIL_DOMAIN}"])
            ids = [row[0] for row in cursor.fetchall()]
            if ids:
                cursor.execute("DELETE FROM credit_transactions WHERE user_id = ANY(%s)", [ids])
                cursor.execute("DELETE FROM user_credits WHERE user_id = ANY(%s)", [ids])
                cursor.execute("DELETE FROM users WHERE id = ANY(%s)", [ids])

    def create(self) -> None:
        from accounts.models import User
        from credits import services

        self.users = User.objects.bulk_create(
            [User(email=f"m{i}-{self.run_id}@{BENCH_EMAIL_DOMAIN}", password="!") for i in range(self.count)]
        )
        for user in self.users:
            services.grant(user=user, amount=START_BALANCE, kind="bonus", reason="bench opening grant")


def measure(quick: bool, seconds: float | None = None) -> dict:
    configure_environment()
    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from cutover.models import KvOutbox

    call_command("migrate", verbosity=0)
    seconds = seconds or (1.0 if quick else 5.0)
    rounds = 2 if quick else 4
    users = BenchUsers(count=4 * 25 + 1)
    users.remove()
    figures: dict = {}
    try:
        users.create()
        for workers in (1, 4):
            groups = [users.users[i * 25 : (i + 1) * 25] for i in range(workers)]
            totals = {"off": [0, 0.0], "on": [0, 0.0]}
            for _ in range(rounds):
                for side in ("off", "on"):
                    settings.KV_MIRROR = MIRRORED if side == "on" else frozenset()
                    result = run_workers(
                        f"mirror {side}", workers, seconds, deduct_worker(groups, f"mirror-{users.run_id}")
                    )
                    if result.errors:
                        raise RuntimeError(f"{result.errors} failed deductions: {result.first_error}")
                    totals[side][0] += result.ops
                    totals[side][1] += result.seconds
                    queued = KvOutbox.objects.count()
                    if side == "on" and queued < result.ops:
                        raise RuntimeError(f"the mirror recorded {queued} changes for {result.ops} writes")
                    KvOutbox.objects.all().delete()
            figures[workers] = {side: ops / secs for side, (ops, secs) in totals.items()}
        settings.KV_MIRROR = frozenset()
    finally:
        users.remove()
        KvOutbox.objects.all().delete()
        connection.close()
    figures["seconds"], figures["rounds"] = seconds, rounds
    return figures


def run(quick: bool) -> list:
    from bench.common import compare

    figures = measure(quick)
    rows = []
    for workers in (1, 4):
        on, off = figures[workers]["on"], figures[workers]["off"]
        rows.append(
            compare(
                f"mirror: deductions/s with KV_MIRROR on vs off, {workers} worker{'s' * (workers > 1)}",
                on,
                "ops/s",
                baseline=off,
                target=f">= {TARGET_RATIO:g}",
                note=f"credits.services.deduct, distinct users, a commit each; {figures['rounds']} "
                f"alternating rounds of {figures['seconds']:g} s per side; off {off:,.0f} ops/s",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args(argv)
    figures = measure(args.quick, args.seconds)
    ok = True
    for workers in (1, 4):
        on, off = figures[workers]["on"], figures[workers]["off"]
        ratio = on / off if off else 0.0
        ok &= ratio >= TARGET_RATIO
        print(
            f"{workers} worker(s): mirror off {off:,.0f} ops/s, on {on:,.0f} ops/s, ratio {ratio:.2f} "
            f"(target >= {TARGET_RATIO:g}) {'PASS' if ratio >= TARGET_RATIO else 'FAIL'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
