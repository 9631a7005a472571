"""Checkout, portal and subscription endpoints against the local Stripe stand-in, and the report."""

from __future__ import annotations

import socket

import pytest
from django.conf import settings

from billing.models import Subscription
from billing.tests.conftest import price_of
from credits import services as credit_services

pytestmark = pytest.mark.django_db

CHECKOUT = "/api/billing/checkout/"
PORTAL = "/api/billing/portal/"
SUBSCRIPTION = "/api/billing/subscription/"
REPORT = "/api/billing/reports/active-with-credits/"


# --- checkout -----------------------------------------------------------------------------
def test_checkout_creates_a_customer_and_a_subscription_session(user_client, user, stripe_stand_in):
    response = user_client.post(CHECKOUT, {"plan": "duckin-awesome"}, format="json")
    assert response.status_code == 200, response.content
    url = response.json()["url"]
    assert url.startswith("https://checkout.stripe.com/c/pay/cs_test_")

    (customer_call,) = stripe_stand_in.requests_to("/v1/customers")
    assert customer_call.params == {"email": user.email, "metadata": {"user_id": str(user.pk)}}
    assert customer_call.headers["Idempotency-Key"].startswith(f"fivedocks-customer-{user.pk}-")
    assert customer_call.headers["Authorization"] == "Bearer sk_test_stand_in"
    (session_call,) = stripe_stand_in.requests_to("/v1/checkout/sessions")
    row = Subscription.objects.get(user=user)
    assert row.stripe_customer_id in stripe_stand_in.customers
    params = session_call.params
    assert params["mode"] == "subscription"
    assert params["customer"] == row.stripe_customer_id
    assert params["line_items"] == [{"price": price_of("duckin-awesome"), "quantity": "1"}]
    assert params["metadata"] == {"user_id": str(user.pk), "plan": "duckin-awesome"}
    assert params["subscription_data"] == {"metadata": {"user_id": str(user.pk), "plan": "duckin-awesome"}}
    assert params["client_reference_id"] == str(user.pk)
    assert params["success_url"] == settings.BILLING_SUCCESS_URL
    assert row.status == "none" and row.plan_type == ""


def test_second_checkout_reuses_the_customer(user_client, user, stripe_stand_in):
    assert user_client.post(CHECKOUT, {"plan": "ugly-duckling"}, format="json").status_code == 200
    assert user_client.post(CHECKOUT, {"plan": "duckin-awesome"}, format="json").status_code == 200
    assert len(stripe_stand_in.requests_to("/v1/customers")) == 1
    sessions = stripe_stand_in.requests_to("/v1/checkout/sessions")
    customer_id = Subscription.objects.get(user=user).stripe_customer_id
    assert [s.params["customer"] for s in sessions] == [customer_id, customer_id]


