"""fivedocks.smoke without a server: a dead address, and both shapes of /healthz."""

from __future__ import annotations

import pytest

from fivedocks import smoke as smoke_module
from tests.liveserver import free_port


def test_smoke_fails_when_nothing_answers():
    report = smoke_module.smoke(f"http://127.0.0.1:{free_port()}", "x", timeout=2)
    assert not report.ok
    assert report.failed == ["healthz"]
    assert report.checks[0].detail == "cannot connect"
    assert {c.result for c in report.checks[1:]} == {"skip"}
    assert smoke_module.main(["--base-url", f"http://127.0.0.1:{free_port()}", "--token", "x", "--json"]) == 1


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, {"status": "ok", "checks": {"database": True, "cache": True}}, "ok"),
        (503, {"status": "unavailable", "checks": {"database": False, "cache": True}}, "fail"),
        (200, {"status": "ok", "checks": {"database": {"ok": True}, "cache": {"ok": True, "ms": 1}}}, "ok"),
        (200, {"status": "degraded", "checks": {"database": {"ok": True}, "cache": {"ok": False}}}, "warn"),
        (503, {"status": "degraded", "checks": {"database": {"ok": False, "error": "x"}}}, "fail"),
    ],
)
def test_smoke_reads_both_healthz_shapes(status, body, expected, monkeypatch):
    """Today's {name: bool} and the {name: {"ok": bool, ...}} shape with "degraded"."""

    class Answer:
        status_code = status

        def json(self):
            return body

    check = smoke_module.Smoke("http://x", "t", timeout=1, max_mirror_lag=60)
    monkeypatch.setattr(check, "get", lambda path, auth=True: Answer())
    result, detail = check.healthz()
    assert result == expected
    if expected != "ok":
        assert "down" in detail
