"""The one place a Stripe client is built (keys come from settings and are never logged)."""

from __future__ import annotations

from functools import lru_cache

import stripe
from django.conf import settings

from fivedocks.errors import UpstreamError


def get_client() -> stripe.StripeClient:
    """A client for the configured key and API address (`STRIPE_API_BASE`, empty: Stripe's own)."""
    key = settings.STRIPE_SECRET_KEY
    if not key:
        raise UpstreamError("Stripe is not configured (STRIPE_SECRET_KEY is empty).")
    return _client(key, settings.STRIPE_API_BASE, settings.STRIPE_MAX_NETWORK_RETRIES)


@lru_cache(maxsize=8)
def _client(key: str, api_base: str, max_network_retries: int) -> stripe.StripeClient:
    # Cached so HTTP connections are reused; a settings change (tests) gives a new client.
    base_addresses = {"api": api_base} if api_base else None
    return stripe.StripeClient(key, base_addresses=base_addresses, max_network_retries=max_network_retries)


def describe_error(exc: stripe.StripeError) -> str:
    """A short, key-free reason for an API answer: Stripe's message, type and code when given."""
    error = getattr(exc, "error", None)
    kind = getattr(error, "type", None) or type(exc).__name__
    code = getattr(exc, "code", None) or getattr(error, "code", None)
    message = getattr(exc, "user_message", None) or getattr(error, "message", None) or str(exc) or kind
    if isinstance(exc, stripe.APIConnectionError):
        return "Stripe could not be reached; try again shortly."
    label = f"{kind}/{code}" if code else kind
    status = getattr(exc, "http_status", None)
    prefix = f"Stripe answered {status}" if status else "Stripe refused the request"
    return f"{prefix} ({label}): {message}"
