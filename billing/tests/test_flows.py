"""Each flow of a live Stripe account, in both API layouts: subscription state, credits (exact
amounts, once), the stored events; then every flow delivered backwards, twice, ends the same."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.test import Client

from billing import services
from billing.models import PriceMapping, Subscription, WebhookEvent
from billing.tests import flows
from billing.tests.conftest import LAYOUTS, deliver
from billing.tests.flows import FLEXIBLE_CANCEL_AT, NEXT_END, PERIOD_END
from credits.models import CreditAccount, CreditTransaction

pytestmark = pytest.mark.django_db

SUBSCRIPTION = "/api/billing/subscription/"


def run(client, ctx: flows.Ctx, events: list[dict] | None = None) -> list:
    responses = [deliver(client, evt) for evt in (ctx.events if events is None else events)]
    for response in responses:
        assert response.status_code == 200, response.content
    return responses


def grants(ctx: flows.Ctx) -> list[tuple[str, int]]:
    """(idempotency key, amount) of the user's ledger, oldest first."""
    rows = CreditTransaction.objects.filter(user=ctx.user).order_by("created_at", "id")
    return [(row.idempotency_key, row.amount) for row in rows]


def invoice_key(ctx: flows.Ctx, name: str) -> str:
    return f"stripe-invoice:{ctx.inv(name)}"


def balance(ctx: flows.Ctx) -> int:
    account = CreditAccount.objects.filter(user=ctx.user).first()
    return account.balance if account else 0


def statuses(ctx: flows.Ctx) -> list[str]:
    by_id = dict(WebhookEvent.objects.values_list("event_id", "status"))
    return [by_id[evt["id"]] for evt in ctx.events]


def row(ctx: flows.Ctx) -> Subscription:
    return Subscription.objects.get(user=ctx.user)


def summary(ctx: flows.Ctx) -> dict:
    client = Client()
    client.force_login(ctx.user)
    return client.get(SUBSCRIPTION).json()


def at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def iso(ts: int) -> str:
    return at(ts).isoformat().replace("+00:00", "Z")


layouts = pytest.mark.parametrize("layout", LAYOUTS)


# --- one test per flow --------------------------------------------------------------------
@layouts
def test_subscribe(api_client, layout):
    ctx = flows.prepare("subscribe", layout)
    run(api_client, ctx)
    sub = row(ctx)
    assert (sub.stripe_subscription_id, sub.status, sub.plan_type) == (ctx.sub, "active", "ugly-duckling")
    assert (sub.current_period_start, sub.current_period_end) == (at(flows.PERIOD_START), at(PERIOD_END))
    assert grants(ctx) == [(invoice_key(ctx, "create"), 5000)] and balance(ctx) == 5000
    assert set(statuses(ctx)) == {"processed"}
    stored = WebhookEvent.objects.get(event_id=ctx.events[-1]["id"])
    assert bytes(stored.raw_body) == json.dumps(ctx.events[-1]).encode()
    assert stored.payload == ctx.events[-1]


@layouts
def test_renew(api_client, layout):
    ctx = flows.prepare("renew", layout)
    run(api_client, ctx)
    sub = row(ctx)
    assert (sub.status, sub.current_period_end) == ("active", at(NEXT_END))
    assert grants(ctx) == [(invoice_key(ctx, "create"), 5000), (invoice_key(ctx, "cycle"), 5000)]
    assert balance(ctx) == 10000 and set(statuses(ctx)) == {"processed"}


@layouts
def test_upgrade_mid_cycle_grants_the_difference(api_client, layout):
    ctx = flows.prepare("upgrade", layout)
    run(api_client, ctx)
    assert row(ctx).plan_type == "duckin-awesome"
    # 15,000 - 5,000: the old plan from the proration line, not the stored state.
    assert grants(ctx) == [(invoice_key(ctx, "create"), 5000), (invoice_key(ctx, "update"), 10000)]
    entry = CreditTransaction.objects.get(idempotency_key=invoice_key(ctx, "update"))
    assert entry.metadata["old_plan"] == "ugly-duckling" and entry.metadata["plan"] == "duckin-awesome"
    assert balance(ctx) == 15000 and set(statuses(ctx)) == {"processed"}


