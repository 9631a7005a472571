"""Test helpers any app may import: a local Stripe stand-in and signed webhook payloads.

Stripe cannot be reached from the test machines, so the real SDK talks to `StripeStandIn`, an
HTTP server on 127.0.0.1 (random port) answering the endpoints billing calls with Stripe-shaped
JSON, recording every request, and answering Stripe-format errors on demand.

    with StripeStandIn() as stand_in, override_settings(STRIPE_API_BASE=stand_in.url): ...

or the pytest fixture `stripe_stand_in` (import it into a conftest.py).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import pytest
import stripe
from django.conf import settings

from fivedocks.testing import LocalHTTPServer


@dataclass
class RecordedRequest:
    method: str
    path: str
    params: dict
    headers: dict


@dataclass
class _Failure:
    status: int
    body: dict
    path: str | None
    times: int | None  # None: until cleared


@dataclass
class _State:
    requests: list[RecordedRequest] = field(default_factory=list)
    customers: dict[str, dict] = field(default_factory=dict)
    checkout_sessions: dict[str, dict] = field(default_factory=dict)
    portal_sessions: dict[str, dict] = field(default_factory=dict)
    idempotent: dict[str, tuple[int, dict]] = field(default_factory=dict)
    failures: list[_Failure] = field(default_factory=list)


def decode_form(body: str) -> dict:
    """Stripe's form encoding (`a[b][0][c]=v`) back into nested dicts and lists."""
    root: dict = {}
    for raw_key, value in parse_qsl(body, keep_blank_values=True):
        parts = raw_key.replace("]", "").split("[")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(root)


