"""Storing, refreshing (once, under a lock), invalidating, revoking and re-encrypting tokens."""

import datetime as dt

import google.auth.transport.requests
import pytest
from django.utils import timezone

from accounts.tests.factories import UserFactory
from gmail import services
from gmail.errors import GmailNotConnected, GmailReconnectRequired, GmailUpstreamError
from gmail.models import GmailToken
from tests.concurrency import run_concurrently

EXPIRED = -dt.timedelta(minutes=1)


@pytest.mark.django_db
def test_store_tokens_creates_then_replaces_keeping_the_refresh_token(user):
    first = services.store_tokens(
        user=user,
        access_token="a1",
        refresh_token="r1",
        expires_at=None,
        scopes=["s1"],
        email="one@example.com",
        display_name="One",
        metadata={"source": "test"},
    )
    second = services.store_tokens(
        user=user,
        access_token="a2",
        refresh_token=None,
        expires_at=None,
        scopes=["s1", "s2"],
        email="",
        display_name="",
    )
    assert first.pk == second.pk
    token = GmailToken.objects.get(user=user)
    assert (token.access_token, token.refresh_token) == ("a2", "r1")
    assert token.scopes == ["s1", "s2"]
    assert (token.email, token.display_name, token.metadata) == ("one@example.com", "One", {"source": "test"})
    assert token.status == GmailToken.Status.ACTIVE


@pytest.mark.django_db
def test_reconnecting_an_invalid_connection_drops_its_dead_refresh_token(user):
    services.store_tokens(
        user=user,
        access_token="a1",
        refresh_token="dead",
        expires_at=None,
        scopes=[],
        email="e@x.io",
        display_name="",
    )
    GmailToken.objects.filter(user=user).update(status=GmailToken.Status.INVALID)
    services.store_tokens(
        user=user,
        access_token="a2",
        refresh_token=None,
        expires_at=None,
        scopes=[],
        email="",
        display_name="",
    )
    token = GmailToken.objects.get(user=user)
    assert token.status == GmailToken.Status.ACTIVE
    assert token.refresh_token is None


@pytest.mark.django_db
def test_fresh_token_is_returned_without_asking_google(user, connect, fake_google):
    _, _, access = connect(user)
    credentials = services.get_credentials(user=user)
    assert credentials.token == access
    assert credentials.valid
    assert credentials.refresh_token is None  # refreshes go through services, never around them
    assert fake_google.count("token") == 0


@pytest.mark.django_db
def test_expired_token_is_refreshed_with_google_auth_and_saved(user, connect, fake_google):
    _, grant, old_access = connect(user, expires_in=EXPIRED)
    credentials = services.get_credentials(user=user)
    assert fake_google.count("token", "refresh_token") == 1
    assert credentials.token != old_access
    assert credentials.token in grant.access_tokens
    assert credentials.valid
    token = GmailToken.objects.get(user=user)
    assert token.access_token == credentials.token
    assert token.expires_at > timezone.now() + dt.timedelta(minutes=50)
    # Google's refresh request carried the client and the stored refresh token.
    form = fake_google.calls[-1].form
    assert form["refresh_token"] == grant.refresh_token
    assert form["client_id"] == fake_google.client_id


@pytest.mark.django_db
def test_token_close_to_expiry_is_refreshed_early(user, connect, fake_google):
    connect(user, expires_in=dt.timedelta(minutes=2))
    services.get_credentials(user=user)
    assert fake_google.count("token", "refresh_token") == 1


@pytest.mark.django_db
def test_migrated_record_without_access_token_fetches_one_on_first_use(user, fake_google):
    grant, _ = fake_google.issue_grant()
    services.store_tokens(
        user=user,
        access_token=None,
        refresh_token=grant.refresh_token,
        expires_at=None,
        scopes=grant.scopes,
        email="",
        display_name="",
    )
    credentials = services.get_credentials(user=user)
    assert credentials.token in grant.access_tokens
    assert GmailToken.objects.get(user=user).expires_at is not None


@pytest.mark.django_db(transaction=True)
def test_concurrent_callers_share_one_refresh(fake_google):
    user = UserFactory()
    grant, _ = fake_google.issue_grant()
    services.store_tokens(
        user=user,
        access_token="ya29.expired",
        refresh_token=grant.refresh_token,
        expires_at=timezone.now() + EXPIRED,
        scopes=grant.scopes,
        email="",
        display_name="",
    )
    fake_google.refresh_delay = 0.5  # both callers see the expired token before either finishes
    outcomes = run_concurrently(lambda _: services.get_credentials(user=user).token, 4, timeout=30)
    tokens, errors = outcomes.results, outcomes.errors
    assert errors == []
    assert fake_google.count("token", "refresh_token") == 1
    assert len(tokens) == 4
    assert len(set(tokens)) == 1
    assert GmailToken.objects.get(user=user).access_token == tokens[0]


@pytest.mark.django_db
def test_revoked_grant_marks_the_connection_invalid(user, connect, fake_google):
    _, grant, _ = connect(user, expires_in=EXPIRED)
    fake_google.revoke_grant(grant)  # the user removed the app in their Google account
    with pytest.raises(GmailReconnectRequired) as info:
        services.get_credentials(user=user)
    assert info.value.code == "gmail_reconnect_required"
    assert info.value.status_code == 409
    assert "reconnect Gmail" in info.value.message
    token = GmailToken.objects.get(user=user)
    assert token.status == GmailToken.Status.INVALID
    assert "invalid_grant" in token.metadata["invalid_reason"]
    # Later calls fail fast without asking Google again.
    with pytest.raises(GmailReconnectRequired):
        services.get_credentials(user=user)
    assert fake_google.count("token", "refresh_token") == 1


