"""The platform's subscription routes and Stripe's webhook at its old path."""

from __future__ import annotations

import datetime as dt

import pytest
from rest_framework.test import APIClient

from accounts.tests.factories import UserFactory
from billing.models import Subscription, WebhookEvent
from billing.testing import make_event, signed_payload, stripe_stand_in  # noqa: F401 - a fixture
from billing.tests.conftest import subscription_object
from fiveducks.tests.conftest import bearer

pytestmark = pytest.mark.django_db


@pytest.fixture
def duck(firebase_certs):
    user = UserFactory(firebase_uid="uid-duck")
    client = APIClient()
    client.credentials(**bearer(firebase_certs.mint(uid="uid-duck")))
    return client, user


@pytest.fixture
def neighbour():
    user = UserFactory()
    Subscription.objects.create(
        user=user, stripe_customer_id="cus_n", stripe_subscription_id="sub_n", status="active",
        plan_type="duckin-awesome",
    )  # fmt: skip
    return user


def test_subscription_status_without_a_subscription(duck, neighbour):
    client, _ = duck
    assert client.get("/api/stripe/subscription-status").json() == {
        "hasSubscription": False,
        "status": None,
        "currentPlan": None,
    }
    assert client.get("/api/user/subscription-status").json() == {
        "isSubscribed": False,
        "currentPlan": None,
        "planDisplayName": None,
    }


def test_subscription_status_with_an_active_subscription(duck, neighbour):
    client, user = duck
    end = dt.datetime(2026, 12, 31, tzinfo=dt.UTC)
    Subscription.objects.create(
        user=user, stripe_customer_id="cus_d", stripe_subscription_id="sub_d", status="active",
        plan_type="ugly-duckling", current_period_end=end, cancel_at_period_end=True,
    )  # fmt: skip
    assert client.get("/api/stripe/subscription-status").json() == {
        "hasSubscription": True,
        "status": "active",
        "currentPlan": "ugly-duckling",
        "subscriptionId": "sub_d",
        "currentPeriodEnd": int(end.timestamp() * 1000),
        "cancelAtPeriodEnd": True,
    }
    assert client.get("/api/user/subscription-status").json() == {
        "isSubscribed": True,
        "currentPlan": "ugly-duckling",
        "planDisplayName": "The Duckling",
    }


def test_create_checkout_session_returns_the_checkout_url(duck, stripe_stand_in):  # noqa: F811
    client, user = duck
    response = client.post(
        "/api/stripe/create-checkout-session",
        {"planId": "ugly-duckling"},
        format="json",
        HTTP_ORIGIN="http://testserver",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["checkoutUrl"].startswith("https://checkout.stripe.com/")
    assert body["sessionId"].startswith("cs_")
    (call,) = stripe_stand_in.requests_to("/v1/checkout/sessions")
    assert (
        call.params["success_url"]
        == "http://testserver/subscription-success?session_id={CHECKOUT_SESSION_ID}"
    )
    assert call.params["cancel_url"] == "http://testserver"
    assert call.params["metadata"]["user_id"] == str(user.pk)


def test_checkout_from_an_untrusted_origin_returns_to_the_configured_pages(duck, stripe_stand_in, settings):  # noqa: F811
    client, _ = duck
    response = client.post(
        "/api/stripe/create-checkout-session", {"planId": "ugly-duckling"}, format="json",
        HTTP_ORIGIN="https://evil.example",
    )  # fmt: skip
    assert response.status_code == 200
    (call,) = stripe_stand_in.requests_to("/v1/checkout/sessions")
    assert call.params["success_url"] == settings.BILLING_SUCCESS_URL


def test_checkout_with_an_unknown_plan(duck, stripe_stand_in):  # noqa: F811
    client, _ = duck
    response = client.post("/api/stripe/create-checkout-session", {"planId": "golden-goose"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"message": "Invalid plan ID"}
    assert stripe_stand_in.requests == []


def test_checkout_when_stripe_fails(duck, stripe_stand_in):  # noqa: F811
    client, _ = duck
    stripe_stand_in.fail(500, "api_error", "Stripe is down", path="/v1/customers")
    response = client.post("/api/stripe/create-checkout-session", {"planId": "ugly-duckling"}, format="json")
    assert response.status_code == 502
    body = response.json()
    assert body["message"] == "Failed to create checkout session" and "Stripe is down" in body["error"]
    assert "sk_test" not in body["error"]


def test_stripe_webhook_at_the_platforms_old_path(user):
    Subscription.objects.create(user=user, stripe_customer_id="cus_1")
    event = make_event("customer.subscription.updated", subscription_object())
    payload, signature = signed_payload(event)
    response = APIClient().post(
        "/api/stripe/webhook", data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature
    )
    assert response.status_code == 200, response.content
    assert response.json()["received"] is True
    assert WebhookEvent.objects.get(event_id=event["id"]).status == "processed"
    assert Subscription.objects.get(user=user).status == "active"
    forged = APIClient().post(
        "/api/stripe/webhook",
        data=payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE="t=1,v1=00",
    )
    assert forged.status_code == 400
