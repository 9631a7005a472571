"""/healthz for load balancers and operators.

Shape: `{"status": "ok" | "degraded", "checks": {name: {"ok": bool, ...}}}`. Only the primary
database is essential: without it nothing can be answered, so it alone makes the answer 503. A
cache outage or a lost cache listener costs speed, not answers (reads go to PostgreSQL), so it is
`degraded` with 200 and the instance stays in the load balancer. Later checks (replicas, ...) add
an entry to `CHECKS`; an essential one is listed in `ESSENTIAL`.
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse

from fivedocks import coherence


def _error(exc: BaseException) -> str:
    # The class only: a driver's message may carry a host name or a URL with credentials.
    return exc.__class__.__name__


def database_check() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return {"ok": cursor.fetchone() == (1,)}
    except Exception as exc:
        return {"ok": False, "error": _error(exc)}


def cache_check() -> dict:
    try:
        probe = getattr(cache, "probe", None)
        if probe is not None:
            probe()  # raises on an outage (our backends swallow errors on ordinary operations)
        else:
            cache.set("healthz:probe", 1, 10)
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": _error(exc)}


# PostgreSQL keeps notifications until every listener has read them; a full queue (8 GB by
# default) makes every NOTIFY, hence every write, fail. A stuck listener shows here first.
NOTIFY_QUEUE_LIMIT = 0.5


def listener_check() -> dict | None:
    """The cache listener of the worker that answers (absent where none runs), and how full
    PostgreSQL's notification queue is."""
    check = coherence.health()
    if check is None:
        return None
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notification_queue_usage()")
            usage = float(cursor.fetchone()[0])
    except Exception as exc:
        return {**check, "ok": False, "error": _error(exc)}
    return {**check, "ok": check["ok"] and usage < NOTIFY_QUEUE_LIMIT, "queue_usage": round(usage, 4)}


CHECKS: dict[str, Callable[[], dict | None]] = {
    "database": database_check,
    "cache": cache_check,
    "listener": listener_check,
}
ESSENTIAL = frozenset({"database"})


def healthz(request):
    checks = {}
    for name, check in CHECKS.items():
        result = check()
        if result is not None:
            checks[name] = result
    essential_ok = all(checks[name]["ok"] for name in ESSENTIAL if name in checks)
    healthy = all(result["ok"] for result in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "degraded", "checks": checks},
        status=200 if essential_ok else 503,
    )
