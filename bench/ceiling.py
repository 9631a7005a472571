"""BENCHMARK HARNESS ONLY: the framework ceiling, a constant answer behind the same authentication.

`GET /api/bench/constant/` runs everything `GET /api/credits/` runs (gunicorn, the middleware, DRF
token authentication, the IsAuthenticated permission, a JSON response of the same shape) except
reading a balance: it answers constant values. No balance endpoint can be faster than this one
in the same process, so `bench/http_balance.py` states how close the product's read comes to it.
"""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

# The product's body for a user with nothing: the same keys, so rendering costs the same.
CONSTANT_BODY = {
    "balance": 0,
    "available": 0,
    "held": 0,
    "total_purchased": 0,
    "total_used": 0,
    "is_blocked": False,
    "last_updated": None,
}


class ConstantView(APIView):
    """The caller is authenticated as for any API view; the answer never changes."""

    def get(self, request: Request) -> Response:
        return Response(CONSTANT_BODY)
