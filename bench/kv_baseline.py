"""BENCHMARK HARNESS ONLY: the caller's balance answered from the KV store, as the platform did.

The baseline the 20% rule is measured against. It runs inside the same Django/DRF stack as the
product (same middleware, same token authentication), so the only difference between the two
endpoints is where the balance comes from: here one Redis GET of `user_credits:{id}`, whose value
is JSON encoded twice (see /work/shared/kv-format.md), decoded twice.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import redis
from django.conf import settings
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

_client: redis.Redis | None = None


def kv_client() -> redis.Redis:
    """One connection pool per process (created after gunicorn forks, on first use)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.BENCH_KV_REDIS_URL)
    return _client


def kv_key(user_id: int) -> str:
    return f"user_credits:{user_id}"


def encode_record(record: dict) -> str:
    """What the platform stored: JSON.stringify, then the client's own JSON encoding."""
    return json.dumps(json.dumps(record, separators=(",", ":")))


def decode_record(raw: bytes | str) -> dict:
    value = json.loads(raw)
    while isinstance(value, str):  # double-encoded (the platform), once-encoded tolerated
        value = json.loads(value)
    return value


def _millis(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat() if ms else None


class KVBalanceView(APIView):
    """GET the caller's `user_credits:{id}` from the KV store; 404 when the key is missing."""

    def get(self, request: Request) -> Response:
        raw = kv_client().get(kv_key(request.user.pk))
        if raw is None:
            return Response({"status": 404, "code": "not_found", "detail": "No credits."}, status=404)
        record = decode_record(raw)
        return Response(
            {
                "balance": record["currentBalance"],
                "total_used": record.get("totalUsed", 0),
                "is_blocked": record.get("isBlocked", False),
                "monthly_allowance": record.get("monthlyAllowance"),
                "last_updated": _millis(record.get("updatedAt")),
            }
        )
