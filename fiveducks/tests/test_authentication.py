"""The platform's logins, tried as its client sends them: Firebase ID tokens and `connect.sid`."""

from __future__ import annotations

import datetime as dt

import pytest

from accounts.models import User
from accounts.tests.factories import UserFactory
from credits import services as credit_services
from credits.models import CreditTransaction
from fivedocks.config import ConfigError, platform_session_secrets
from fiveducks.tests.conftest import bearer

pytestmark = pytest.mark.django_db

CREDITS = "/api/credits"


def _grant(user, amount=500):
    credit_services.grant(user=user, amount=amount, reason="test", idempotency_key=f"t-{user.pk}")


# --- Firebase ----------------------------------------------------------------------------------
def test_firebase_token_of_a_linked_user_reads_their_own_credits(anonymous, firebase_certs):
    user = UserFactory(firebase_uid="uid-alice")
    other = UserFactory(firebase_uid="uid-bob")
    _grant(user, 500)
    _grant(other, 9000)
    response = anonymous.get(CREDITS, **bearer(firebase_certs.mint(uid="uid-alice")))
    assert response.status_code == 200, response.content
    assert response.json()["balance"] == 500


def test_verified_email_links_the_firebase_uid(anonymous, firebase_certs):
    user = UserFactory(email="carol@example.com")
    token = firebase_certs.mint(uid="uid-carol", email="Carol@example.com", email_verified=True)
    assert anonymous.get(CREDITS, **bearer(token)).status_code == 200
    user.refresh_from_db()
    assert user.firebase_uid == "uid-carol"


def test_unverified_email_never_links(anonymous, firebase_certs):
    user = UserFactory(email="dave@example.com")
    token = firebase_certs.mint(uid="uid-mallory", email="dave@example.com", email_verified=False)
    response = anonymous.get(CREDITS, **bearer(token))
    assert response.status_code == 401
    assert response.json() == {"message": "Authentication required"}
    user.refresh_from_db()
    assert user.firebase_uid is None


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"issued_ago": 7200}, id="expired"),
        pytest.param({"audience": "another-project"}, id="wrong-audience"),
        pytest.param({"issuer": "https://securetoken.google.com/another-project"}, id="wrong-issuer"),
        pytest.param({"issuer": "https://accounts.google.com"}, id="google-issuer"),
        pytest.param({"sub": ""}, id="empty-subject"),
        pytest.param({"bad_signature": True}, id="bad-signature"),
        pytest.param({"tampered": True}, id="tampered-payload"),
        pytest.param({"unknown_kid": True}, id="unknown-key-id"),
    ],
)
def test_invalid_tokens_are_refused(anonymous, firebase_certs, change):
    UserFactory(firebase_uid="uid-erin")
    change = dict(change)
    kwargs = {}
    if change.pop("bad_signature", False):
        kwargs["private_key"] = firebase_certs.other_key()
    if change.pop("unknown_kid", False):
        kwargs["kid"] = "not-a-served-key"
    tampered = change.pop("tampered", False)
    token = firebase_certs.mint(uid="uid-erin", **change, **kwargs)
    if tampered:
        import base64
        import json

        head, payload, sig = token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
        claims["sub"] = claims["user_id"] = "uid-someone-else"
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        token = ".".join([head, payload, sig])
    response = anonymous.get(CREDITS, **bearer(token))
    assert response.status_code == 401, response.content
    assert response.json() == {"message": "Authentication required"}


def test_firebase_login_is_off_without_a_project_id(anonymous, firebase_certs, settings):
    UserFactory(firebase_uid="uid-frank")
    token = firebase_certs.mint(uid="uid-frank")
    settings.FIREBASE_PROJECT_ID = ""
    assert anonymous.get(CREDITS, **bearer(token)).status_code == 401


def test_certificates_are_cached_as_cache_control_allows(anonymous, firebase_certs):
    UserFactory(firebase_uid="uid-gina")
    for _ in range(3):
        assert anonymous.get(CREDITS, **bearer(firebase_certs.mint(uid="uid-gina"))).status_code == 200
    assert firebase_certs.fetches == 1


def test_certificates_without_max_age_are_fetched_again(anonymous, firebase_certs):
    firebase_certs.max_age = 0
    UserFactory(firebase_uid="uid-hal")
    for n in range(2):  # two tokens: one token's second use would not verify it again (cached)
        token = firebase_certs.mint(uid="uid-hal", issued_ago=n)
        assert anonymous.get(CREDITS, **bearer(token)).status_code == 200
    assert firebase_certs.fetches == 2


def test_a_non_jwt_bearer_is_not_judged_by_firebase(anonymous, firebase_certs):
    # Another kind of bearer credential (e.g. a service secret) is left to its own class.
    assert anonymous.get(CREDITS, HTTP_AUTHORIZATION="Bearer not-a-jwt").status_code == 401


def test_a_token_for_a_user_unknown_everywhere_is_refused_and_creates_nothing(
    anonymous, firebase_certs, platform
):
    users = User.objects.count()
    token = firebase_certs.mint(uid="uid-nobody", email="nobody@example.com")
    assert anonymous.get(CREDITS, **bearer(token)).status_code == 401
    assert User.objects.count() == users
    assert not CreditTransaction.objects.exists()


