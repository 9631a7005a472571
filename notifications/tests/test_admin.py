import pytest
from django.test import Client

from accounts.tests.factories import UserFactory
from notifications import services

pytestmark = pytest.mark.django_db

URL = "/admin/notifications/usernotification/"


@pytest.fixture
def admin_client(staff_user):
    client = Client()
    client.force_login(staff_user)
    return client


def test_changelist_filters_and_search(admin_client):
    alice, bob = UserFactory(email="alice@example.com"), UserFactory(email="bob@example.com")
    services.mark_shown(user=alice, notification_id=1)
    services.award_badge(user=bob, badge_id=0)
    services.claim_easter_egg(user=bob, phrase="5ducks")

    page = admin_client.get(URL)
    assert page.status_code == 200 and page.context["cl"].result_count == 3
    assert admin_client.get(URL, {"kind": "badge"}).context["cl"].result_count == 1
    assert admin_client.get(URL, {"flag": "easter_egg:0"}).context["cl"].result_count == 1
    assert admin_client.get(URL, {"notification_id": "1"}).context["cl"].result_count == 1
    assert admin_client.get(URL, {"q": "alice@"}).context["cl"].result_count == 1
    day = page.context["cl"].result_list[0].shown_at
    by_date = {"shown_at__year": day.year, "shown_at__month": day.month, "shown_at__day": day.day}
    assert admin_client.get(URL, by_date).context["cl"].result_count == 3


def test_flags_are_read_only_in_admin(admin_client, user):
    row, _ = services.mark_shown(user=user, notification_id=1)
    assert admin_client.get(f"{URL}add/").status_code == 403
    detail = admin_client.get(f"{URL}{row.pk}/change/")
    assert detail.status_code == 200 and b"waitlist_joined" in detail.content
    assert admin_client.post(f"{URL}{row.pk}/delete/").status_code == 403
