"""The platform's client against a real gunicorn (production settings, 2 workers): its logins,
first-sight import under concurrent first requests, and the Origin check, over HTTP."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests

from tests.liveserver import LiveServer

pytestmark = pytest.mark.live

PLATFORM_ID = 8_000_001


def _server_db(server: LiveServer) -> psycopg.Connection:
    from django.conf import settings

    from tests.liveserver import _connection_kwargs

    return psycopg.connect(**{**_connection_kwargs(settings.DATABASES["default"]), "dbname": server.database})


def test_eight_concurrent_first_requests_of_a_platform_only_user(outside_server: LiveServer):
    server = outside_server
    server.platform.add_user(user_id=PLATFORM_ID, email="rush.live@example.com", username="rush")
    token = server.firebase.mint(uid="uid-rush-live", email="rush.live@example.com")

    def first_request(_):
        return requests.get(
            f"{server.url}/api/credits", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(first_request, range(8)))
    assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
    assert {a.json()["balance"] for a in answers} == {250}
    with _server_db(server) as conn:
        users = conn.execute("SELECT email, firebase_uid FROM users WHERE id = %s", [PLATFORM_ID]).fetchall()
        grants = conn.execute(
            "SELECT count(*), sum(amount) FROM credit_transactions WHERE user_id = %s", [PLATFORM_ID]
        ).fetchone()
    assert users == [("rush.live@example.com", "uid-rush-live")]
    assert grants == (1, 250)


def test_session_cookie_login_and_the_origin_check(outside_server: LiveServer):
    server = outside_server
    server.platform.add_user(user_id=PLATFORM_ID + 1, email="cookie.live@example.com")
    cookies = {"connect.sid": server.platform.login(PLATFORM_ID + 1)}
    assert requests.get(f"{server.url}/api/credits", cookies=cookies, timeout=30).json()["balance"] == 250
    body = {"contactId": 7, "searchType": "hunter", "emailFound": True}
    url = f"{server.url}/api/credits/deduct-individual-email"
    forged = requests.post(
        url, json=body, cookies=cookies, headers={"Origin": "https://evil.example"}, timeout=30
    )
    assert forged.status_code == 403
    no_origin = requests.post(url, json=body, cookies=cookies, timeout=30)
    assert no_origin.status_code == 403
    same = requests.post(url, json=body, cookies=cookies, headers={"Origin": server.url}, timeout=30)
    assert same.status_code == 200, same.text
    assert same.json()["newBalance"] == 230
    wrong = {"connect.sid": server.platform.login(PLATFORM_ID + 1, secret="not-the-secret")}
    assert requests.get(f"{server.url}/api/credits", cookies=wrong, timeout=30).status_code == 401


def test_a_token_for_a_user_in_neither_system(outside_server: LiveServer):
    server = outside_server
    token = server.firebase.mint(uid="uid-ghost-live", email="ghost.live@example.com")
    response = requests.get(
        f"{server.url}/api/credits", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert response.status_code == 401
    assert response.json() == {"message": "Authentication required"}
    with _server_db(server) as conn:
        assert conn.execute(
            "SELECT count(*) FROM users WHERE email = 'ghost.live@example.com'"
        ).fetchone() == (0,)
