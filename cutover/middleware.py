"""Answers 503 + Retry-After to writes on a frozen domain's API (`/api/<domain>/...`)."""

from __future__ import annotations

from cutover.models import Domain
from cutover.selectors import freeze_for
from fivedocks.api import json_error

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def domain_of(path: str) -> str | None:
    parts = path.split("/", 3)
    if len(parts) > 2 and parts[1] == "api":
        return parts[2]
    return None


class WriteFreezeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method not in SAFE_METHODS:
            domain = domain_of(request.path_info)
            if domain:
                freeze = freeze_for(domain) if domain in Domain.values else None
                if freeze is not None:
                    response = json_error(
                        request,
                        503,
                        "writes_frozen",
                        f"Writes to {domain} are paused for a moment ({freeze.reason}); "
                        f"retry in {freeze.retry_after} seconds. Reads keep working.",
                    )
                    response["Retry-After"] = str(freeze.retry_after)
                    return response
        return self.get_response(request)
