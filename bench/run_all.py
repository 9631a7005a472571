"""`make bench`: run every benchmark under bench/, write ONE table to bench/results.md, print it.

A benchmark is a module `bench/NAME.py` that defines `run(quick: bool) -> list[Result]`
(bench/common.py). Each runs in its own process (they configure Django differently), through
`python -m bench.common bench.NAME`, and its rows join the table. A script that does not define
`run` yet (and is not a helper: see HELPERS) is still run, as `python bench/NAME.py [--quick]`:
its rows join the table if it prints a `BENCH_RESULTS_JSON:` line, else its own report is
appended to results.md under its name. A benchmark that exits non-zero gets a FAIL row and makes
the exit code 1; a figure of a `run` module that misses its target does not (the table says so).

    python -m bench.run_all [--quick] [--only NAME ...] [--out bench/results.md]
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Result, load_average, machine_facts, parse, render_table

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
# Modules of the harness, not benchmarks. A module whose name starts with "_" is one too.
# kvmigrate_ab compares two revisions: a tool run by hand, not a benchmark of the tree.
HELPERS = {"common", "run_all", "settings", "urls", "kv_baseline", "ceiling", "loadgen", "kvmigrate_ab"}
TIMEOUT = 20 * 60  # seconds per benchmark


def discover() -> list[tuple[str, bool]]:
    """(module name, defines run) for every benchmark module, in name order."""
    found = []
    for path in sorted(BENCH_DIR.glob("*.py")):
        name = path.stem
        if name.startswith("_") or name in HELPERS:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        has_run = any(isinstance(node, ast.FunctionDef) and node.name == "run" for node in tree.body)
        found.append((name, has_run))
    return found


def run_one(name: str, has_run: bool, quick: bool) -> tuple[list[Result], str, int, float]:
    """Rows, the module's own output (when it printed no rows), exit code, seconds."""
    flag = ["--quick"] if quick else []
    if has_run:
        cmd = [sys.executable, "-m", "bench.common", f"bench.{name}", *flag]
    else:
        cmd = [sys.executable, str(BENCH_DIR / f"{name}.py"), *flag]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    print(f"== bench/{name}.py", flush=True)
    started = time.monotonic()
    try:
        # stderr (progress) streams to the terminal; stdout carries the report and the rows.
        done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, timeout=TIMEOUT)
        output, code = done.stdout, done.returncode
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout or ""
        output, code = partial.decode() if isinstance(partial, bytes) else partial, -1
    seconds = time.monotonic() - started
    results = parse(output)
    if results is None:
        return [], output, code, seconds
    return results, "", code, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (a rough look, not the figures)")
    parser.add_argument("--only", nargs="*", help="module names, e.g. http_balance")
    parser.add_argument("--out", default=str(BENCH_DIR / "results.md"))
    args = parser.parse_args(argv)

    facts = machine_facts(
        postgres_url=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    rows: list[Result] = []
    reports: list[tuple[str, str]] = []
    failed = False
    for name, has_run in discover():
        if args.only and name not in args.only:
            continue
        results, output, code, seconds = run_one(name, has_run, args.quick)
        rows += results
        if output.strip():
            print(output, end="" if output.endswith("\n") else "\n")
            reports.append((name, output))
        if code != 0:
            failed = True
            rows.append(Result(f"bench/{name}.py", float(code), "exit code", passed=False,
                               note=f"exited with {code} after {seconds:.0f} s"))  # fmt: skip
        print(f"== bench/{name}.py: {seconds:.0f} s, exit code {code}", flush=True)

    facts["load average at end (1/5/15 min)"] = load_average()
    text = render(rows, reports, facts, quick=args.quick)
    Path(args.out).write_text(text, encoding="utf-8")
    print()
    print(text)
    print(f"(written to {os.path.relpath(args.out, ROOT)})")
    return 1 if failed else 0


def render(rows: list[Result], reports: list[tuple[str, str]], facts: dict, *, quick: bool) -> str:
    lines = [
        "# fivedocks benchmark results",
        "",
        "Written by `make bench` (bench/run_all.py); every figure is measured on the machine below."
        + (" **Quick run: rough figures, not the reference ones.**" if quick else ""),
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in facts.items()),
        "",
        render_table(rows),
    ]
    for name, output in reports:
        lines += ["", f"## bench/{name}.py (its own report)", "", "```", output.rstrip(), "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
