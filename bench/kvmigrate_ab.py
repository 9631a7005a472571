"""kvmigrate before and after a change, interleaved on one machine in one run: A, B, B, A, ...

A tool run by hand, not part of `make bench` (bench/run_all.py lists it among the helpers): a
refactoring that must not slow the load down is measured against the revision before it.
Revision A (`--before`, a git revision) is exported with `git archive` into a temporary
directory (no worktree registered in the shared repository); B is this working tree. Both run
with the same interpreter and packages, on the same store (bench/kvmigrate.py's, generated once
into bench/out/ by `manage.py kvgen`), each round on a fresh copy of one migrated, empty database:

- `users`: the users import (`kvmigrate --users-from users.csv`, an empty store);
- `load`: the migration (`kvmigrate --source store.jsonl`: load, ANALYZE, verify), and the
  load phase alone as the run's report gives it (`load_phase`);
- `delta`: the same migration again over the unchanged store (everything skipped by fingerprint);
- `load_cpu`, `delta_cpu`: the CPU seconds (user + system) of those two processes.

Interleaving (A B, then B A, ...) puts a busy moment of a shared machine on both sides.
Printed: each round's seconds, the median per side and the ratio B/A per figure (above 1: B is
slower), and whether both sides' reports (the migration's and the delta run's) have the same
counts: the change must not change what is moved.

    python -m bench.kvmigrate_ab [--before REV] [--rounds N] [--users N]

Databases fd_kvab_* are created and dropped (BENCH_POSTGRES_URL's server).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":  # `python bench/kvmigrate_ab.py`: bench/kvmigrate.py would shadow the app
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
    sys.path.insert(0, str(ROOT))

from bench.kvmigrate import OUT, QUICK, _checked, _db_url, _drop, _env, _recreate, _store, log  # noqa: E402

TEMPLATE, RUN = "fd_kvab_template", "fd_kvab_run"
FIGURES = ("users", "load", "load_phase", "load_cpu", "delta", "delta_cpu")


def _manage(tree: Path, env: dict, db: str, *args: str, log_to: Path) -> tuple[int, float, float]:
    """`manage.py ARGS` of the tree `tree`, on database `db`: (exit code, wall seconds, CPU seconds
    of that process, user + system: less disturbed than the wall time by the machine's other work)."""
    started = time.perf_counter()
    with open(log_to, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(
            [sys.executable, str(tree / "manage.py"), *args],
            cwd=tree,
            env={**env, "DATABASE_URL": _db_url(db), "PYTHONPATH": str(tree)},
            stdout=out,
            stderr=out,
        )
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - started, usage.ru_utime + usage.ru_stime


def _round(tree: Path, env: dict, store, workdir: Path, label: str) -> tuple[dict[str, float], dict]:
    """One side's figures on a fresh copy of the template, and its migration's counts."""
    _recreate(RUN, template=TEMPLATE)
    empty = workdir / "empty.jsonl"
    empty.write_text("")
    figures: dict[str, float] = {}
    logs = {name: workdir / f"{label}-{name}.log" for name in ("users", "load", "delta")}
    code, figures["users"], _ = _manage(
        tree, env, RUN, "kvmigrate", "--source", str(empty), "--users-from", str(store.users_csv),
        log_to=logs["users"],
    )  # fmt: skip
    _checked(code, logs["users"])
    report_path = workdir / f"{label}-report.json"
    code, figures["load"], figures["load_cpu"] = _manage(
        tree,
        env,
        RUN,
        "kvmigrate",
        "--source",
        str(store.dump),
        "--report",
        str(report_path),
        log_to=logs["load"],
    )
    _checked(code, logs["load"], allowed=(0, 3))  # 3: the store's malformed records, quarantined
    report = json.loads(report_path.read_text())
    figures["load_phase"] = report["seconds"]["load"]
    code, figures["delta"], figures["delta_cpu"] = _manage(
        tree, env, RUN, "kvmigrate", "--source", str(store.dump), log_to=logs["delta"]
    )
    _checked(code, logs["delta"], allowed=(0, 3))
    _drop(RUN)
    return figures, report["domains"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="1868d71", help="git revision of side A (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of A then B (default: %(default)s)")
    parser.add_argument(
        "--users", type=int, default=QUICK.users, help="users in the store (default: %(default)s)"
    )
    args = parser.parse_args()
    from cryptography.fernet import Fernet

    env = _env(secrets.token_urlsafe(50), Fernet.generate_key().decode())
    OUT.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="kvab-", dir=OUT))
    before = Path(tempfile.mkdtemp(prefix="kvab-before-"))
    archive = subprocess.run(
        ["git", "archive", args.before], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
    sides = {"A": before, "B": ROOT}
    figures: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    counts: dict[str, list[dict]] = {"A": [], "B": []}
    try:
        _recreate(TEMPLATE)
        code, _, _ = _manage(ROOT, env, TEMPLATE, "migrate", "--noinput", log_to=workdir / "migrate.log")
        _checked(code, workdir / "migrate.log")
        store = _store(args.users, env, workdir)
        log(f"store: {store.keys:,} keys for {store.users:,} users; A = {args.before}, B = the working tree")
        for number in range(1, args.rounds + 1):
            order = ("A", "B") if number % 2 else ("B", "A")  # A B, B A, ...: neither side always first
            for side in order:
                tree = sides[side]
                result, domains = _round(tree, env, store, workdir, f"{side}{number}")
                figures[side].append(result)
                counts[side].append(domains)
                shown = ", ".join(f"{name} {result[name]:.2f} s" for name in FIGURES)
                log(f"round {number} {side}: {shown}")
    finally:
        _drop(RUN, TEMPLATE)
        shutil.rmtree(before, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nkvmigrate A/B: A = {args.before}, B = working tree; {args.rounds} rounds interleaved, "
          f"{store.keys:,} keys, {store.users:,} users; load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"{'figure':<12} {'A median s':>11} {'B median s':>11} {'B/A':>6}")
    for name in FIGURES:
        a = statistics.median(r[name] for r in figures["A"])
        b = statistics.median(r[name] for r in figures["B"])
        print(f"{name:<12} {a:>11.2f} {b:>11.2f} {b / a:>6.3f}")
    same = all(c == counts["A"][0] for c in counts["A"] + counts["B"])
    print(f"same counts on both sides: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
