"""The Gmail popup flow exactly as the client drives it, and the Gmail status routes."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import signing
from rest_framework.test import APIClient

from accounts.tests.factories import UserFactory
from fiveducks.authentication import GMAIL_COOKIE, GMAIL_COOKIE_SALT
from fiveducks.tests.conftest import bearer
from gmail.models import GmailToken
from gmail.testing import fake_google  # noqa: F401 - a fixture

pytestmark = pytest.mark.django_db


@pytest.fixture
def duck(firebase_certs, fake_google):  # noqa: F811
    """The client's page: a Firebase token on every call; its cookie jar is the browser's."""
    user = UserFactory(firebase_uid="uid-duck")
    page = APIClient()
    page.credentials(**bearer(firebase_certs.mint(uid="uid-duck")))
    return page, user


def _popup_from(page: APIClient) -> APIClient:
    """`window.open(...)`: the same browser's cookies, no Authorization header."""
    popup = APIClient()
    popup.cookies = page.cookies
    return popup


def _connect(page, user, google):
    status = page.get("/api/gmail/auth-status")
    assert status.json() == {"authorized": False, "hasValidToken": False, "connected": False}
    cookie = status.cookies[GMAIL_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/api/gmail/"
    assert int(cookie["max-age"]) == 600
    popup = _popup_from(page)
    start = popup.get(f"/api/gmail/auth?userId={user.pk}")
    assert start.status_code == 302, start.content
    query = {k: v[0] for k, v in parse_qs(urlsplit(start["Location"]).query).items()}
    assert start["Location"].startswith(google.auth_uri)
    assert query["redirect_uri"] == "http://testserver/api/gmail/callback"
    assert query["access_type"] == "offline" and query["prompt"] == "consent"
    redirect = google.consent(start["Location"])
    return popup, redirect


def test_the_popup_flow_connects_gmail(duck, fake_google):  # noqa: F811
    page, user = duck
    fake_google.next_identity = ("duck@gmail.com", "Duck Person")
    popup, redirect = _connect(page, user, fake_google)
    page_done = popup.get("/api/gmail/callback", redirect)
    assert page_done.status_code == 200, page_done.content
    assert page_done["Content-Type"].startswith("text/html")
    html = page_done.content.decode()
    assert 'postMessage({type: "GMAIL_AUTH_SUCCESS"}, window.location.origin)' in html
    assert '"*"' not in html and "window.close()" in html
    token = GmailToken.objects.get(user=user)
    assert token.email == "duck@gmail.com" and token.refresh_token
    assert page.get("/api/gmail/auth-status").json() == {
        "authorized": True,
        "hasValidToken": True,
        "connected": True,
    }
    assert page.get("/api/gmail/user").json() == {"email": "duck@gmail.com", "displayName": "Duck Person"}
    assert page.get("/api/gmail/status").json() == {"connected": True, "authUrl": None}


def test_status_routes_before_connecting(duck):
    page, user = duck
    assert page.get("/api/gmail/status").json() == {
        "connected": False,
        "authUrl": f"/api/gmail/auth?userId={user.pk}",
    }
    assert page.get("/api/gmail/user").json() == {"email": None, "displayName": None}


def test_the_user_id_parameter_alone_is_never_trusted(duck, anonymous):
    _, user = duck
    response = anonymous.get(f"/api/gmail/auth?userId={user.pk}")
    assert response.status_code == 401
    assert response.json()["message"] == "Authentication required"


def test_a_popup_for_another_users_id_is_refused(duck):
    page, _user = duck
    other = UserFactory()
    page.get("/api/gmail/auth-status")
    response = _popup_from(page).get(f"/api/gmail/auth?userId={other.pk}")
    assert response.status_code == 403
    assert "error" in response.json()


def test_a_malformed_user_id(duck):
    page, _ = duck
    page.get("/api/gmail/auth-status")
    response = _popup_from(page).get("/api/gmail/auth?userId=abc")
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid user ID parameter"}


def test_the_popup_cookie_lasts_ten_minutes(duck, monkeypatch):
    page, user = duck
    page.get("/api/gmail/auth-status")
    later = time.time() + 601
    monkeypatch.setattr(signing.time, "time", lambda: later)
    assert _popup_from(page).get(f"/api/gmail/auth?userId={user.pk}").status_code == 401


def test_a_forged_popup_cookie_is_refused(anonymous, duck):
    _, user = duck
    anonymous.cookies[GMAIL_COOKIE] = signing.TimestampSigner(salt="another-salt").sign(str(user.pk))
    assert anonymous.get(f"/api/gmail/auth?userId={user.pk}").status_code == 401
    anonymous.cookies[GMAIL_COOKIE] = signing.TimestampSigner(salt=GMAIL_COOKIE_SALT).sign(str(user.pk)) + "x"
    assert anonymous.get(f"/api/gmail/auth?userId={user.pk}").status_code == 401


def test_the_platform_session_cookie_also_opens_the_popup(platform, fake_google):  # noqa: F811
    user = UserFactory()
    popup = APIClient()
    popup.cookies["connect.sid"] = platform.login(user.pk)
    start = popup.get(f"/api/gmail/auth?userId={user.pk}")
    assert start.status_code == 302
    response = popup.get("/api/gmail/callback", fake_google.consent(start["Location"]))
    assert response.status_code == 200
    assert GmailToken.objects.filter(user=user).exists()


def test_a_callback_in_another_browser_is_refused(duck, fake_google):  # noqa: F811
    page, user = duck
    _, redirect = _connect(page, user, fake_google)
    stranger = APIClient()  # no pending flow in its session
    response = stranger.get("/api/gmail/callback", redirect)
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid state parameter"}
    assert not GmailToken.objects.filter(user=user).exists()


def test_a_callback_state_is_single_use_and_tamper_evident(duck, fake_google):  # noqa: F811
    page, user = duck
    popup, redirect = _connect(page, user, fake_google)
    tampered = {**redirect, "state": redirect["state"][:-2] + "xx"}
    assert popup.get("/api/gmail/callback", tampered).status_code == 400
    assert popup.get("/api/gmail/callback", redirect).status_code == 200
    assert popup.get("/api/gmail/callback", redirect).status_code == 400


def test_a_callback_logged_in_as_someone_else_is_refused(duck, fake_google, firebase_certs):  # noqa: F811
    page, user = duck
    popup, redirect = _connect(page, user, fake_google)
    UserFactory(firebase_uid="uid-other")
    popup.credentials(**bearer(firebase_certs.mint(uid="uid-other")))
    assert popup.get("/api/gmail/callback", redirect).status_code == 400
    assert not GmailToken.objects.exists()


def test_a_denied_consent_and_a_missing_code(duck):
    page, _user = duck
    popup = _popup_from(page)
    assert popup.get("/api/gmail/callback", {"error": "access_denied"}).status_code == 400
    response = popup.get("/api/gmail/callback", {"state": "x"})
    assert response.status_code == 400
    assert response.json() == {"error": "Authorization code missing"}