@layouts
def test_downgrade_grants_nothing_until_the_next_cycle(api_client, layout):
    ctx = flows.prepare("downgrade", layout)
    run(api_client, ctx)
    assert row(ctx).plan_type == "ugly-duckling"
    assert grants(ctx) == [(invoice_key(ctx, "create"), 15000), (invoice_key(ctx, "cycle"), 5000)]
    note = WebhookEvent.objects.get(event_id=ctx.events[-3]["id"]).note
    assert "not an upgrade" in note and set(statuses(ctx)) == {"processed"}


@layouts
def test_portal_cancel_classic(api_client, staff_user, layout):
    ctx = flows.prepare("cancel_classic", layout)
    run(api_client, ctx)
    sub = row(ctx)
    assert (sub.status, sub.cancel_at_period_end, sub.cancel_at) == ("active", True, at(PERIOD_END))
    body = summary(ctx)
    assert (body["cancelling"], body["cancel_at"], body["cancel_at_period_end"]) == (
        True,
        iso(PERIOD_END),
        True,
    )
    admin = Client()
    admin.force_login(staff_user)
    assert "cancels 2024-12-01 00:00 UTC" in admin.get("/admin/billing/subscription/").text
    assert grants(ctx) == [(invoice_key(ctx, "create"), 5000)]


@layouts
def test_portal_cancel_flexible(api_client, staff_user, layout):
    ctx = flows.prepare("cancel_flexible", layout)
    run(api_client, ctx)
    sub = row(ctx)
    assert (sub.status, sub.cancel_at_period_end, sub.cancel_at) == ("active", False, at(FLEXIBLE_CANCEL_AT))
    body = summary(ctx)
    assert (body["cancelling"], body["cancel_at"]) == (True, iso(FLEXIBLE_CANCEL_AT))
    admin = Client()
    admin.force_login(staff_user)
    page = admin.get(f"/admin/billing/subscription/{sub.pk}/change/").text
    assert "cancels 2024-11-21 00:00 UTC" in page
    assert grants(ctx) == [(invoice_key(ctx, "create"), 5000)]


@layouts
def test_resume_after_a_cancellation(api_client, layout):
    ctx = flows.prepare("resume", layout)
    run(api_client, ctx)
    sub = row(ctx)
    assert (sub.status, sub.cancel_at, sub.cancel_at_period_end) == ("active", None, False)
    assert (summary(ctx)["cancelling"], summary(ctx)["cancel_at"]) == (False, None)
    assert grants(ctx) == [(invoice_key(ctx, "create"), 5000)]


@layouts
def test_one_off_invoice_paid(api_client, layout):
    ctx = flows.prepare("one_off_paid", layout)
    run(api_client, ctx)
    sub = row(ctx)
    assert (sub.status, sub.plan_type) == ("active", "ugly-duckling")
    assert sub.metadata["last_one_off_invoice"]["invoice_id"] == ctx.inv("oneoff")
    assert grants(ctx) == [(invoice_key(ctx, "create"), 5000)]
    assert "one-off invoice" in WebhookEvent.objects.get(event_id=ctx.events[-1]["id"]).note


@layouts
def test_one_off_invoice_failed_never_changes_the_status(api_client, layout):
    ctx = flows.prepare("one_off_failed", layout)
    run(api_client, ctx)
    sub = row(ctx)
    assert sub.status == "active"
    failure = sub.metadata["last_payment_failure"]
    assert (failure["invoice_id"], failure["subscription_id"]) == (ctx.inv("oneoff"), None)
    assert grants(ctx) == [(invoice_key(ctx, "create"), 5000)] and set(statuses(ctx)) == {"processed"}


