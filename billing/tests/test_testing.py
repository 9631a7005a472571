"""The Stripe stand-in and the signing helper behave like Stripe for the real SDK."""

from __future__ import annotations

import pytest
import stripe

from billing.testing import StripeStandIn, make_event, signed_payload


@pytest.fixture
def client_and_stand_in():
    with StripeStandIn() as stand_in:
        yield (
            stripe.StripeClient("sk_test_x", base_addresses={"api": stand_in.url}, max_network_retries=0),
            stand_in,
        )


def test_sdk_objects_from_the_stand_in(client_and_stand_in):
    client, stand_in = client_and_stand_in
    customer = client.v1.customers.create(params={"email": "a@example.com", "metadata": {"user_id": "7"}})
    assert customer.object == "customer" and customer.id.startswith("cus_")
    assert customer.metadata["user_id"] == "7"
    session = client.v1.billing_portal.sessions.create(params={"customer": customer.id})
    assert session.url.startswith("https://billing.stripe.com/")
    assert [r.path for r in stand_in.requests] == ["/v1/customers", "/v1/billing_portal/sessions"]


def test_idempotency_key_replays_the_first_answer(client_and_stand_in):
    client, stand_in = client_and_stand_in
    first = client.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": "k1"})
    again = client.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": "k1"})
    assert first.id == again.id and len(stand_in.customers) == 1


def test_errors_arrive_as_the_sdks_exceptions(client_and_stand_in):
    client, stand_in = client_and_stand_in
    stand_in.fail(402, "card_error", "Your card was declined.", "card_declined")
    with pytest.raises(stripe.CardError) as declined:
        client.v1.customers.create(params={"email": "a@example.com"})
    assert declined.value.code == "card_declined" and declined.value.http_status == 402
    stand_in.fail(500, "api_error", "Something went wrong.", None, times=None)
    with pytest.raises(stripe.APIError):
        client.v1.customers.create(params={})
    with pytest.raises(stripe.APIError):
        client.v1.customers.create(params={})
    stand_in.clear_failures()
    assert client.v1.customers.create(params={}).id.startswith("cus_")
    unknown = stripe.StripeClient("rk_wrong", base_addresses={"api": stand_in.url}, max_network_retries=0)
    with pytest.raises(stripe.AuthenticationError):
        unknown.v1.customers.create(params={})


def test_signed_payload_verifies_with_the_sdk(settings):
    payload, header = signed_payload(make_event("invoice.paid", {"id": "in_1", "object": "invoice"}))
    assert header.startswith("t=") and ",v1=" in header
    event = stripe.Webhook.construct_event(payload, header, settings.STRIPE_WEBHOOK_SECRET)
    assert event.type == "invoice.paid" and event.data.object.id == "in_1"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, header, "whsec_other")
