"""The admin lists connections, never shows a token, and changes them only through services."""

import pytest
from django.test import Client

from accounts.tests.factories import UserFactory
from gmail.admin import MASK
from gmail.models import GmailToken

CHANGELIST = "/admin/gmail/gmailtoken/"


@pytest.fixture
def admin_client(staff_user):
    client = Client()
    client.force_login(staff_user)
    return client


@pytest.mark.django_db
def test_list_shows_connections_but_no_token(admin_client, user, connect):
    _, grant, access = connect(user, email="gmail-owner@example.com")
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    html = response.content.decode()
    assert user.email in html
    assert "gmail-owner@example.com" in html
    assert "gmail.modify" in html
    assert access not in html
    assert grant.refresh_token not in html


@pytest.mark.django_db
def test_search_and_filter(admin_client, user, connect):
    other = UserFactory(email="someone-else@example.com")
    connect(user, email="first@example.com")
    connect(other, email="second@example.com")
    GmailToken.objects.filter(user=other).update(status=GmailToken.Status.INVALID)
    html = admin_client.get(CHANGELIST, {"q": "first@"}).content.decode()
    assert "first@example.com" in html
    assert "second@example.com" not in html
    html = admin_client.get(CHANGELIST, {"status__exact": "invalid"}).content.decode()
    assert "second@example.com" in html
    assert "first@example.com" not in html


@pytest.mark.django_db
def test_detail_page_is_read_only_and_masks_tokens(admin_client, user, connect):
    token, grant, access = connect(user)
    response = admin_client.get(f"{CHANGELIST}{token.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert MASK in html
    assert access not in html
    assert grant.refresh_token not in html
    assert 'name="_save"' not in html
    # A POST cannot change anything.
    admin_client.post(f"{CHANGELIST}{token.pk}/change/", {"status": "revoked", "email": "x@y.z"})
    assert GmailToken.objects.get(pk=token.pk).status == GmailToken.Status.ACTIVE


@pytest.mark.django_db
def test_no_add_and_no_plain_delete(admin_client, user, connect):
    token, _, _ = connect(user)
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    assert admin_client.get(f"{CHANGELIST}{token.pk}/delete/").status_code == 403
    html = admin_client.get(CHANGELIST).content.decode()
    assert "delete_selected" not in html
    assert "revoke_selected" in html
    assert "disconnect_selected" in html


@pytest.mark.django_db
def test_revoke_action_goes_through_the_service(admin_client, user, connect, fake_google):
    token, grant, _ = connect(user)
    response = admin_client.post(
        CHANGELIST, {"action": "revoke_selected", "_selected_action": [token.pk]}, follow=True
    )
    assert "1 connection(s) revoked" in response.content.decode()
    token.refresh_from_db()
    assert token.status == GmailToken.Status.REVOKED
    assert token.refresh_token is None
    assert fake_google.grant_for(grant.refresh_token).revoked
    assert "—" in admin_client.get(f"{CHANGELIST}{token.pk}/change/").content.decode()


@pytest.mark.django_db
def test_disconnect_action_revokes_and_deletes(admin_client, user, connect, fake_google):
    token, grant, _ = connect(user)
    admin_client.post(CHANGELIST, {"action": "disconnect_selected", "_selected_action": [token.pk]})
    assert not GmailToken.objects.filter(pk=token.pk).exists()
    assert fake_google.grant_for(grant.refresh_token).revoked


@pytest.mark.django_db
def test_action_reports_google_failures(admin_client, user, connect, fake_google):
    token, _, _ = connect(user)
    fake_google.fail_next("revoke", 503, {"error": "backend_error"})
    response = admin_client.post(
        CHANGELIST, {"action": "disconnect_selected", "_selected_action": [token.pk]}, follow=True
    )
    assert "the connection is kept" in response.content.decode()
    assert GmailToken.objects.filter(pk=token.pk).exists()
