"""The platform's credit and gamification routes, called as its client calls them (Bearer token)."""

from __future__ import annotations

import pytest

from accounts.tests.factories import UserFactory
from credits import services as credit_services
from credits.models import CreditAccount, CreditTransaction
from fiveducks.tests.conftest import bearer
from notifications.catalogue import Kind
from notifications.models import UserNotification

pytestmark = pytest.mark.django_db


@pytest.fixture
def duck(firebase_certs):
    """A logged-in client of the platform (Firebase token) and its user, with 1,000 credits."""
    from rest_framework.test import APIClient

    user = UserFactory(firebase_uid="uid-duck")
    credit_services.grant(user=user, amount=1000, reason="opening", idempotency_key="opening")
    client = APIClient()
    client.credentials(**bearer(firebase_certs.mint(uid="uid-duck")))
    return client, user


@pytest.fixture
def neighbour():
    """Another user with data of their own, which must never show up in the duck's answers."""
    user = UserFactory()
    credit_services.grant(user=user, amount=77_777, reason="neighbour", idempotency_key="n")
    credit_services.deduct(user=user, operation="company_search", metadata={"searchType": "apollo"})
    UserNotification.objects.create(user=user, kind=Kind.NOTIFICATION, notification_id=4)
    return user


def test_credits(duck, neighbour):
    client, _user = duck
    body = client.get("/api/credits").json()
    assert body == {
        "balance": 1000,
        "isBlocked": False,
        "lastTopUp": body["lastTopUp"],
        "totalUsed": 0,
        "monthlyAllowance": 250,
    }
    assert isinstance(body["lastTopUp"], int) and body["lastTopUp"] > 1_700_000_000_000  # epoch ms


def test_credits_history_newest_first_with_limit(duck, neighbour):
    client, user = duck
    for contact in (1, 2, 3):
        credit_services.deduct(
            user=user, operation="individual_email", metadata={"searchType": "hunter", "contactId": contact}
        )
    history = client.get("/api/credits/history").json()
    assert [entry["type"] for entry in history] == ["debit", "debit", "debit", "credit"]
    assert history[0] == {
        "type": "debit",
        "amount": 20,
        "description": "individual_email",
        "timestamp": history[0]["timestamp"],
        "searchType": "hunter",
    }
    assert history[-1]["amount"] == 1000
    assert len(client.get("/api/credits/history?limit=2").json()) == 2
    assert len(client.get("/api/credits/history?limit=0").json()) == 4  # 0 or NaN: the default 50
    assert len(client.get("/api/credits/history?limit=abc").json()) == 4


def test_credits_stats_and_status(duck, neighbour):
    client, user = duck
    credit_services.deduct(user=user, operation="individual_email", metadata={"searchType": "hunter"})
    credit_services.deduct(user=user, operation="email_search", metadata={"searchType": "hunter"})
    credit_services.deduct(user=user, operation="company_search", metadata={"searchType": "perplexity"})
    assert client.get("/api/credits/stats").json() == {
        "totalUsed": 190,
        "thisMonth": 190,
        "searchCounts": {"hunter": 2, "perplexity": 1},
    }
    assert client.get("/api/credits/status").json() == {"isBlocked": False}


def test_deduct_individual_email_charges_once_per_contact_search_and_day(duck):
    client, user = duck
    body = {"contactId": 1234, "searchType": "hunter", "emailFound": True}
    first = client.post("/api/credits/deduct-individual-email", body, format="json")
    assert first.status_code == 200, first.content
    answer = first.json()
    assert answer["success"] is True and answer["charged"] is True
    assert answer["newBalance"] == 980 and answer["isBlocked"] is False
    assert answer["searchType"] == "hunter" and answer["contactId"] == 1234
    assert answer["transaction"]["type"] == "debit" and answer["transaction"]["amount"] == 20
    retry = client.post("/api/credits/deduct-individual-email", body, format="json")
    assert retry.status_code == 200 and retry.json()["newBalance"] == 980
    other_search = client.post(
        "/api/credits/deduct-individual-email", {**body, "searchType": "apollo"}, format="json"
    )
    assert other_search.json()["newBalance"] == 960
    assert CreditTransaction.objects.filter(user=user, type="deduction").count() == 2
    assert client.get("/api/credits").json()["balance"] == 960


def test_deduct_individual_email_without_an_email_charges_nothing(duck):
    client, user = duck
    body = {"contactId": 5, "searchType": "perplexity", "emailFound": False}
    response = client.post("/api/credits/deduct-individual-email", body, format="json")
    assert response.json() == {
        "success": True,
        "charged": False,
        "message": "No email found - no credits deducted",
    }
    assert not CreditTransaction.objects.filter(user=user, type="deduction").exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"searchType": "hunter", "emailFound": True}, "Missing required parameters"),
        ({"contactId": 0, "searchType": "hunter", "emailFound": True}, "Missing required parameters"),
        ({"contactId": 3, "searchType": "hunter"}, "Missing required parameters"),
        ({"contactId": 3, "searchType": "google", "emailFound": True}, "Invalid search type"),
    ],
)
def test_deduct_individual_email_bad_input(duck, body, message):
    client, user = duck
    response = client.post("/api/credits/deduct-individual-email", body, format="json")
    assert response.status_code == 400
    assert response.json() == {"message": message}
    assert not CreditTransaction.objects.filter(user=user, type="deduction").exists()


