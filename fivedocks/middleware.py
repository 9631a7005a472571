"""Request id, latency and query metrics for every request."""

from __future__ import annotations

import os
import re
import socket
import time
import uuid

from django.db import connection

from fivedocks import coherence, request_context
from fivedocks.metrics import REQUEST_LATENCY, instrument_queries, method_label, view_label

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ObservabilityMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # for log lines written after this middleware returns
        token = request_context.request_id.set(request_id)
        start = time.perf_counter()
        try:
            with connection.execute_wrapper(instrument_queries):
                response = self.get_response(request)
        finally:
            request_context.request_id.reset(token)
        view = view_label(getattr(request, "resolver_match", None))
        REQUEST_LATENCY.labels(view, method_label(request.method), str(response.status_code)).observe(
            time.perf_counter() - start
        )
        response["X-Request-ID"] = request_id
        return response


class LocalCacheCoherenceMiddleware:
    """While this process's cache listener is down its local cache may be stale: the request
    is served with django-cachalot off (the balance cache checks `coherence.usable()` itself).
    Optionally names the process that answered (`SERVED_BY_HEADER`)."""

    def __init__(self, get_response):
        from django.conf import settings

        self.get_response = get_response
        self.served_by = f"{socket.gethostname()}:{os.getpid()}" if settings.SERVED_BY_HEADER else None

    def __call__(self, request):
        if coherence.usable():
            response = self.get_response(request)
        else:
            from cachalot.api import LOCAL_STORAGE

            was = getattr(LOCAL_STORAGE, "cachalot_enabled", True)
            LOCAL_STORAGE.cachalot_enabled = False
            try:
                response = self.get_response(request)
            finally:
                LOCAL_STORAGE.cachalot_enabled = was
        if self.served_by:
            response["X-Served-By"] = self.served_by
        return response
