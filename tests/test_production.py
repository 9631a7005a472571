"""Production settings as a client sees them: gunicorn, DEBUG off, WhiteNoise, security headers."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.liveserver import LiveServer, gunicorn, manage

pytestmark = pytest.mark.live

ERROR_KEYS = {"status", "code", "detail"}


def _auth(token: str) -> dict:
    return {"Authorization": f"Token {token}"}


def test_admin_stylesheets_are_served_by_whitenoise(outside_server: LiveServer):
    page = requests.get(f"{outside_server.url}/admin/login/", timeout=10)
    assert page.status_code == 200
    sheets = re.findall(r'<link rel="stylesheet" href="([^"]+\.css)"', page.text)
    assert sheets, page.text[:500]
    for href in sheets:
        # The manifest storage names files by content hash: cached for good, compressed copies.
        assert re.search(r"\.[0-9a-f]{12}\.css$", href), href
        sheet = requests.get(f"{outside_server.url}{href}", headers={"Accept-Encoding": "gzip"}, timeout=10)
        assert sheet.status_code == 200
        assert sheet.headers["Content-Type"].startswith("text/css")
        assert "immutable" in sheet.headers.get("Cache-Control", "")
        assert sheet.text.strip()


def test_security_headers_and_hsts_behind_tls_proxy(outside_server: LiveServer):
    plain = requests.get(f"{outside_server.url}/healthz", timeout=10)
    assert plain.status_code == 200
    assert plain.headers["X-Content-Type-Options"] == "nosniff"
    assert plain.headers["X-Frame-Options"] == "DENY"
    assert plain.headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in plain.headers  # never on plain HTTP

    secure = requests.get(f"{outside_server.url}/healthz", headers={"X-Forwarded-Proto": "https"}, timeout=10)
    hsts = secure.headers["Strict-Transport-Security"]
    assert "max-age=31536000" in hsts and "includeSubDomains" in hsts and "preload" in hsts


def test_debug_is_off_errors_are_terse(outside_server: LiveServer):
    api = requests.get(f"{outside_server.url}/api/no-such-endpoint/", timeout=10)
    assert api.status_code == 404
    assert api.json() == {"status": 404, "code": "not_found", "detail": "Not found."}
    page = requests.get(f"{outside_server.url}/no-such-page", timeout=10)
    assert page.status_code == 404
    assert "Traceback" not in page.text and "DEBUG = True" not in page.text and "URLconf" not in page.text


def test_anonymous_api_call_is_401_in_the_error_shape(outside_server: LiveServer):
    response = requests.get(f"{outside_server.url}/api/me/", timeout=10)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Token")
    body = response.json()
    assert body.keys() >= ERROR_KEYS and body["status"] == 401


def test_session_and_csrf_cookies_are_http_only_where_they_should_be(outside_server: LiveServer, seed):
    session = requests.Session()
    login = session.get(f"{outside_server.url}/admin/login/", timeout=10)
    csrf = session.cookies["csrftoken"]
    staff = seed["staff"]
    response = session.post(
        f"{outside_server.url}/admin/login/?next=/admin/",
        data={"username": staff["email"], "password": staff["password"], "csrfmiddlewaretoken": csrf},
        headers={"Referer": login.url},
        timeout=10,
    )
    assert response.status_code == 200 and response.url.endswith("/admin/")
    cookie = next(c for c in session.cookies if c.name == "sessionid")
    assert cookie.has_nonstandard_attr("HttpOnly")


@pytest.fixture(scope="module")
def throttled_server(outside_server: LiveServer):
    """A second gunicorn on the same database with low throttle rates, one worker (one counter)."""
    env = {**outside_server.env, "THROTTLE_DEDUCT": "3/min", "THROTTLE_WEBHOOK": "3/min"}
    with gunicorn(env, workers=1, log_name="server-throttled.log") as server:
        yield server


def test_deductions_are_throttled_with_a_clear_429(throttled_server: LiveServer, seed):
    headers = _auth(seed["member"]["token"])
    answers = [
        requests.post(
            f"{throttled_server.url}/api/credits/deduct/",
            json={"operation": "company_search", "idempotency_key": f"throttle-{i}"},
            headers=headers,
            timeout=10,
        )
        for i in range(4)
    ]
    assert [a.status_code for a in answers[:3]] == [200, 200, 200]
    limited = answers[3]
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    body = limited.json()
    assert body["status"] == 429 and body["code"] == "throttled"
    assert "Request was throttled" in body["detail"]


def test_unsigned_webhook_is_400_in_the_error_shape(outside_server: LiveServer):
    for headers in ({}, {"Stripe-Signature": "t=1,v1=deadbeef"}):
        response = requests.post(
            f"{outside_server.url}/api/billing/webhook/",
            data=b'{"id": "evt_1", "type": "invoice.paid", "created": 1}',
            headers={"Content-Type": "application/json", **headers},
            timeout=10,
        )
        assert response.status_code == 400
        body = response.json()
        assert body["status"] == 400 and body["code"] == "invalid_webhook", body


def test_webhook_is_throttled_with_a_clear_429(throttled_server: LiveServer):
    url = f"{throttled_server.url}/api/billing/webhook/"
    answers = [requests.post(url, data=b"{}", timeout=10) for _ in range(4)]
    assert [a.status_code for a in answers[:3]] == [400, 400, 400]
    assert answers[3].status_code == 429
    assert int(answers[3].headers["Retry-After"]) > 0
    assert answers[3].json()["code"] == "throttled"


def _fresh_user_token(env: dict, credits: int) -> str:
    """A user of its own (no other test's requests share its throttle counter) and its API key."""
    code = (
        "from accounts.models import User; from accounts.services import issue_api_token; "
        "from credits import services; import secrets; "
        "u = User.objects.create_user(email=f'throttle-{secrets.token_hex(4)}@e2e.fivedocks.test'); "
        f"services.grant(user=u, amount={credits}, reason='e2e'); print(issue_api_token(user=u))"
    )
    return manage(env, "shell", "-c", code).strip().splitlines()[-1]


def test_money_path_throttles_count_across_gunicorn_workers(outside_server: LiveServer):
    """Three workers, each with its own local-memory cache: the limit still holds exactly, because
    every deduction is counted by one atomic upsert in PostgreSQL (fivedocks.throttling)."""
    env = {**outside_server.env, "THROTTLE_DEDUCT": "12/hour", "THROTTLE_WEBHOOK": "5/hour"}
    token = _fresh_user_token(env, 100_000)
    while time.time() % 3600 > 3540:  # not across an hour's boundary (a fixed window)
        time.sleep(1)
    with gunicorn(env, workers=3, log_name="server-multiworker.log") as server:

        def deduct(i: int) -> int:
            return requests.post(
                f"{server.url}/api/credits/deduct/",
                json={"operation": "company_search", "idempotency_key": f"mw-{i}"},
                headers=_auth(token),
                timeout=30,
            ).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            codes = list(pool.map(deduct, range(48)))
        assert codes.count(200) == 12, sorted(codes)
        assert codes.count(429) == 36

        # Invented X-Forwarded-For values are not new callers (NUM_PROXIES is 0 here).
        forwarded = [
            requests.post(
                f"{server.url}/api/billing/webhook/",
                data=b"{}",
                headers={"X-Forwarded-For": f"10.1.{i}.{i}", "Content-Type": "application/json"},
                timeout=10,
            ).status_code
            for i in range(8)
        ]
        assert 429 in forwarded and forwarded.count(400) <= 5, forwarded