@pytest.mark.django_db
def test_invalid_grant_answer_from_google(user, connect, fake_google):
    connect(user, expires_in=EXPIRED)
    fake_google.fail_next("token", 400, {"error": "invalid_grant", "error_description": "Bad Request"})
    with pytest.raises(GmailReconnectRequired):
        services.get_credentials(user=user)
    assert GmailToken.objects.get(user=user).status == GmailToken.Status.INVALID


@pytest.mark.django_db
def test_expired_token_without_refresh_token_requires_reconnecting(user, fake_google):
    services.store_tokens(
        user=user,
        access_token="ya29.old",
        refresh_token=None,
        expires_at=timezone.now() + EXPIRED,
        scopes=[],
        email="",
        display_name="",
    )
    with pytest.raises(GmailReconnectRequired):
        services.get_credentials(user=user)
    assert GmailToken.objects.get(user=user).status == GmailToken.Status.INVALID
    assert fake_google.count("token") == 0


@pytest.mark.django_db
def test_other_google_errors_leave_the_connection_active(user, connect, fake_google):
    connect(user, expires_in=EXPIRED)
    fake_google.fail_next("token", 401, {"error": "invalid_client", "error_description": "no such client"})
    with pytest.raises(GmailUpstreamError, match="invalid_client"):
        services.get_credentials(user=user)
    assert GmailToken.objects.get(user=user).status == GmailToken.Status.ACTIVE


@pytest.mark.django_db
def test_google_unreachable_is_an_upstream_error(user, connect, settings):
    connect(user, expires_in=EXPIRED)
    settings.GOOGLE_TOKEN_URI = "http://127.0.0.1:9/token"  # discard port: connection refused
    with pytest.raises(GmailUpstreamError, match="could not be reached"):
        services.get_credentials(user=user)
    assert GmailToken.objects.get(user=user).status == GmailToken.Status.ACTIVE


@pytest.mark.django_db
def test_library_driven_refresh_goes_through_the_service(user, connect, fake_google):
    connect(user)
    credentials = services.get_credentials(user=user)
    GmailToken.objects.filter(user=user).update(expires_at=timezone.now() + EXPIRED)
    credentials.expiry = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=1)
    headers = {}
    credentials.before_request(google.auth.transport.requests.Request(), "GET", "https://x", headers)
    assert fake_google.count("token", "refresh_token") == 1
    assert headers["authorization"] == f"Bearer {credentials.token}"
    assert GmailToken.objects.get(user=user).access_token == credentials.token


@pytest.mark.django_db
def test_not_connected(user, fake_google):
    with pytest.raises(GmailNotConnected):
        services.get_credentials(user=user)
    with pytest.raises(GmailNotConnected):
        services.disconnect(user=user)


@pytest.mark.django_db
def test_disconnect_revokes_at_google_then_deletes(user, connect, fake_google):
    _, grant, _ = connect(user)
    services.disconnect(user=user)
    assert not GmailToken.objects.filter(user=user).exists()
    assert fake_google.count("revoke") == 1
    assert fake_google.calls[-1].form == {"token": grant.refresh_token}
    assert fake_google.grant_for(grant.refresh_token).revoked


@pytest.mark.django_db
def test_disconnect_of_a_grant_google_already_forgot(user, connect, fake_google):
    _, grant, _ = connect(user)
    fake_google.revoke_grant(grant)
    services.disconnect(user=user)  # Google answers invalid_token: counts as revoked
    assert not GmailToken.objects.filter(user=user).exists()


@pytest.mark.django_db
def test_disconnect_keeps_the_connection_when_google_fails(user, connect, fake_google):
    connect(user)
    fake_google.fail_next("revoke", 503, {"error": "backend_error"})
    with pytest.raises(GmailUpstreamError, match="kept"):
        services.disconnect(user=user)
    assert GmailToken.objects.filter(user=user).exists()


@pytest.mark.django_db
def test_revoke_access_erases_tokens_and_keeps_the_row(user, connect, fake_google):
    _, grant, _ = connect(user)
    services.revoke_access(user=user)
    token = GmailToken.objects.get(user=user)
    assert token.status == GmailToken.Status.REVOKED
    assert (token.access_token, token.refresh_token) == (None, None)
    assert fake_google.grant_for(grant.refresh_token).revoked
    with pytest.raises(GmailReconnectRequired):
        services.get_credentials(user=user)
    services.disconnect(user=user)  # nothing left to revoke at Google
    assert fake_google.count("revoke") == 1


@pytest.mark.django_db
def test_one_users_credentials_never_come_from_another_users_row(user, connect, fake_google):
    other = UserFactory()
    _, _, mine = connect(user, email="me@example.com")
    _, _, theirs = connect(other, email="them@example.com")
    assert services.get_credentials(user=user).token == mine
    assert services.get_credentials(user=other).token == theirs
    services.disconnect(user=other)
    assert services.get_credentials(user=user).token == mine


@pytest.mark.django_db
def test_tokens_never_reach_the_logs(user, connect, fake_google, caplog):
    caplog.set_level("DEBUG")
    _, grant, access = connect(user, expires_in=EXPIRED)
    refreshed = services.get_credentials(user=user).token
    services.disconnect(user=user)
    for secret in (grant.refresh_token, access, refreshed):
        assert secret not in caplog.text
