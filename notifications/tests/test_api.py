import pytest
from rest_framework.test import APIClient

from accounts.tests.factories import UserFactory
from credits.models import CreditTransaction
from notifications import services
from notifications.models import UserNotification

pytestmark = pytest.mark.django_db

LIST = "/api/notifications/"
CLAIM = "/api/notifications/easter-eggs/claim/"


def shown(notification_id: int) -> str:
    return f"/api/notifications/{notification_id}/shown/"


@pytest.mark.parametrize(("method", "url"), [("get", LIST), ("post", shown(1)), ("post", CLAIM)])
def test_unauthenticated_is_401(api_client, method, url):
    response = getattr(api_client, method)(url, {"phrase": "5ducks"} if url == CLAIM else None, format="json")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert not UserNotification.objects.exists()


def test_list_is_empty_for_a_new_user(user_client):
    response = user_client.get(LIST)
    assert response.status_code == 200
    assert response.json() == {"notifications": [], "badges": [], "easter_eggs": []}


def test_mark_shown_is_201_then_200(user_client, user):
    first = user_client.post(shown(2))
    assert first.status_code == 201
    body = first.json()
    assert (body["id"], body["name"]) == (2, "search_tooltip_shown") and body["shown_at"]
    again = user_client.post(shown(2))
    assert again.status_code == 200 and again.json() == body
    assert UserNotification.objects.filter(user=user).count() == 1


def test_mark_unknown_notification_is_404(user_client):
    response = user_client.post(shown(42))
    assert response.status_code == 404
    assert response.json()["code"] == "unknown_notification"
    assert user_client.post("/api/notifications/-1/shown/").status_code == 404


def test_list_groups_flags_with_names(user_client, user):
    user_client.post(shown(3))
    services.award_badge(user=user, badge_id=0)
    user_client.post(CLAIM, {"phrase": "he is risen"}, format="json")
    body = user_client.get(LIST).json()
    assert [(n["id"], n["name"]) for n in body["notifications"]] == [(3, "email_tooltip_shown")]
    assert [(b["id"], b["name"]) for b in body["badges"]] == [(0, "registration_complete")]
    assert [(e["id"], e["name"]) for e in body["easter_eggs"]] == [(2, "he is risen")]
    assert all(set(item) == {"id", "name", "shown_at"} for group in body.values() for item in group)


def test_list_reflects_a_mark_made_after_a_cached_read(user_client):
    assert user_client.get(LIST).json()["notifications"] == []
    user_client.post(shown(1))
    assert [n["id"] for n in user_client.get(LIST).json()["notifications"]] == [1]


def test_claim_is_201_with_credits_and_balance(user_client, user):
    response = user_client.post(CLAIM, {"phrase": "  5Ducks "}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["credits_granted"] == 1000 and body["balance"] == 1000
    assert (body["egg"]["id"], body["egg"]["name"]) == (0, "5ducks") and body["egg"]["shown_at"]


def test_claim_twice_is_409_and_grants_once(user_client, user):
    assert user_client.post(CLAIM, {"phrase": "free palestine"}, format="json").status_code == 201
    response = user_client.post(CLAIM, {"phrase": "free palestine"}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "already_claimed"
    assert CreditTransaction.objects.filter(user=user).count() == 1


def test_claim_unknown_phrase_is_404(user_client, user):
    response = user_client.post(CLAIM, {"phrase": "7ducks"}, format="json")
    assert response.status_code == 404
    assert response.json()["code"] == "unknown_easter_egg"
    assert not CreditTransaction.objects.exists()


@pytest.mark.parametrize("payload", [{}, {"phrase": ""}, {"phrase": "   "}, {"phrase": None}])
def test_claim_without_a_phrase_is_400(user_client, payload):
    response = user_client.post(CLAIM, payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid" and "phrase" in body["fields"]


def test_another_users_flags_are_never_visible(user_client, user):
    other = UserFactory()
    services.mark_shown(user=other, notification_id=1)
    services.award_badge(user=other, badge_id=0)
    services.claim_easter_egg(user=other, phrase="5ducks")
    assert user_client.get(LIST).json() == {"notifications": [], "badges": [], "easter_eggs": []}
    # ...and the other user's flags do not make the caller's first mark a repeat.
    assert user_client.post(shown(1)).status_code == 201
    assert user_client.post(CLAIM, {"phrase": "5ducks"}, format="json").status_code == 201
    other_client = APIClient()
    other_client.force_authenticate(other)
    assert [n["id"] for n in other_client.get(LIST).json()["notifications"]] == [1]


def test_openapi_schema_describes_the_endpoints(user_client):
    response = user_client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert set(paths[LIST]) == {"get"}
    assert set(paths["/api/notifications/{notification_id}/shown/"]["post"]["responses"]) >= {
        "200",
        "201",
        "404",
    }
    claim = paths[CLAIM]["post"]
    assert set(claim["responses"]) >= {"201", "400", "404", "409"}
    assert "requestBody" in claim
