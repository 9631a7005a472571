"""Service clients in the admin: only with the dedicated permission; a new secret shown once."""

import pytest
from django.contrib.auth.models import Permission

from accounts.tests.factories import UserFactory
from fiveducks import selectors, services
from fiveducks.models import ServiceClient

CHANGELIST = "/admin/fiveducks/serviceclient/"


@pytest.fixture
def manager(db):
    user = UserFactory(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="manage_service_clients"))
    return user


@pytest.mark.django_db
def test_staff_without_the_permission_cannot_see_service_clients(client):
    services.create_client(name="platform-backend", scopes=["credits:charge"])
    client.force_login(UserFactory(is_staff=True))
    assert client.get(CHANGELIST).status_code == 403
    assert client.get("/admin/fiveducks/servicecall/").status_code == 403
    assert client.get(f"{CHANGELIST}add/").status_code == 403


@pytest.mark.django_db
def test_a_manager_creates_a_client_and_sees_its_secret_once(client, manager):
    client.force_login(manager)
    assert client.get(CHANGELIST).status_code == 200
    response = client.post(
        f"{CHANGELIST}add/", {"name": "platform-backend", "scopes": ["credits:charge", "gmail:token"]}
    )
    assert response.status_code == 200
    token = response.context["token"]
    assert token.startswith("fd_svc_") and token in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    created = ServiceClient.objects.get(name="platform-backend")
    assert created.scopes == ["credits:charge", "gmail:token"]
    assert selectors.secret_for_token(token).client == created
    page = client.get(f"{CHANGELIST}{created.pk}/change/").content.decode()
    assert token not in page and token.split("_", 3)[3] not in page


@pytest.mark.django_db
def test_admin_actions_rotate_revoke_old_and_disable(client, manager):
    first = services.create_client(name="platform-backend", scopes=["credits:charge"])
    client.force_login(manager)
    pk = first.client.pk
    rotated = client.post(CHANGELIST, {"action": "rotate_secret", "_selected_action": [pk]})
    second = rotated.context["token"]
    assert selectors.secret_for_token(first.token) and selectors.secret_for_token(second)
    client.post(CHANGELIST, {"action": "revoke_old_secrets", "_selected_action": [pk]})
    assert selectors.secret_for_token(first.token) is None
    assert selectors.secret_for_token(second) is not None
    client.post(CHANGELIST, {"action": "disable", "_selected_action": [pk]})
    assert ServiceClient.objects.get(pk=pk).is_disabled
