"""What every benchmark shares: the Result row, target checks, the table and the machine facts.

A benchmark module `bench/NAME.py` defines `run(quick: bool) -> list[Result]`. `run_all` runs
each one in its own process (each configures Django its own way) through this module:

    python -m bench.common bench.NAME [--quick]

which prints the module's own output, then one line `BENCH_RESULTS_JSON: [...]` that
`run_all` parses. Running `python -m bench.NAME` directly works too (see `main`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import operator
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

MARKER = "BENCH_RESULTS_JSON: "

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}


@dataclass
class Result:
    """One figure. `ratio` is value / baseline; `target` reads like "<= 1.2" (about the ratio,
    or about the value when there is no baseline); `passed` is None for informational rows."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    ratio: float | None = None
    target: str | None = None
    passed: bool | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Result:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def compare(
    name: str,
    value: float,
    unit: str,
    *,
    baseline: float | None = None,
    target: str | None = None,
    note: str = "",
    extra: dict | None = None,
) -> Result:
    """A Result with its ratio (value / baseline) and, when a target like ">= 0.8" is given, the
    verdict on the ratio (or on the value itself when there is no baseline)."""
    ratio = value / baseline if baseline else None
    passed = None
    if target:
        op, _, limit = target.partition(" ")
        checked = ratio if baseline else value
        passed = None if checked is None else _OPS[op](checked, float(limit))
    return Result(name, value, unit, baseline, ratio, target, passed, note, extra or {})


# --- the table ----------------------------------------------------------------------------


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def _verdict(passed: bool | None) -> str:
    return "" if passed is None else ("PASS" if passed else "**FAIL**")


def render_table(results: list[Result]) -> str:
    lines = [
        "| figure | value | baseline | ratio | target | pass |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in results:
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else ""
        lines.append(
            f"| {r.name} | {_num(r.value, r.unit)} | {_num(r.baseline, r.unit)} | {ratio} "
            f"| {r.target or ''} | {_verdict(r.passed)} |"
        )
    notes = [f"- {r.name}: {r.note}" for r in results if r.note]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


# --- machine facts --------------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_gib() -> str:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "unknown"


def _postgres_version(url: str) -> str:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=5) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]
    except Exception as exc:
        return f"unavailable ({exc.__class__.__name__})"


def _redis_version(url: str) -> str:
    try:
        import redis

        return redis.Redis.from_url(url, socket_timeout=5).info("server")["redis_version"]
    except Exception as exc:
        return f"unavailable ({exc.__class__.__name__})"


def _tool_version(*cmd: str) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def machine_facts(*, postgres_url: str, redis_url: str) -> dict[str, str]:
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": _memory_gib(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "PostgreSQL": _postgres_version(postgres_url),
        "Redis": _redis_version(redis_url),
        "wrk": _tool_version("wrk", "--version").split(" Copyright")[0],
        "load average at start (1/5/15 min)": load_average(),
    }


def load_average() -> str:
    """Other work on the machine skews every figure: the table records how busy it was."""
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


# --- running one benchmark -----------------------------------------------------------------


def emit(results: list[Result]) -> None:
    """The machine-readable line run_all reads."""
    print(MARKER + json.dumps([r.to_dict() for r in results]), flush=True)


def parse(output: str) -> list[Result] | None:
    for line in reversed(output.splitlines()):
        if line.startswith(MARKER):
            return [Result.from_dict(d) for d in json.loads(line[len(MARKER) :])]
    return None


def main(run: Callable[[bool], list[Result]], argv: list[str] | None = None) -> None:
    """`python -m bench.NAME [--quick]`: run, print the table, emit the JSON line."""
    quick = "--quick" in (argv if argv is not None else sys.argv[1:])
    results = run(quick)
    print(render_table(results), flush=True)
    emit(results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Run one benchmark module and emit its results.")
    parser.add_argument("module", help="e.g. bench.http_balance")
    parser.add_argument("--quick", action="store_true")
    ns = parser.parse_args()
    main(importlib.import_module(ns.module).run, ["--quick"] if ns.quick else [])