# --- The platform's Express session --------------------------------------------------------------
def test_session_cookie_logs_the_user_in(anonymous, platform):
    user = UserFactory()
    _grant(user, 700)
    anonymous.cookies["connect.sid"] = platform.login(user.pk)
    response = anonymous.get(CREDITS)
    assert response.status_code == 200, response.content
    assert response.json()["balance"] == 700


def test_rotated_secrets_newest_first_both_verify(anonymous, platform, settings):
    user = UserFactory()
    settings.PLATFORM_SESSION_SECRETS = ["the-new-secret-0123456789", platform.secret]
    anonymous.cookies["connect.sid"] = platform.login(user.pk)  # signed with the older secret
    assert anonymous.get(CREDITS).status_code == 200
    anonymous.cookies["connect.sid"] = platform.login(user.pk, secret="the-new-secret-0123456789")
    assert anonymous.get(CREDITS).status_code == 200


@pytest.mark.parametrize("case", ["wrong-secret", "expired", "unsigned", "unknown-sid", "tampered-sid"])
def test_bad_session_cookies_are_refused(anonymous, platform, case):
    user = UserFactory()
    if case == "wrong-secret":
        cookie = platform.login(user.pk, secret="not-the-platform-secret")
    elif case == "expired":
        cookie = platform.login(user.pk, expires_in=-dt.timedelta(minutes=1))
    elif case == "unsigned":
        cookie = "plain-session-id"
    elif case == "unknown-sid":
        from urllib.parse import quote

        from fiveducks.express_session import sign

        cookie = quote(sign("no-such-session", platform.secret), safe="")
    else:
        cookie = platform.login(user.pk).replace("s%3A", "s%3AX", 1)
    anonymous.cookies["connect.sid"] = cookie
    response = anonymous.get(CREDITS)
    assert response.status_code == 401
    assert response.json() == {"message": "Authentication required"}


def test_a_stale_cookie_does_not_hide_a_valid_token(anonymous, platform, firebase_certs):
    user = UserFactory(firebase_uid="uid-ivy")
    anonymous.cookies["connect.sid"] = platform.login(user.pk, expires_in=-dt.timedelta(minutes=1))
    assert anonymous.get(CREDITS, **bearer(firebase_certs.mint(uid="uid-ivy"))).status_code == 200


def test_session_login_is_off_without_the_platform_database(anonymous, platform, settings):
    user = UserFactory()
    anonymous.cookies["connect.sid"] = platform.login(user.pk)
    settings.PLATFORM_DATABASE_URL = ""
    assert anonymous.get(CREDITS).status_code == 401


# --- Cross-site requests with a cookie login -------------------------------------------------------
DEDUCT = "/api/credits/deduct-individual-email"
BODY = {"contactId": 41, "searchType": "hunter", "emailFound": True}


def _post(client, **headers):
    return client.post(DEDUCT, BODY, format="json", **headers)


def test_cross_site_post_with_a_session_cookie_is_refused_and_writes_nothing(anonymous, platform):
    user = UserFactory()
    _grant(user, 100)
    anonymous.cookies["connect.sid"] = platform.login(user.pk)
    before = CreditTransaction.objects.filter(user=user).count()
    response = _post(anonymous, HTTP_ORIGIN="https://evil.example")
    assert response.status_code == 403
    assert "message" in response.json()
    response = _post(anonymous, HTTP_REFERER="https://evil.example/page")
    assert response.status_code == 403
    response = _post(anonymous)  # neither header
    assert response.status_code == 403
    assert CreditTransaction.objects.filter(user=user).count() == before


def test_same_origin_and_trusted_origins_may_post(anonymous, platform, settings):
    user = UserFactory()
    _grant(user, 100)
    anonymous.cookies["connect.sid"] = platform.login(user.pk)
    assert _post(anonymous, HTTP_ORIGIN="http://testserver").status_code == 200
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.5ducks.ai"]
    response = anonymous.post(
        DEDUCT, {**BODY, "contactId": 42}, format="json", HTTP_ORIGIN="https://app.5ducks.ai"
    )
    assert response.status_code == 200
    response = anonymous.post(
        DEDUCT, {**BODY, "contactId": 43}, format="json", HTTP_REFERER="http://testserver/home"
    )
    assert response.status_code == 200


def test_a_bearer_token_needs_no_origin(anonymous, firebase_certs):
    user = UserFactory(firebase_uid="uid-jack")
    _grant(user, 100)
    assert _post(anonymous, **bearer(firebase_certs.mint(uid="uid-jack"))).status_code == 200


# --- Configuration -------------------------------------------------------------------------------
def test_the_platforms_fallback_secret_is_a_configuration_error():
    with pytest.raises(ConfigError, match="fallback"):
        platform_session_secrets("new-secret,temporary-secret-key", enabled=True)
    with pytest.raises(ConfigError, match="fallback"):
        platform_session_secrets("temporary-secret-key", enabled=False)


def test_an_empty_secret_is_a_configuration_error_when_session_login_is_on():
    with pytest.raises(ConfigError, match="PLATFORM_SESSION_SECRET is required"):
        platform_session_secrets(" , ", enabled=True)
    assert platform_session_secrets("", enabled=False) == []
    assert platform_session_secrets("a, b", enabled=True) == ["a", "b"]


def test_start_up_fails_with_the_fallback_secret():
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "PLATFORM_DATABASE_URL": "postgres://127.0.0.1/platform",
        "PLATFORM_SESSION_SECRET": "temporary-secret-key",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "PLATFORM_SESSION_SECRET" in result.stderr