def test_unknown_plan_is_400_and_calls_no_one(user_client, stripe_stand_in):
    response = user_client.post(CHECKOUT, {"plan": "golden-goose"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid" and "golden-goose" in body["fields"]["plan"][0]
    assert user_client.post(CHECKOUT, {}, format="json").status_code == 400
    assert stripe_stand_in.requests == []
    assert not Subscription.objects.exists()


def test_checkout_requires_authentication(api_client, stripe_stand_in):
    assert api_client.post(CHECKOUT, {"plan": "ugly-duckling"}, format="json").status_code == 401


def test_stripe_refusing_the_customer_is_502_and_nothing_is_written(user_client, stripe_stand_in):
    stripe_stand_in.fail(402, "card_error", "Your card was declined.", "card_declined", path="/v1/customers")
    response = user_client.post(CHECKOUT, {"plan": "ugly-duckling"}, format="json")
    assert response.status_code == 502
    body = response.json()
    assert body["code"] == "upstream_error"
    assert "card_error/card_declined" in body["detail"] and "Your card was declined." in body["detail"]
    assert "sk_test" not in body["detail"]
    assert not Subscription.objects.exists()
    assert stripe_stand_in.requests_to("/v1/checkout/sessions") == []


def test_stripe_failing_the_session_keeps_the_customer_for_the_next_try(user_client, user, stripe_stand_in):
    stripe_stand_in.fail(
        500, "api_error", "Something went wrong on Stripe's end.", None, path="/v1/checkout/sessions"
    )
    response = user_client.post(CHECKOUT, {"plan": "ugly-duckling"}, format="json")
    assert response.status_code == 502
    assert "api_error" in response.json()["detail"]
    # The customer Stripe created is recorded (a consistent state); no subscription was written.
    row = Subscription.objects.get(user=user)
    assert row.stripe_customer_id in stripe_stand_in.customers
    assert (row.status, row.stripe_subscription_id, row.plan_type) == ("none", "", "")
    retry = user_client.post(CHECKOUT, {"plan": "ugly-duckling"}, format="json")
    assert retry.status_code == 200
    assert len(stripe_stand_in.requests_to("/v1/customers")) == 1


def test_stripe_unreachable_is_502_with_a_reason(user_client, settings):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{port}"
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    response = user_client.post(CHECKOUT, {"plan": "ugly-duckling"}, format="json")
    assert response.status_code == 502
    assert "could not be reached" in response.json()["detail"]
    assert not Subscription.objects.exists()


def test_checkout_is_refused_while_a_subscription_is_live(user_client, user, stripe_stand_in):
    Subscription.objects.create(
        user=user, stripe_customer_id="cus_x", status="past_due", plan_type="ugly-duckling"
    )
    response = user_client.post(CHECKOUT, {"plan": "duckin-awesome"}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "already_subscribed"
    assert stripe_stand_in.requests == []


def test_checkout_after_a_cancel_reuses_the_customer(user_client, user, stripe_stand_in):
    assert user_client.post(CHECKOUT, {"plan": "ugly-duckling"}, format="json").status_code == 200
    Subscription.objects.filter(user=user).update(status="canceled")
    assert user_client.post(CHECKOUT, {"plan": "ugly-duckling"}, format="json").status_code == 200
    assert len(stripe_stand_in.requests_to("/v1/customers")) == 1


# --- portal -------------------------------------------------------------------------------
def test_portal_needs_a_customer(user_client, stripe_stand_in):
    response = user_client.post(PORTAL)
    assert response.status_code == 409 and response.json()["code"] == "no_billing_account"
    assert stripe_stand_in.requests == []


def test_portal_session_for_the_callers_customer(user_client, user, stripe_stand_in):
    user_client.post(CHECKOUT, {"plan": "ugly-duckling"}, format="json")
    response = user_client.post(PORTAL)
    assert response.status_code == 200
    assert response.json()["url"].startswith("https://billing.stripe.com/p/session/")
    (call,) = stripe_stand_in.requests_to("/v1/billing_portal/sessions")
    assert call.params == {
        "customer": Subscription.objects.get(user=user).stripe_customer_id,
        "return_url": settings.BILLING_PORTAL_RETURN_URL,
    }


def test_portal_error_from_stripe_is_502(user_client, stripe_stand_in):
    user_client.post(CHECKOUT, {"plan": "ugly-duckling"}, format="json")
    stripe_stand_in.fail(400, "invalid_request_error", "No configuration provided.", None)
    response = user_client.post(PORTAL)
    assert response.status_code == 502 and "No configuration provided." in response.json()["detail"]


# --- subscription -------------------------------------------------------------------------
def test_subscription_of_a_user_without_one_is_the_free_tier(user_client):
    body = user_client.get(SUBSCRIPTION).json()
    assert body == {
        "status": "none",
        "is_active": False,
        "plan": None,
        "plan_name": "Free",
        "monthly_credits": settings.FREE_TIER_MONTHLY_CREDITS,
        "current_period_start": None,
        "current_period_end": None,
        "cancel_at_period_end": False,
        "cancelling": False,
        "cancel_at": None,
        "has_billing_account": False,
    }


def test_subscription_of_an_active_user(user_client, user):
    Subscription.objects.create(
        user=user,
        stripe_customer_id="cus_a",
        status="active",
        plan_type="duckin-awesome",
        cancel_at_period_end=True,
    )
    body = user_client.get(SUBSCRIPTION).json()
    assert body["status"] == "active" and body["is_active"] is True
    assert (body["plan"], body["plan_name"], body["monthly_credits"]) == (
        "duckin-awesome",
        "Duckin' Awesome",
        15000,
    )
    assert body["cancel_at_period_end"] is True and body["has_billing_account"] is True


def test_a_canceled_subscription_reads_as_the_free_tier_allowance(user_client, user):
    Subscription.objects.create(
        user=user, stripe_customer_id="cus_a", status="canceled", plan_type="ugly-duckling"
    )
    body = user_client.get(SUBSCRIPTION).json()
    assert (body["status"], body["is_active"], body["monthly_credits"]) == ("canceled", False, 250)


# --- the staff report ---------------------------------------------------------------------
def test_report_is_staff_only(user_client, api_client):
    assert user_client.get(REPORT, {"min_credits": 100}).status_code == 403
    assert api_client.get(REPORT, {"min_credits": 100}).status_code == 401


def test_report_needs_min_credits(staff_client):
    response = staff_client.get(REPORT)
    assert response.status_code == 400 and "min_credits" in response.json()["fields"]


def test_report_lists_rich_active_users_paginated(staff_client, user):
    Subscription.objects.create(user=user, status="active", plan_type="ugly-duckling")
    credit_services.grant(user=user, amount=500, reason="test")
    response = staff_client.get(REPORT, {"min_credits": 100})
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    (row,) = body["results"]
    assert (row["id"], row["email"], row["balance"], row["subscription_status"], row["plan_type"]) == (
        user.pk,
        user.email,
        500,
        "active",
        "ugly-duckling",
    )
    assert staff_client.get(REPORT, {"min_credits": 500}).json()["count"] == 0