@layouts
def test_unknown_customer_is_unmatched_then_linked_by_staff(api_client, staff_user, layout):
    ctx = flows.prepare("stranger", layout)
    responses = run(api_client, ctx)
    assert [r.json()["status"] for r in responses] == ["unmatched", "unmatched"]
    assert not Subscription.objects.filter(user=ctx.user).exists() and balance(ctx) == 0
    stored = WebhookEvent.objects.get(event_id=ctx.events[0]["id"])
    assert stored.customer_id == ctx.cus and "unknown customer" in stored.note
    # Stripe redelivers: still 2xx, still unmatched (never a 500 for days).
    assert deliver(api_client, ctx.events[1]).json()["status"] == "unmatched"

    admin = Client()
    admin.force_login(staff_user)
    listing = admin.get("/admin/billing/webhookevent/?status__exact=unmatched").text
    assert f"/admin/billing/webhookevent/{stored.pk}/link/" in listing
    page = admin.post(f"/admin/billing/webhookevent/{stored.pk}/link/", {"user": ctx.user.email}, follow=True)
    assert page.status_code == 200 and "linked to" in page.text
    sub = row(ctx)
    assert (sub.stripe_customer_id, sub.stripe_subscription_id, sub.status) == (ctx.cus, ctx.sub, "active")
    assert grants(ctx) == [(invoice_key(ctx, "create"), 5000)]
    assert statuses(ctx) == ["processed", "processed"]


def test_linking_refuses_a_customer_of_another_user(api_client, layout=LAYOUTS[1]):
    ctx = flows.prepare("stranger", layout)
    run(api_client, ctx)
    other = flows.prepare("subscribe", layout)
    stored = WebhookEvent.objects.get(event_id=ctx.events[0]["id"])
    with pytest.raises(services.CannotLink):
        services.link_unmatched_event(event=stored, user=other.user)  # has its own customer
    assert WebhookEvent.objects.get(pk=stored.pk).status == "unmatched"


@layouts
def test_nul_characters_are_stored_and_processed(api_client, staff_user, layout):
    ctx = flows.prepare("nul", layout)
    run(api_client, ctx)
    stored = WebhookEvent.objects.get(event_id=ctx.events[0]["id"])
    assert bytes(stored.raw_body) == json.dumps(ctx.events[0]).encode()  # the exact bytes
    metadata = stored.payload["data"]["object"]["metadata"]
    assert metadata["note"] == "a\\u0000b" and metadata["bad\\u0000key"] == "x"  # escaped, not dropped
    paid = WebhookEvent.objects.get(event_id=ctx.events[1]["id"])
    assert paid.payload["data"]["object"]["description"] == "Thanks\\u0000!"
    assert statuses(ctx) == ["processed", "processed"]
    assert (row(ctx).status, grants(ctx)) == ("active", [(invoice_key(ctx, "create"), 5000)])
    admin = Client()
    admin.force_login(staff_user)
    page = admin.get(f"/admin/billing/webhookevent/{stored.pk}/change/")
    assert page.status_code == 200 and "body (as signed)" in page.text and "a\\u0000b" in page.text


