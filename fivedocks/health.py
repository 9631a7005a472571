"""/healthz for load balancers: 200 when the database and the cache answer, else 503."""

from __future__ import annotations

import uuid

from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse

from fivedocks import replicas


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:
        return False


def _cache_ok() -> bool:
    try:
        probe = uuid.uuid4().hex
        cache.set("healthz:probe", probe, 10)
        return cache.get("healthz:probe") == probe
    except Exception:
        return False


def healthz(request):
    checks = {"database": _database_ok(), "cache": _cache_ok()}
    healthy = all(checks.values())
    body = {"status": "ok" if healthy else "unavailable", "checks": checks}
    # Each replica, in the shape `{"ok", "up", "lag_seconds", ...}`: one that is down or late
    # costs speed (its reads go to the primary), never availability, so it is `degraded`, 200.
    replica_checks = replicas.health_checks()
    checks.update(replica_checks)
    if healthy and not all(check["ok"] for check in replica_checks.values()):
        body["status"] = "degraded"
    return JsonResponse(body, status=200 if healthy else 503)
