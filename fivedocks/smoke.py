"""A read-only smoke check of a deployed fivedocks, from the outside (`manage.py smoke`).

It does what an operator would do by hand after a deploy or the switch, over HTTP only:
/healthz, the API schema, one read per domain with a staff user's token, a /metrics scrape, the
KV mirror's lag and the last kvmigrate run. It writes nothing (every request is a GET; the only
write is /healthz's own cache probe on the server). It needs no database and no Django
settings of its own, so it also runs as `python -m fivedocks.smoke`.

Each check answers ok, warn (worth a look, not a failure), fail, or skip (it depends on a part
that failed: with the database down the reads are not tried, so the table names the database,
not a cascade of 500s). Exit 0 when nothing failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import requests
from prometheus_client.parser import text_string_to_metric_families

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
DEFAULT_MAX_MIRROR_LAG = 60.0
DEFAULT_TIMEOUT = 20.0  # above the server's pool timeout (10 s): a down database answers 503, not a timeout

# One GET per domain: the staff user's own data (read-only, whatever the account holds).
DOMAIN_READS = {
    "accounts": "/api/me/",
    "credits": "/api/credits/",
    "billing": "/api/billing/subscription/",
    "gmail": "/api/gmail/status/",
    "notifications": "/api/notifications/",
}
# Families /metrics must expose (counters without their `_total`, as the parser names them).
REQUIRED_FAMILIES = (
    "fivedocks_http_request_duration_seconds",
    "fivedocks_credit_operations",
    "fivedocks_webhook_events",
    "fivedocks_kv_mirror_lag_seconds",
    "fivedocks_kvmigrate_last_run_info",
)
RUN_RESULTS = {"succeeded": OK, "attention": WARN, "running": WARN, "failed": FAIL, "interrupted": FAIL}


@dataclass
class Check:
    name: str
    result: str
    detail: str
    ms: int = 0


@dataclass
class Report:
    base_url: str
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.result == FAIL]

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "base_url": self.base_url,
            "failed": self.failed,
            "checks": [asdict(c) for c in self.checks],
        }

    def table(self) -> str:
        width = max(len(c.name) for c in self.checks)
        lines = [f"{'check':<{width}}  result  {'ms':>6}  detail", "-" * (width + 40)]
        for c in self.checks:
            lines.append(f"{c.name:<{width}}  {c.result:<6}  {c.ms:>6}  {c.detail}")
        if self.ok:
            lines.append(f"smoke check of {self.base_url} passed")
        else:
            first = next(c for c in self.checks if c.result == FAIL)
            lines.append(
                f"smoke check of {self.base_url} FAILED: {', '.join(self.failed)} "
                f"(first: {first.name}: {first.detail})"
            )
        return "\n".join(lines)


class Smoke:
    def __init__(self, base_url: str, token: str, *, timeout: float, max_mirror_lag: float):
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self.max_mirror_lag = max_mirror_lag
        self.session = requests.Session()
        self._auth = {"Authorization": f"Token {token}"}
        self.report = Report(base_url=self.base)

    # --- plumbing -------------------------------------------------------------------------
    def get(self, path: str, *, auth: bool = True) -> requests.Response:
        return self.session.get(
            self.base + path, headers=self._auth if auth else {}, timeout=self.timeout, allow_redirects=False
        )

    def run_check(self, name: str, check: Callable[[], tuple[str, str]]) -> Check:
        start = time.perf_counter()
        try:
            result, detail = check()
        except requests.Timeout:
            result, detail = FAIL, f"no answer within {self.timeout:g} s"
        except requests.ConnectionError:
            result, detail = FAIL, "cannot connect"
        except requests.RequestException as exc:
            result, detail = FAIL, type(exc).__name__
        found = Check(name, result, detail, round((time.perf_counter() - start) * 1000))
        self.report.checks.append(found)
        return found

    def skip(self, name: str, why: str) -> None:
        self.report.checks.append(Check(name, SKIP, why))

    # --- the checks -----------------------------------------------------------------------
    def run(self) -> Report:
        health = self.run_check("healthz", self.healthz)
        if health.result == FAIL and ("database" in health.detail or health.detail == "cannot connect"):
            why = f"not tried: healthz failed ({health.detail})"
            for name in ("schema", *DOMAIN_READS, "metrics", "mirror", "migration"):
                self.skip(name, why)
            return self.report
        self.run_check("schema", self.schema)
        for domain, path in DOMAIN_READS.items():
            self.run_check(domain, lambda path=path: self.read(path))
        families: dict = {}
        scrape = self.run_check("metrics", lambda: self.metrics(families))
        if scrape.result == FAIL:
            self.skip("mirror", "not tried: no metrics scrape")
            self.skip("migration", "not tried: no metrics scrape")
        else:
            self.run_check("mirror", lambda: self.mirror(families))
            self.run_check("migration", lambda: self.migration(families))
        return self.report

    def healthz(self) -> tuple[str, str]:
        resp = self.get("/healthz", auth=False)
        try:
            body = resp.json()
        except ValueError:
            return FAIL, f"HTTP {resp.status_code}, not JSON"
        status = body.get("status") if isinstance(body, dict) else None
        checks = body.get("checks") if isinstance(body, dict) else None
        if not isinstance(checks, dict):
            return FAIL, f"HTTP {resp.status_code}, no checks in the answer"
        # Two shapes: {"database": true, ...} and {"database": {"ok": true, ...}, ...}.
        states = {
            name: (value.get("ok") if isinstance(value, dict) else value) for name, value in checks.items()
        }
        down = [name for name, up in states.items() if up is not True]
        parts = ", ".join(f"{name}: down" for name in down)
        if "database" in down or resp.status_code >= 500:
            return FAIL, f"HTTP {resp.status_code} {status}: {parts or 'no failed check named'}"
        if resp.status_code != 200:
            return FAIL, f"HTTP {resp.status_code}"
        if down:
            return WARN, f"{status}: {parts}"
        return OK, f"{status}: " + ", ".join(f"{name} up" for name in states)

    def schema(self) -> tuple[str, str]:
        resp = self.get("/api/schema/?format=json")
        if resp.status_code != 200:
            return FAIL, f"HTTP {resp.status_code}"
        try:
            doc = resp.json()
        except ValueError:
            return FAIL, "not JSON"
        paths = doc.get("paths") if isinstance(doc, dict) else None
        if not str(doc.get("openapi", "")).startswith("3") or not isinstance(paths, dict):
            return FAIL, "not an OpenAPI 3 document"
        missing = [p for p in DOMAIN_READS.values() if p not in paths]
        if missing:
            return FAIL, f"the deployed API lacks {', '.join(missing)} (an older version?)"
        version = doc.get("info", {}).get("version", "?")
        return OK, f"OpenAPI {doc['openapi']}, API {version}, {len(paths)} paths"

    def read(self, path: str) -> tuple[str, str]:
        resp = self.get(path)
        if resp.status_code in (401, 403):
            return FAIL, f"HTTP {resp.status_code}: the token was refused ({_error_code(resp)})"
        if resp.status_code != 200:
            return FAIL, f"GET {path}: HTTP {resp.status_code} {_error_code(resp)}".rstrip()
        try:
            body = resp.json()
        except ValueError:
            return FAIL, f"GET {path}: not JSON"
        if not isinstance(body, dict):
            return FAIL, f"GET {path}: not a JSON object"
        return OK, f"GET {path}: 200, fields {', '.join(sorted(body)[:4])}"

    def metrics(self, families: dict) -> tuple[str, str]:
        resp = self.get("/metrics")
        if resp.status_code in (401, 403):
            return FAIL, f"HTTP {resp.status_code}: /metrics needs a staff token"
        if resp.status_code != 200:
            return FAIL, f"HTTP {resp.status_code}"
        try:
            families.update({f.name: f for f in text_string_to_metric_families(resp.text)})
        except ValueError as exc:
            return FAIL, f"not Prometheus text format ({exc})"
        missing = [name for name in REQUIRED_FAMILIES if name not in families]
        if missing:
            return FAIL, f"missing {', '.join(missing)}"
        return OK, f"{len(families)} metric families"

    def mirror(self, families: dict) -> tuple[str, str]:
        samples = [s.value for s in families["fivedocks_kv_mirror_lag_seconds"].samples]
        if not samples:
            return FAIL, "fivedocks_kv_mirror_lag_seconds has no value"
        lag = max(samples)  # one sample, or one per worker in multiprocess mode
        if lag > self.max_mirror_lag:
            return FAIL, f"mirror stuck: oldest change waiting {lag:.0f} s (limit {self.max_mirror_lag:g} s)"
        return OK, f"lag {lag:.1f} s (limit {self.max_mirror_lag:g} s)"

    def migration(self, families: dict) -> tuple[str, str]:
        runs = [s.labels for s in families["fivedocks_kvmigrate_last_run_info"].samples if s.value]
        if not runs:
            return WARN, "no kvmigrate run recorded"
        run = runs[0]
        status = run.get("status", "?")
        detail = f"run {run.get('run', '?')}: {status}"
        quarantined = families.get("fivedocks_kvmigrate_quarantined_records")
        if quarantined and quarantined.samples:
            detail += f", {quarantined.samples[0].value:.0f} quarantined unresolved"
        return RUN_RESULTS.get(status, WARN), detail


def _error_code(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return ""
    return str(body.get("code", "")) if isinstance(body, dict) else ""


def smoke(
    base_url: str,
    token: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_mirror_lag: float = DEFAULT_MAX_MIRROR_LAG,
) -> Report:
    return Smoke(base_url, token, timeout=timeout, max_mirror_lag=max_mirror_lag).run()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base-url", required=True, help="the deployed service, e.g. https://fivedocks.example.com"
    )
    parser.add_argument("--token", required=True, help="a staff user's API token (never printed)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--max-mirror-lag",
        type=float,
        default=DEFAULT_MAX_MIRROR_LAG,
        help=f"seconds of KV mirror lag that fail the check (default {DEFAULT_MAX_MIRROR_LAG:g})",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per request")


def render(report: Report, *, as_json: bool) -> str:
    return json.dumps(report.as_dict(), indent=2) if as_json else report.table()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fivedocks.smoke", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    report = smoke(args.base_url, args.token, timeout=args.timeout, max_mirror_lag=args.max_mirror_lag)
    print(render(report, as_json=args.json))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