def _lists(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _lists(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node):
            return [node[k] for k in sorted(node, key=int)]
    return node


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def stripe_error(status: int, error_type: str, message: str, code: str | None = None, **extra) -> dict:
    """An error body in Stripe's format: {"error": {"type", "message", "code"?, ...}}."""
    error = {"type": error_type, "message": message, **extra}
    if code:
        error["code"] = code
    return {"error": error}


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer  # with .stand_in: StripeStandIn

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        path = self.path.split("?", 1)[0]
        params = decode_form(body if method == "POST" else self.path.partition("?")[2])
        stand_in = self.server.stand_in
        with stand_in.lock:
            state = stand_in.state
            state.requests.append(RecordedRequest(method, path, params, dict(self.headers.items())))
            status, payload = stand_in.answer(method, path, params, self.headers)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", _id("req"))
        if status >= 400:
            # As Stripe does for most errors: the SDK must not retry (it would only repeat them).
            self.send_header("Stripe-Should-Retry", "false")
        self.end_headers()
        self.wfile.write(data)


class StripeStandIn(LocalHTTPServer):
    """A local HTTP server answering the Stripe API calls billing makes (see module docstring)."""

    thread_name = "stripe-stand-in"

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.state = _State()

    def handler_class(self) -> type[_Handler]:
        return _Handler

    @property
    def url(self) -> str:
        return self.base_url

    # --- what tests look at ------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        with self.lock:
            return list(self.state.requests)

    def requests_to(self, path: str, method: str = "POST") -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path and r.method == method]

    @property
    def customers(self) -> dict[str, dict]:
        with self.lock:
            return dict(self.state.customers)

    def fail(
        self,
        status: int = 402,
        error_type: str = "card_error",
        message: str = "Your card was declined.",
        code: str | None = "card_declined",
        *,
        path: str | None = None,
        times: int | None = 1,
    ) -> None:
        """Answer the next `times` requests (to `path`, or any) with a Stripe-format error."""
        body = stripe_error(status, error_type, message, code)
        with self.lock:
            self.state.failures.append(_Failure(status, body, path, times))

    def clear_failures(self) -> None:
        with self.lock:
            self.state.failures.clear()

    # --- the API ---------------------------------------------------------------------------
    def answer(self, method: str, path: str, params: dict, headers: Any) -> tuple[int, dict]:
        """Runs with the lock held."""
        auth = headers.get("Authorization") or ""
        if not auth.startswith("Bearer sk_"):
            return 401, stripe_error(401, "invalid_request_error", "Invalid API Key provided.")
        failure = self._take_failure(path)
        if failure is not None:
            return failure.status, failure.body
        key = headers.get("Idempotency-Key")
        if method == "POST" and key and key in self.state.idempotent:
            return self.state.idempotent[key]
        route = _ROUTES.get((method, path))
        if route is None:
            status, body = (
                404,
                stripe_error(404, "invalid_request_error", f"Unrecognized request URL ({path})."),
            )
        else:
            status, body = route(self, params)
        if method == "POST" and key and status < 500:
            self.state.idempotent[key] = (status, body)
        return status, body

    def _take_failure(self, path: str) -> _Failure | None:
        for failure in self.state.failures:
            if failure.path in (None, path):
                if failure.times is not None:
                    failure.times -= 1
                    if failure.times <= 0:
                        self.state.failures.remove(failure)
                return failure
        return None

    def _create_customer(self, params: dict) -> tuple[int, dict]:
        customer = {
            "id": _id("cus"),
            "object": "customer",
            "created": int(time.time()),
            "email": params.get("email"),
            "name": params.get("name"),
            "metadata": params.get("metadata") or {},
            "livemode": False,
        }
        self.state.customers[customer["id"]] = customer
        return 200, customer

    def _create_checkout_session(self, params: dict) -> tuple[int, dict]:
        missing = [p for p in ("mode", "success_url", "line_items") if not params.get(p)]
        if missing:
            return 400, stripe_error(
                400,
                "invalid_request_error",
                f"Missing required param: {missing[0]}.",
                "parameter_missing",
                param=missing[0],
            )
        customer = params.get("customer")
        if customer and customer not in self.state.customers:
            return 400, stripe_error(
                400,
                "invalid_request_error",
                f"No such customer: '{customer}'",
                "resource_missing",
                param="customer",
            )
        session_id = _id("cs_test")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "created": int(time.time()),
            "mode": params["mode"],
            "customer": customer,
            "client_reference_id": params.get("client_reference_id"),
            "metadata": params.get("metadata") or {},
            "success_url": params["success_url"],
            "cancel_url": params.get("cancel_url"),
            "status": "open",
            "payment_status": "unpaid",
            "subscription": None,
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            "livemode": False,
        }
        self.state.checkout_sessions[session_id] = session
        return 200, session

    def _create_portal_session(self, params: dict) -> tuple[int, dict]:
        customer = params.get("customer")
        if customer not in self.state.customers:
            return 400, stripe_error(
                400,
                "invalid_request_error",
                f"No such customer: '{customer}'",
                "resource_missing",
                param="customer",
            )
        session_id = _id("bps")
        session = {
            "id": session_id,
            "object": "billing_portal.session",
            "created": int(time.time()),
            "customer": customer,
            "return_url": params.get("return_url"),
            "url": f"https://billing.stripe.com/p/session/test_{session_id}",
            "livemode": False,
        }
        self.state.portal_sessions[session_id] = session
        return 200, session


_ROUTES = {
    ("POST", "/v1/customers"): StripeStandIn._create_customer,
    ("POST", "/v1/checkout/sessions"): StripeStandIn._create_checkout_session,
    ("POST", "/v1/billing_portal/sessions"): StripeStandIn._create_portal_session,
}


@pytest.fixture
def stripe_stand_in(settings):
    """A running stand-in with STRIPE_API_BASE pointing at it (no retries: failures are immediate)."""
    with StripeStandIn() as stand_in:
        settings.STRIPE_API_BASE = stand_in.url
        settings.STRIPE_SECRET_KEY = "sk_test_stand_in"
        settings.STRIPE_MAX_NETWORK_RETRIES = 0
        yield stand_in


# --- webhooks ------------------------------------------------------------------------------
def make_event(
    event_type: str, obj: dict, *, event_id: str | None = None, created: int | None = None
) -> dict:
    """A Stripe event (API shape) wrapping `obj` as `data.object`."""
    return {
        "id": event_id or _id("evt"),
        "object": "event",
        "api_version": stripe.api_version,
        "created": int(time.time()) if created is None else created,
        "type": event_type,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "data": {"object": obj},
    }


def signed_payload(
    event: dict, *, secret: str | None = None, timestamp: int | None = None
) -> tuple[bytes, str]:
    """The body and `Stripe-Signature` header Stripe would send (the real v1 HMAC-SHA256 scheme)."""
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(
        payload, secret or settings.STRIPE_WEBHOOK_SECRET, timestamp=timestamp
    )
    return payload.encode(), header
