"""GET /metrics: Prometheus text format, for staff or a scraper holding METRICS_TOKEN."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from rest_framework.exceptions import AuthenticationFailed

from accounts.public import HashedTokenAuthentication
from fivedocks.api import json_error
from fivedocks.metrics import scrape_registry


def _bearer_ok(request: HttpRequest) -> bool:
    expected = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if not expected or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header.removeprefix("Bearer ").encode(), expected.encode())


def _staff(request: HttpRequest) -> bool | None:
    """True for staff, False for a known non-staff caller, None when anonymous."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user.is_staff
    try:
        found = HashedTokenAuthentication().authenticate(request)
    except AuthenticationFailed:
        return None
    return found[0].is_staff if found else None


def metrics(request: HttpRequest) -> HttpResponse:
    if not _bearer_ok(request):
        staff = _staff(request)
        if staff is None:
            response = json_error(
                request, 401, "not_authenticated", "Staff credentials or the metrics token are required."
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
        if not staff:
            return json_error(request, 403, "permission_denied", "Metrics are for staff only.")
    return HttpResponse(generate_latest(scrape_registry()), content_type=CONTENT_TYPE_LATEST)
