"""The OAuth flow end to end against the stand-in Google, status and disconnect."""

import datetime as dt
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.tests.factories import UserFactory
from gmail.api import SESSION_KEY
from gmail.models import GmailToken

CONNECT, CALLBACK, STATUS, DISCONNECT = (
    "/api/gmail/connect/",
    "/api/gmail/callback/",
    "/api/gmail/status/",
    "/api/gmail/",
)


def _start(client) -> str:
    response = client.get(CONNECT)
    assert response.status_code == 200
    return response.json()["authorization_url"]


def _raw_table() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM gmail_tokens")
        return repr(cursor.fetchall())


@pytest.mark.django_db
def test_connect_gives_an_offline_consent_url_with_pkce(user_client, user, fake_google, settings):
    url = _start(user_client)
    assert url.startswith(fake_google.auth_uri)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["access_type"] == "offline"
    assert query["prompt"] == "consent"
    assert query["response_type"] == "code"
    assert query["client_id"] == settings.GOOGLE_CLIENT_ID
    assert query["redirect_uri"] == settings.GOOGLE_REDIRECT_URI
    assert query["scope"].split() == settings.GMAIL_SCOPES
    assert query["code_challenge_method"] == "S256"
    pending = user_client.session[SESSION_KEY]
    assert pending["state"] == query["state"]
    assert pending["user_id"] == user.pk
    assert len(pending["code_verifier"]) >= 43


@pytest.mark.django_db
def test_successful_callback_stores_encrypted_tokens(user_client, user, fake_google):
    redirect = fake_google.consent(_start(user_client))
    response = user_client.get(CALLBACK, redirect)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["connected"] is True
    assert body["email"] == "someone@example.com"
    assert body["display_name"] == "Some One"
    assert body["status"] == "active"

    token = GmailToken.objects.get(user=user)
    grant = fake_google.grant_for(token.refresh_token)
    assert grant is not None
    assert token.access_token in grant.access_tokens
    assert token.expires_at > timezone.now() + dt.timedelta(minutes=50)
    raw = _raw_table()
    assert token.access_token not in raw
    assert token.refresh_token not in raw
    assert token.access_token not in response.content.decode()
    # PKCE: the exchange carried the verifier whose challenge was in the URL.
    exchange = next(c for c in fake_google.calls if c.grant_type == "authorization_code")
    assert exchange.form["code_verifier"]
    assert SESSION_KEY not in user_client.session  # the state is single-use


@pytest.mark.django_db
def test_callback_without_credentials_is_bound_by_the_session(user, fake_google):
    client = APIClient()
    client.force_authenticate(user)
    redirect = fake_google.consent(_start(client))
    browser = APIClient()  # Google's redirect: the session cookie, no API credentials
    browser.cookies = client.cookies
    response = browser.get(CALLBACK, redirect)
    assert response.status_code == 200
    assert GmailToken.objects.filter(user=user).exists()


@pytest.mark.django_db
def test_email_comes_from_userinfo_when_there_is_no_id_token(user_client, user, fake_google):
    fake_google.include_id_token = False
    fake_google.next_identity = ("info@example.com", "Info Person")
    response = user_client.get(CALLBACK, fake_google.consent(_start(user_client)))
    assert response.status_code == 200
    assert (response.json()["email"], response.json()["display_name"]) == ("info@example.com", "Info Person")
    assert fake_google.count("userinfo") == 1


@pytest.mark.django_db
def test_missing_identity_is_tolerated(user_client, user, fake_google):
    fake_google.include_id_token = False
    fake_google.fail_next("userinfo", 500, {"error": "backend_error"})
    response = user_client.get(CALLBACK, fake_google.consent(_start(user_client)))
    assert response.status_code == 200
    assert response.json()["email"] == ""
    assert GmailToken.objects.get(user=user).refresh_token


@pytest.mark.django_db
def test_partially_granted_scopes_are_stored_as_granted(user_client, user, fake_google):
    fake_google.granted_scopes = ["https://www.googleapis.com/auth/userinfo.email"]
    response = user_client.get(CALLBACK, fake_google.consent(_start(user_client)))
    assert response.status_code == 200
    assert response.json()["scopes"] == ["https://www.googleapis.com/auth/userinfo.email"]
    token = GmailToken.objects.get(user=user)
    assert token.expires_at is not None
    assert token.refresh_token


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["forged-state", "", None])
def test_state_mismatch_is_rejected_and_nothing_stored(user_client, fake_google, state):
    redirect = fake_google.consent(_start(user_client))
    if state is None:
        redirect.pop("state")
    else:
        redirect["state"] = state
    response = user_client.get(CALLBACK, redirect)
    assert response.status_code == 400
    assert response.json()["code"] == "gmail_state_mismatch"
    assert GmailToken.objects.count() == 0
    assert fake_google.count("token") == 0


@pytest.mark.django_db
def test_callback_without_a_started_flow_is_rejected(user_client, fake_google):
    other = APIClient()
    other.force_authenticate(UserFactory())
    redirect = fake_google.consent(_start(other))  # another session's state
    response = user_client.get(CALLBACK, redirect)
    assert response.status_code == 400
    assert response.json()["code"] == "gmail_state_mismatch"
    assert GmailToken.objects.count() == 0