@pytest.mark.parametrize("body", ["[]", '"evt"', "42", "null", "true", '{"id": "evt_1"}', '{"data": []}'])
def test_a_signed_body_that_is_not_an_event_object_is_400(api_client, settings, body):
    import stripe

    header = stripe.WebhookSignature.generate_signature_header(body, settings.STRIPE_WEBHOOK_SECRET)
    response = api_client.post(
        "/api/billing/webhook/", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_webhook" and response.json()["status"] == 400
    assert not WebhookEvent.objects.exists()


@layouts
def test_the_platforms_own_checkout_links_by_its_metadata(api_client, layout):
    ctx = flows.prepare("platform_checkout", layout)
    run(api_client, ctx)
    sub = row(ctx)
    assert (sub.stripe_customer_id, sub.stripe_subscription_id) == (ctx.cus, ctx.sub)
    assert (sub.status, sub.plan_type) == ("active", "ugly-duckling")
    assert grants(ctx) == [(invoice_key(ctx, "create"), 5000)] and set(statuses(ctx)) == {"processed"}


@layouts
def test_another_products_user_id_is_never_linked(api_client, layout):
    ctx = flows.prepare("platform_lookalike", layout)
    responses = run(api_client, ctx)
    assert [r.json()["status"] for r in responses] == ["unmatched", "unmatched"]
    notes = [WebhookEvent.objects.get(event_id=e["id"]).note for e in ctx.events]
    assert "without a known planId or price" in notes[0] and "email is not the user's" in notes[1]
    assert not Subscription.objects.filter(user=ctx.user).exists() and balance(ctx) == 0


@layouts
def test_a_period_the_platform_credited_is_not_credited_again(api_client, layout):
    ctx = flows.prepare("platform_credited", layout)
    run(api_client, ctx)
    assert grants(ctx) == [(f"kv-activation-{ctx.tag}", 5000), (invoice_key(ctx, "cycle"), 5000)]
    assert "already credited by the platform" in WebhookEvent.objects.get(event_id=ctx.events[0]["id"]).note
    assert balance(ctx) == 10000


@layouts
def test_a_zero_dollar_trial_invoice_grants_nothing(api_client, layout):
    ctx = flows.prepare("trial", layout)
    run(api_client, ctx)
    assert "trial" in WebhookEvent.objects.get(event_id=ctx.events[1]["id"]).note
    assert grants(ctx) == [(invoice_key(ctx, "cycle"), 5000)] and row(ctx).status == "active"


# --- webhook route and body ---------------------------------------------------------------
def test_the_webhook_answers_without_its_trailing_slash(api_client):
    ctx = flows.prepare("subscribe", LAYOUTS[1])
    from billing.testing import signed_payload

    payload, header = signed_payload(ctx.events[0])
    response = api_client.post(
        "/api/billing/webhook", data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )
    assert response.status_code == 200 and response.json()["status"] == "processed"


def test_a_body_above_djangos_upload_limit_is_accepted(api_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024  # far below the event: the webhook has its own limit
    ctx = flows.prepare("subscribe", LAYOUTS[1])
    ctx.events[1]["data"]["object"]["metadata"] = {f"k{i}": "x" * 480 for i in range(50)}
    assert deliver(api_client, ctx.events[1]).json()["status"] == "processed"
    settings.STRIPE_WEBHOOK_MAX_BYTES = 2048
    response = deliver(api_client, {**ctx.events[1], "id": "evt_too_large"})
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"


def test_a_storage_error_answers_in_the_error_shape_and_a_redelivery_stores_it(api_client, monkeypatch):
    from django.db import OperationalError

    ctx = flows.prepare("subscribe", LAYOUTS[1])

    def database_down(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    with monkeypatch.context() as patch:
        patch.setattr(WebhookEvent.objects, "get_or_create", database_down)
        response = deliver(api_client, ctx.events[0])
    assert response.status_code == 500
    assert response.json() == {
        "status": 500,
        "code": "webhook_storage_failed",
        "detail": f"Event {ctx.events[0]['id']} could not be stored (OperationalError); "
        "Stripe will deliver it again.",
    }
    assert not WebhookEvent.objects.exists()
    assert deliver(api_client, ctx.events[0]).json()["status"] == "processed"


def test_an_unexpected_error_answers_in_the_error_shape(api_client, monkeypatch):
    ctx = flows.prepare("subscribe", LAYOUTS[1])

    def crash(**kwargs):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(services, "_store", crash)
    response = deliver(api_client, ctx.events[0])
    assert response.status_code == 500 and response.json()["code"] == "webhook_error"


def test_a_payload_jsonb_refuses_is_kept_as_its_raw_body_and_handled(api_client, monkeypatch):
    from billing import payloads

    ctx = flows.prepare("subscribe", LAYOUTS[1])
    ctx.events[1]["data"]["object"]["metadata"] = {"note": "\x00"}
    original = payloads.jsonb_safe
    calls = {"n": 0}

    def unsafe_once(value):  # the first call (storing) lets the NUL through to PostgreSQL
        calls["n"] += 1
        return value if calls["n"] == 1 else original(value)

    monkeypatch.setattr(payloads, "jsonb_safe", unsafe_once)
    response = deliver(api_client, ctx.events[1])
    assert response.status_code == 200 and response.json()["status"] == "processed"
    stored = WebhookEvent.objects.get(event_id=ctx.events[1]["id"])
    assert stored.payload == {} and bytes(stored.raw_body) == json.dumps(ctx.events[1]).encode()
    assert "raw body" in stored.note and row(ctx).status == "incomplete"


# --- staff mappings -----------------------------------------------------------------------
def test_a_staff_plan_survives_a_later_event_with_an_unknown_price(api_client):
    ctx = flows.prepare("subscribe", LAYOUTS[1])
    run(api_client, ctx)
    services.set_plan_type(subscription=row(ctx), plan_type="duckin-awesome")
    later = ctx.subscription(price="price_unknown_to_all")
    from billing.tests.conftest import event

    deliver(api_client, event("customer.subscription.updated", later, created=flows.MID))
    sub = row(ctx)
    assert sub.plan_type == "duckin-awesome" and sub.metadata["unmapped_price"] == "price_unknown_to_all"


def test_staff_price_mappings_persist_in_the_admin(staff_user):
    admin = Client()
    admin.force_login(staff_user)
    response = admin.post(
        "/admin/billing/pricemapping/add/",
        {"stripe_price_id": "price_legacy_gold", "plan": "duckin-awesome", "note": "2023 price"},
    )
    assert response.status_code == 302
    from billing import plans

    assert plans.plan_for_price("price_legacy_gold") == "duckin-awesome"
    bad = admin.post("/admin/billing/pricemapping/add/", {"stripe_price_id": "price_x", "plan": "gold"})
    assert bad.status_code == 200 and "Select a valid choice" in bad.text
    mapping = PriceMapping.objects.get()
    changed = admin.post(
        f"/admin/billing/pricemapping/{mapping.pk}/change/",
        {"stripe_price_id": "price_renamed", "plan": "ugly-duckling", "note": "corrected"},
    )
    assert changed.status_code == 302
    assert list(PriceMapping.objects.values_list("stripe_price_id", "plan")) == [
        ("price_legacy_gold", "ugly-duckling")
    ]


# --- every flow, backwards, twice ---------------------------------------------------------
def snapshot(ctx: flows.Ctx) -> str:
    """The state a flow leaves, with its tag (ids, emails) made neutral."""
    sub = Subscription.objects.filter(user=ctx.user).values().first()
    if sub:
        for name in ("id", "user_id", "created_at", "updated_at"):
            sub.pop(name)
    ledger = sorted(
        CreditTransaction.objects.filter(user=ctx.user).values_list(
            "idempotency_key", "amount", "type", "reason"
        )
    )
    account = (
        CreditAccount.objects.filter(user=ctx.user).values("balance", "total_purchased", "total_used").first()
    )
    events = [(evt["type"], statuses(ctx)[i]) for i, evt in enumerate(ctx.events)]
    text = json.dumps([sub, ledger, account, events], default=str, sort_keys=True)
    return text.replace(ctx.tag, "TAG")


@layouts
@pytest.mark.parametrize("name", sorted(flows.FLOWS))
def test_redelivering_every_event_twice_backwards_ends_in_the_same_state(api_client, name, layout):
    forward = flows.prepare(name, layout, tag=f"f{name}{layout}")
    run(api_client, forward)
    expected = snapshot(forward)
    # Stripe redelivers everything, twice, newest first: nothing changes.
    for _ in range(2):
        for evt in reversed(forward.events):
            assert deliver(api_client, evt).status_code == 200
    assert snapshot(forward) == expected
    # The same flow delivered backwards from the start (twice: the second pass is Stripe's retry
    # of what could not apply yet) ends in the same state.
    backward = flows.prepare(name, layout, tag=f"b{name}{layout}")
    for _ in range(2):
        for evt in reversed(backward.events):
            assert deliver(api_client, evt).status_code == 200
    assert snapshot(backward) == expected


def test_credits_reconcile_is_clean_after_every_flow(api_client, capsys):
    for name in sorted(flows.FLOWS):
        for layout in LAYOUTS:
            ctx = flows.prepare(name, layout)
            run(api_client, ctx)
            for evt in reversed(ctx.events):
                deliver(api_client, evt)
    call_command("credits_reconcile")  # exits 1 on any mismatch
    assert "OK:" in capsys.readouterr().out
