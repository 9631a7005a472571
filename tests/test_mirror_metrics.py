"""/metrics under 2 gunicorn workers (prometheus multiprocess mode) shows the KV mirror's real lag."""

from __future__ import annotations

import re
import secrets
import tempfile

import pytest
import requests

from billing.testing import StripeStandIn
from gmail.testing import FakeGoogle
from kvmigrate.replit_server import ReplitDBServer
from tests.liveserver import manage, running_server

pytestmark = pytest.mark.live

LAG = re.compile(r"^fivedocks_kv_mirror_lag_seconds (\S+)$", re.MULTILINE)
PENDING = re.compile(r"^fivedocks_kv_mirror_pending_changes (\S+)$", re.MULTILINE)


def scrape(server, token: str) -> tuple[float, float]:
    response = requests.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200
    lag, pending = LAG.search(response.text), PENDING.search(response.text)
    assert lag and pending, "the mirror's lag is missing from the multiprocess scrape"
    # The workers' own samples are aggregated too (the multiprocess collector still works).
    assert "fivedocks_http_request_duration_seconds" in response.text
    return float(lag.group(1)), float(pending.group(1))


def test_mirror_lag_is_real_under_two_workers():
    from django.conf import settings

    token = secrets.token_urlsafe(24)
    client_id = "e2e-client.apps.googleusercontent.com"
    with (
        tempfile.TemporaryDirectory(prefix="fd-prom-") as prom_dir,
        StripeStandIn() as stripe,
        FakeGoogle(client_id=client_id, client_secret=secrets.token_urlsafe(16)) as google,
    ):
        env = {
            "PROMETHEUS_MULTIPROC_DIR": prom_dir, "METRICS_TOKEN": token, "KV_MIRROR": "on",
            # what the seed needs (tests/conftest.py's outside_server has the same)
            "STRIPE_SECRET_KEY": f"sk_test_{secrets.token_hex(12)}",
            "STRIPE_WEBHOOK_SECRET": f"whsec_{secrets.token_hex(16)}",
            "STRIPE_API_BASE": stripe.url, "STRIPE_MAX_NETWORK_RETRIES": "0",
            "GOOGLE_CLIENT_ID": client_id, "GOOGLE_CLIENT_SECRET": google.client_secret,
            "GOOGLE_AUTH_URI": google.auth_uri, "GOOGLE_TOKEN_URI": google.token_uri,
            "GOOGLE_REVOKE_URI": google.revoke_uri, "GOOGLE_USERINFO_URI": google.userinfo_uri,
            "OAUTHLIB_INSECURE_TRANSPORT": "1",
        }  # fmt: skip
        with running_server(settings.DATABASES["default"], workers=2, extra_env=env) as server:
            # The seed wrote through the services with the mirror on: its changes wait in the outbox.
            member = server.seed["member"]
            response = requests.post(
                f"{server.url}/api/credits/deduct/",
                json={"operation": "company_search", "idempotency_key": secrets.token_hex(8)},
                headers={"Authorization": f"Token {member['token']}"},
                timeout=10,
            )
            assert response.status_code == 200, response.text
            # Several scrapes: the two workers answer in turn, each reads the outbox.
            seen = [scrape(server, token) for _ in range(6)]
            assert all(lag > 0 and pending >= 1 for lag, pending in seen), seen
            with ReplitDBServer(limits=False) as store:
                manage(server.env, "kvmirror", "--target", store.url)
                assert store.store.get(f"user_credits:{member['id']}") is not None
            drained = [scrape(server, token) for _ in range(4)]
            assert all(lag == 0 and pending == 0 for lag, pending in drained), drained
