"""Login rate limiting (django-axes): per account and address, with a clear lockout answer.

Axes counts failed logins through the authentication backend; after AXES_FAILURE_LIMIT failures
for one account from one address, logins for that pair are refused for AXES_COOLOFF_TIME.
"""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.shortcuts import render

from fivedocks.api import json_error

LOCKOUT_MESSAGE = (
    "Too many failed sign-in attempts for this account from your address. "
    "Signing in is locked for {minutes} minutes; try again later or ask another administrator."
)


class LoginGuardBackend(AxesStandaloneBackend):
    """Axes' lockout check. A call without a request (a shell, a management command, the test
    client's login) is not a login attempt over HTTP: it is left to the next backend."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def client_ip(request) -> str | None:
    """The client address the way the API throttles see it (REST_FRAMEWORK's NUM_PROXIES)."""
    remote = request.META.get("REMOTE_ADDR")
    proxies = settings.REST_FRAMEWORK.get("NUM_PROXIES") or 0
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if proxies and forwarded:
        addresses = [part.strip() for part in forwarded.split(",") if part.strip()]
        if addresses:
            return addresses[-min(proxies, len(addresses))]
    return remote


def login_name(request, credentials) -> str | None:
    """The account tried: the admin form's `username` field or the token endpoint's `email`."""
    credentials = credentials or {}
    name = credentials.get("username") or credentials.get("email")
    if not name and request is not None:
        name = request.POST.get("username") or request.POST.get("email")
    return name.strip().lower() if name else None


def lockout_minutes() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)


def lockout_response(request, original_response=None, credentials=None):
    message = LOCKOUT_MESSAGE.format(minutes=lockout_minutes())
    if request.path.startswith("/api/"):
        response = json_error(request, 429, "locked_out", message)
    else:
        response = render(
            request,
            "admin/locked_out.html",
            {"message": message, "title": "Signing in is locked"},
            status=429,
        )
    response["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    return response