def test_deduct_individual_email_when_credits_are_short_charges_nothing(firebase_certs):
    from rest_framework.test import APIClient

    user = UserFactory(firebase_uid="uid-poor")
    credit_services.grant(user=user, amount=10, reason="opening", idempotency_key="opening")
    client = APIClient()
    client.credentials(**bearer(firebase_certs.mint(uid="uid-poor")))
    body = {"contactId": "c-9", "searchType": "apollo", "emailFound": True}
    response = client.post("/api/credits/deduct-individual-email", body, format="json")
    assert response.status_code == 402
    assert response.json() == {
        "success": False,
        "charged": False,
        "message": "Insufficient credits for individual email search",
        "balance": 10,
        "required": 20,
    }
    assert not CreditTransaction.objects.filter(user=user, type="deduction").exists()


def test_adjust_is_not_carried_over(duck):
    client, user = duck
    response = client.post(
        "/api/credits/adjust", {"amount": 100000, "description": "free money"}, format="json"
    )
    assert response.status_code == 403
    assert "not available" in response.json()["message"]
    assert CreditAccount.objects.get(user=user).balance == 1000


def test_easter_egg_by_query_phrase_once(duck):
    client, user = duck
    response = client.post("/api/credits/easter-egg", {"query": "  5Ducks "}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["success"] is True
    assert body["message"] == "🎉 Easter egg found! +1000 credits added!"
    assert body["newBalance"] == 2000
    assert {k: body["easterEgg"][k] for k in ("id", "trigger", "reward")} == {
        "id": 0,
        "trigger": "5ducks",
        "reward": 1000,
    }
    again = client.post("/api/credits/easter-egg", {"query": "5ducks"}, format="json")
    assert again.status_code == 409
    assert again.json() == {"success": False, "message": "Easter egg already claimed!"}
    wrong = client.post("/api/credits/easter-egg", {"query": "6ducks"}, format="json")
    assert wrong.status_code == 409
    assert wrong.json() == {"success": False, "message": "Invalid easter egg"}
    assert CreditAccount.objects.get(user=user).balance == 2000


def test_notifications_status_as_the_kv_arrays(duck, neighbour):
    client, _user = duck
    assert client.get("/api/notifications/status").json() == {
        "notifications": [],
        "badges": [],
        "isWaitlistMember": False,
    }
    assert client.post("/api/notifications/mark-shown", {"notificationId": 3}, format="json").json() == {
        "success": True
    }
    assert client.post("/api/notifications/mark-shown", {"badgeId": 0}, format="json").status_code == 200
    body = client.get("/api/notifications/status").json()
    assert body == {"notifications": [None, None, None, 1], "badges": [1], "isWaitlistMember": True}


def test_mark_shown_needs_an_id(duck):
    client, _ = duck
    response = client.post("/api/notifications/mark-shown", {}, format="json")
    assert response.status_code == 400
    assert response.json() == {"message": "Either notificationId or badgeId is required"}


def test_trigger_is_read_only_and_says_whether_to_show(duck):
    client, user = duck
    badge = client.post("/api/notifications/trigger", {"trigger": "registration_complete"}, format="json")
    assert badge.status_code == 200
    assert badge.json()["shouldShow"] is True
    assert badge.json()["badge"]["id"] == 0 and badge.json()["badge"]["trigger"] == "registration_complete"
    note = client.post("/api/notifications/trigger", {"trigger": "waitlist_joined"}, format="json")
    assert note.json()["notification"]["id"] == 1
    assert not UserNotification.objects.filter(user=user).exists()  # nothing written
    client.post("/api/notifications/mark-shown", {"badgeId": 0}, format="json")
    shown = client.post("/api/notifications/trigger", {"trigger": "registration_complete"}, format="json")
    assert shown.status_code == 409
    assert shown.json() == {"shouldShow": False, "message": "Notification already shown or not found"}
    unknown = client.post("/api/notifications/trigger", {"trigger": "nope"}, format="json")
    assert unknown.status_code == 409


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/credits", {"message": "Authentication required"}),
        ("get", "/api/credits/history", {"message": "Authentication required"}),
        ("post", "/api/credits/deduct-individual-email", {"message": "Authentication required"}),
        (
            "post",
            "/api/credits/easter-egg",
            {"message": "Authentication required", "details": "Please log in to access this resource"},
        ),
        (
            "get",
            "/api/notifications/status",
            {"message": "Authentication required", "details": "Please log in to access this resource"},
        ),
        ("get", "/api/user/subscription-status", {"error": "Not authenticated"}),
        ("get", "/api/stripe/subscription-status", {"message": "Authentication required"}),
        (
            "get",
            "/api/gmail/auth-status",
            {"message": "Authentication required", "details": "Please log in to access this resource"},
        ),
    ],
)
def test_not_logged_in_gets_the_platforms_401_body(anonymous, method, path, body):
    response = getattr(anonymous, method)(path)
    assert response.status_code == 401
    assert response.json() == body


@pytest.mark.parametrize(
    "path",
    ["/api/credits", "/api/notifications/status", "/api/gmail/status", "/api/stripe/subscription-status"],
)
def test_paths_are_answered_exactly_as_written_without_a_redirect(duck, path):
    client, _ = duck
    response = client.get(path)
    assert response.status_code == 200
    assert "Location" not in response