@pytest.mark.django_db
def test_callback_authenticated_as_another_user_is_rejected(user, fake_google):
    client = APIClient()
    client.force_authenticate(user)
    redirect = fake_google.consent(_start(client))
    client.force_authenticate(UserFactory())
    response = client.get(CALLBACK, redirect)
    assert response.status_code == 400
    assert GmailToken.objects.count() == 0


@pytest.mark.django_db
def test_state_is_single_use(user_client, fake_google):
    redirect = fake_google.consent(_start(user_client))
    assert user_client.get(CALLBACK, redirect).status_code == 200
    response = user_client.get(CALLBACK, redirect)
    assert response.status_code == 400
    assert fake_google.count("token") == 1


@pytest.mark.django_db
def test_declined_consent_is_a_400(user_client, fake_google):
    redirect = fake_google.consent(_start(user_client))
    response = user_client.get(CALLBACK, {"state": redirect["state"], "error": "access_denied"})
    assert response.status_code == 400
    assert response.json()["code"] == "gmail_authorization_denied"
    assert "access_denied" in response.json()["detail"]
    assert GmailToken.objects.count() == 0


@pytest.mark.django_db
def test_google_refusing_the_code_is_a_502_with_the_reason(user_client, fake_google):
    redirect = fake_google.consent(_start(user_client))
    redirect["code"] = "4/not-a-code-google-issued"
    response = user_client.get(CALLBACK, redirect)
    assert response.status_code == 502
    body = response.json()
    assert body["code"] == "gmail_upstream_error"
    assert "invalid_grant" in body["detail"]
    assert GmailToken.objects.count() == 0


@pytest.mark.django_db
def test_google_unreachable_at_callback_is_a_502(user_client, fake_google, settings):
    redirect = fake_google.consent(_start(user_client))
    settings.GOOGLE_TOKEN_URI = "http://127.0.0.1:9/token"
    response = user_client.get(CALLBACK, redirect)
    assert response.status_code == 502
    assert "could not be reached" in response.json()["detail"]


@pytest.mark.django_db
def test_status_when_not_connected(user_client):
    response = user_client.get(STATUS)
    assert response.status_code == 200
    assert response.json() == {
        "connected": False,
        "status": None,
        "email": None,
        "display_name": None,
        "expires_at": None,
        "scopes": [],
    }


@pytest.mark.django_db
def test_status_shows_the_connection_and_never_a_token(user_client, user, connect):
    _, grant, access = connect(user)
    response = user_client.get(STATUS)
    body = response.json()
    assert set(body) == {"connected", "status", "email", "display_name", "expires_at", "scopes"}
    assert body["connected"] is True
    assert body["email"] == "someone@example.com"
    assert body["scopes"] == grant.scopes
    text = response.content.decode()
    assert access not in text
    assert grant.refresh_token not in text


@pytest.mark.django_db
def test_status_of_an_invalid_connection(user_client, user, connect):
    connect(user)
    GmailToken.objects.filter(user=user).update(status=GmailToken.Status.INVALID)
    body = user_client.get(STATUS).json()
    assert (body["connected"], body["status"]) == (False, "invalid")


@pytest.mark.django_db
def test_another_users_connection_is_never_visible(user_client, user, connect, fake_google):
    other = UserFactory()
    connect(other, email="them@example.com")
    assert user_client.get(STATUS).json()["connected"] is False
    response = user_client.delete(DISCONNECT)
    assert response.status_code == 404
    assert response.json()["code"] == "gmail_not_connected"
    assert GmailToken.objects.filter(user=other).exists()
    assert fake_google.count("revoke") == 0


@pytest.mark.django_db
def test_disconnect_revokes_and_deletes(user_client, user, connect, fake_google):
    _, grant, _ = connect(user)
    response = user_client.delete(DISCONNECT)
    assert response.status_code == 204
    assert not GmailToken.objects.filter(user=user).exists()
    assert fake_google.grant_for(grant.refresh_token).revoked
    assert user_client.delete(DISCONNECT).status_code == 404


@pytest.mark.django_db
def test_disconnect_when_google_fails_is_a_502_and_keeps_the_row(user_client, user, connect, fake_google):
    connect(user)
    fake_google.fail_next("revoke", 500, {"error": "backend_error"})
    response = user_client.delete(DISCONNECT)
    assert response.status_code == 502
    assert GmailToken.objects.filter(user=user).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), [("get", CONNECT), ("get", STATUS), ("delete", DISCONNECT)])
def test_anonymous_callers_are_refused(api_client, method, path):
    assert getattr(api_client, method)(path).status_code == 401


@pytest.mark.django_db
def test_anonymous_callback_without_a_session_is_a_400(api_client, fake_google):
    response = api_client.get(CALLBACK, {"code": "4/x", "state": "y"})
    assert response.status_code == 400
    assert fake_google.count("token") == 0


@pytest.mark.django_db
def test_gmail_endpoints_are_in_the_schema(user_client):
    paths = user_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    for path in (CONNECT, CALLBACK, STATUS, DISCONNECT):
        assert path in paths
