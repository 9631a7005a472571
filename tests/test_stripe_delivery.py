"""Stripe's deliveries as Stripe makes them, to gunicorn with production settings: the path
without its trailing slash (a redirect is a failed delivery), a body far above Django's 2.5 MB
upload limit, NUL characters, a customer fivedocks does not know (kept, answered 2xx)."""

from __future__ import annotations

import json
import secrets
import time

import pytest
import requests
import stripe

from tests.liveserver import LiveServer

pytestmark = pytest.mark.live


def _post(server: LiveServer, path: str, event: dict) -> requests.Response:
    body = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(body, server.env["STRIPE_WEBHOOK_SECRET"])
    return requests.post(
        f"{server.url}{path}",
        data=body.encode(),
        headers={"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": header},
        allow_redirects=False,
        timeout=30,
    )


def _event(obj: dict) -> dict:
    return {
        "id": f"evt_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": int(time.time()),
        "type": "customer.subscription.updated",
        "livemode": False,
        "data": {"object": obj},
    }


def test_a_large_event_with_nul_for_an_unknown_customer_without_trailing_slash(outside_server: LiveServer):
    subscription = {
        "id": f"sub_{secrets.token_hex(8)}",
        "object": "subscription",
        "customer": f"cus_{secrets.token_hex(8)}",
        "status": "active",
        "metadata": {"note": "nul\x00here"},
        # ~3 MB, above DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB): the webhook has its own limit.
        "description": "x" * (3 * 1024 * 1024),
        "items": {"data": [{"price": {"id": "price_other_product"}}]},
    }
    event = _event(subscription)
    response = _post(outside_server, "/api/billing/webhook", event)
    assert response.status_code == 200, (response.status_code, response.text[:500], outside_server.log_tail())
    assert response.json() == {
        "received": True,
        "event_id": event["id"],
        "status": "unmatched",
        "duplicate": False,
    }
    again = _post(outside_server, "/api/billing/webhook/", event)
    assert again.status_code == 200 and again.json()["status"] == "unmatched"


def test_a_signed_array_is_400_in_the_error_shape(outside_server: LiveServer):
    body = "[]"
    header = stripe.WebhookSignature.generate_signature_header(
        body, outside_server.env["STRIPE_WEBHOOK_SECRET"]
    )
    response = requests.post(
        f"{outside_server.url}/api/billing/webhook",
        data=body,
        headers={"Content-Type": "application/json", "Stripe-Signature": header},
        timeout=10,
    )
    assert response.status_code == 400 and response.json()["code"] == "invalid_webhook"
