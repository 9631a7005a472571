"""Fixtures for the tests from the outside: one real server for the whole session."""

from __future__ import annotations

import secrets

import pytest

from billing.testing import StripeStandIn
from fiveducks.testing import FirebaseCerts, PlatformDatabase
from gmail.testing import FakeGoogle
from tests.liveserver import LiveServer, running_server


@pytest.fixture(scope="session")
def outside_server() -> LiveServer:
    """gunicorn with production settings on a free loopback port, its own seeded database.

    Stripe and Google cannot be reached from here: the server talks to the projects' local
    stand-ins (billing.testing, gmail.testing), running in this process for the session.
    """
    from django.conf import settings

    client_id, client_secret = "e2e-client.apps.googleusercontent.com", secrets.token_urlsafe(16)
    platform = PlatformDatabase(settings.DATABASES["default"])
    with (
        StripeStandIn() as stripe,
        FakeGoogle(client_id=client_id, client_secret=client_secret) as google,
        FirebaseCerts() as firebase,
    ):
        env = {
            # The 5Ducks platform's logins (docs/platform.md), against local stand-ins.
            "FIREBASE_PROJECT_ID": firebase.project_id,
            "FIREBASE_CERTS_URL": firebase.url,
            "PLATFORM_DATABASE_URL": platform.url,
            "PLATFORM_SESSION_SECRET": platform.secret,
            "STRIPE_SECRET_KEY": f"sk_test_{secrets.token_hex(12)}",
            "STRIPE_WEBHOOK_SECRET": f"whsec_{secrets.token_hex(16)}",
            "STRIPE_API_BASE": stripe.url,
            "STRIPE_MAX_NETWORK_RETRIES": "0",
            "GOOGLE_CLIENT_ID": client_id,
            "GOOGLE_CLIENT_SECRET": client_secret,
            "GOOGLE_AUTH_URI": google.auth_uri,
            "GOOGLE_TOKEN_URI": google.token_uri,
            "GOOGLE_REVOKE_URI": google.revoke_uri,
            "GOOGLE_USERINFO_URI": google.userinfo_uri,
            "OAUTHLIB_INSECURE_TRANSPORT": "1",  # the stand-in speaks plain http
            # The token endpoint's fuzzing signs in once per case (tests/test_fuzz_api.py).
            "THROTTLE_AUTH_TOKEN": "100000/min",
        }
        try:
            with running_server(settings.DATABASES["default"], extra_env=env) as server:
                server.firebase = firebase
                server.platform = platform
                yield server
        finally:
            platform.drop()


@pytest.fixture(scope="session")
def seed(outside_server: LiveServer) -> dict:
    return outside_server.seed


# schemathesis 4.32's lazy pytest loader reads and renames `item._nodeid`, which pytest 9.2 no
# longer has (the id lives in `_id`, read through `nodeid`). A property gives it back.
if not hasattr(pytest.Function, "_nodeid"):

    def _get_nodeid(item) -> str:
        return item.__dict__.get("_schemathesis_nodeid") or item.nodeid

    def _set_nodeid(item, value: str) -> None:
        item.__dict__["_schemathesis_nodeid"] = value

    pytest.Function._nodeid = property(_get_nodeid, _set_nodeid)
