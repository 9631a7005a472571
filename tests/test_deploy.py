"""deploy/: the Prometheus alert rules and the Grafana dashboard are valid, and name only real metrics.

Validity: `promtool check rules` (Debian's prometheus package) when it is installed, and always a
YAML load with every expression parsed by a PromQL parser (promql-parser, the Rust parser
GreptimeDB uses). Real metrics: every metric an expression selects is a series of a /metrics
scrape of the live test server (gunicorn, production settings).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import promql_parser
import pytest
import requests
import yaml

from tests.liveserver import ROOT, LiveServer

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "fivedocks.json"
# Grafana's own variables, replaced as Grafana does before the query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h"}
SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gauge": ("",),
    "untyped": ("",),
    "info": ("_info",),
}


def load_rules() -> list[dict]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert isinstance(doc, dict) and isinstance(doc.get("groups"), list) and doc["groups"]
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    assert rules
    return rules


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = []
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            exprs.append(expr)
    return exprs


def selected_metrics(expr: str) -> set[str]:
    """The metric names an expression selects (its vector selectors, `__name__` matchers included)."""
    names: set[str] = set()

    def visit(node) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__":
                    names.add(matcher.value)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def test_alert_rules_pass_promtool_or_a_full_parse():
    promtool = shutil.which("promtool")
    if promtool:
        result = subprocess.run(
            [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"SUCCESS: {len(load_rules())} rules found" in result.stdout
        # and they fire when they should (mirror lag, credit errors, 5xx), not before
        result = subprocess.run(
            [promtool, "test", "rules", ALERT_TESTS.name],
            cwd=ALERT_TESTS.parent,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    # Without promtool this is the whole check; with it, a second opinion.
    for rule in load_rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"]), rule["alert"]
        assert rule["labels"]["severity"] in ("page", "warn")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        if "for" in rule:
            promql_parser.parse_duration(rule["for"])
        assert selected_metrics(rule["expr"]), rule["alert"]


def test_the_rules_cover_what_operators_must_be_told():
    exprs = {rule["alert"]: rule["expr"] for rule in load_rules()}
    wanted = {
        "credit operation errors": r'fivedocks_credit_operations_total\{result="error"\}',
        "insufficient-credit spikes": r'result="insufficient"',
        "mirror lag": r"fivedocks_kv_mirror_lag_seconds",
        "webhook failures": r"fivedocks_webhook_events_total\{result=~\"failed\|invalid\"\}",
        "cache degraded": r'fivedocks_cache_requests_total\{family="balance"',
        "5xx rate": r'status=~"5\.\."',
        "balance read p99": (
            r"histogram_quantile\(0\.99,\s*sum by \(le\) "
            r'\(rate\(fivedocks_http_request_duration_seconds_bucket\{view="credits-balance"\}'
        ),
    }
    for what, pattern in wanted.items():
        assert any(re.search(pattern, expr) for expr in exprs.values()), f"no alert on {what}"


def test_the_dashboard_is_valid_grafana_json():
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert doc["uid"] == "fivedocks" and doc["schemaVersion"] >= 36
    ids = [panel["id"] for panel in doc["panels"]]
    assert len(ids) == len(set(ids))
    assert [v["name"] for v in doc["templating"]["list"]] == ["datasource"]
    for panel in doc["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"] and {"x", "y", "w", "h"} <= set(panel["gridPos"])
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    for expr in exprs:
        assert "$" not in expr, expr  # every Grafana variable is known and replaced
        assert selected_metrics(expr), expr


def scrape_series(server: LiveServer, token: str) -> set[str]:
    """The series names a real /metrics scrape declares (`# TYPE` lines, with each type's suffixes)."""
    resp = requests.get(f"{server.url}/metrics", headers={"Authorization": f"Token {token}"}, timeout=30)
    assert resp.status_code == 200, resp.text[:300]
    series: set[str] = set()
    for line in resp.text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            base = name.removesuffix("_total") if kind == "counter" else name
            series.update(base + suffix for suffix in SERIES_SUFFIXES[kind])
        elif line and not line.startswith("#"):
            series.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return series


@pytest.mark.live
def test_rules_and_dashboard_name_only_metrics_a_real_scrape_has(outside_server: LiveServer, seed):
    series = scrape_series(outside_server, seed["staff"]["token"])
    assert "fivedocks_kv_mirror_lag_seconds" in series  # the scrape is the real one
    used: dict[str, set[str]] = {}
    for rule in load_rules():
        for name in selected_metrics(rule["expr"]):
            used.setdefault(name, set()).add(f"alert {rule['alert']}")
    for expr in dashboard_exprs():
        for name in selected_metrics(expr):
            used.setdefault(name, set()).add("dashboard")
    missing = {name: sorted(where) for name, where in used.items() if name not in series}
    assert not missing, f"metrics not in a real /metrics scrape: {missing}"
    assert {"alert", "dashboard"} <= {w.split()[0] for where in used.values() for w in where}


def test_an_unknown_metric_is_caught():
    """The check above can fail: a misspelt name is not a series of any scrape."""
    assert selected_metrics('sum(rate(fivedocks_credit_operation_total{result="error"}[5m]))') == {
        "fivedocks_credit_operation_total"
    }
    assert selected_metrics('{__name__="fivedocks_kv_mirror_lag"} > 1') == {"fivedocks_kv_mirror_lag"}
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(fivedocks_credit_operations_total[5m])")
