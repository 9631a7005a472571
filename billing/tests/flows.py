"""The flows a live Stripe account produces, as the events Stripe delivers, in both API layouts.

Each flow builds its events for one user (ids tagged, so every flow can run side by side in one
database), sets up what exists before the first event (a fivedocks checkout's customer, a
migrated platform record, nothing at all), and states what must hold at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from accounts.tests.factories import UserFactory
from billing.models import Subscription
from billing.tests.conftest import (
    PERIOD_END,
    PERIOD_START,
    event,
    invoice_line,
    invoice_object,
    subscription_object,
)
from credits import services as credit_services
from credits.models import CreditTransaction

T = 1_730_419_300  # the first event, just after the first period started
MONTH = PERIOD_END - PERIOD_START
NEXT_END = PERIOD_END + MONTH
MID = PERIOD_START + MONTH // 2  # a plan change half way through the first period


@dataclass
class Ctx:
    tag: str
    layout: str
    user: object = None
    events: list[dict] = field(default_factory=list)

    @property
    def cus(self) -> str:
        return f"cus_{self.tag}"

    @property
    def sub(self) -> str:
        return f"sub_{self.tag}"

    def inv(self, name: str) -> str:
        return f"in_{self.tag}_{name}"

    def add(self, event_type: str, obj: dict, created: int) -> None:
        self.events.append(
            event(
                event_type,
                obj,
                created=created,
                event_id=f"evt_{self.tag}_{len(self.events)}",
                layout=self.layout,
            )
        )

    def subscription(self, **kwargs) -> dict:
        kwargs.setdefault("layout", self.layout)
        return subscription_object(self.sub, self.cus, **kwargs)

    def invoice(self, name: str, **kwargs) -> dict:
        kwargs.setdefault("layout", self.layout)
        return invoice_object(self.inv(name), self.cus, kwargs.pop("subscription", self.sub), **kwargs)

    def line(self, plan: str, amount: int | None = None, **kwargs) -> dict:
        kwargs.setdefault("layout", self.layout)
        kwargs.setdefault("subscription", self.sub)
        return invoice_line(plan, amount, **kwargs)


def fivedocks_customer(ctx: Ctx) -> None:
    """The user started a checkout in fivedocks: the customer exists, no subscription yet."""
    ctx.user = UserFactory(email=f"{ctx.tag}@example.com")
    Subscription.objects.create(user=ctx.user, stripe_customer_id=ctx.cus)


def no_row(ctx: Ctx) -> None:
    ctx.user = UserFactory(email=f"{ctx.tag}@example.com")


def migrated_platform_subscriber(ctx: Ctx) -> None:
    """Migrated from the KV store: subscription, and the platform's activation bonus."""
    ctx.user = UserFactory(email=f"{ctx.tag}@example.com")
    Subscription.objects.create(
        user=ctx.user,
        stripe_customer_id=ctx.cus,
        stripe_subscription_id=ctx.sub,
        status="active",
        plan_type="ugly-duckling",
        current_period_start=datetime.fromtimestamp(PERIOD_START, tz=UTC),
        metadata={"kv": {"key": f"user_credits:{ctx.tag}", "layout": "real", "fields": []}},
    )
    result = credit_services.grant(
        user=ctx.user,
        amount=5000,
        kind="purchase",
        reason="ugly-duckling subscription activation bonus",
        idempotency_key=f"kv-activation-{ctx.tag}",
        metadata={"source": "kv", "key": f"user_credits:{ctx.tag}", "legacy_type": "credit"},
    )
    CreditTransaction.objects.filter(pk=result.transaction.pk).update(
        created_at=datetime.fromtimestamp(PERIOD_START + 40, tz=UTC)
    )


# --- the events of each flow --------------------------------------------------------------
def subscribe(ctx: Ctx, plan: str = "ugly-duckling") -> None:
    session = {
        "id": f"cs_{ctx.tag}",
        "object": "checkout.session",
        "mode": "subscription",
        "customer": ctx.cus,
        "subscription": ctx.sub,
        "client_reference_id": str(ctx.user.pk),
        "customer_details": {"email": ctx.user.email},
        "metadata": {"user_id": str(ctx.user.pk), "plan": plan},
        "payment_status": "paid",
    }
    ctx.add("checkout.session.completed", session, T + 3)
    ctx.add("customer.subscription.created", ctx.subscription(status="incomplete", plan=plan), T)
    ctx.add("customer.subscription.updated", ctx.subscription(plan=plan), T + 2)
    ctx.add("invoice.paid", ctx.invoice("create", plan=plan, billing_reason="subscription_create"), T + 2)


def renew(ctx: Ctx) -> None:
    subscribe(ctx)
    second = ctx.subscription(start=PERIOD_END, end=NEXT_END)
    ctx.add("customer.subscription.updated", second, PERIOD_END + 5)
    lines = [ctx.line("ugly-duckling", start=PERIOD_END, end=NEXT_END)]
    ctx.add(
        "invoice.paid", ctx.invoice("cycle", lines=lines, billing_reason="subscription_cycle"), PERIOD_END + 6
    )


def _change(ctx: Ctx, old: str, new: str, unused: int, remaining: int) -> None:
    ctx.add("customer.subscription.updated", ctx.subscription(plan=new), MID)
    lines = [
        ctx.line(old, -unused, proration=True, start=MID, end=PERIOD_END, line_id=f"il_{ctx.tag}_unused"),
        ctx.line(
            new, remaining, proration=True, start=MID, end=PERIOD_END, line_id=f"il_{ctx.tag}_remaining"
        ),
    ]
    ctx.add("invoice.paid", ctx.invoice("update", lines=lines, billing_reason="subscription_update"), MID + 1)


def upgrade(ctx: Ctx) -> None:
    subscribe(ctx)
    _change(ctx, "ugly-duckling", "duckin-awesome", 950, 2450)


def downgrade(ctx: Ctx) -> None:
    subscribe(ctx, "duckin-awesome")
    _change(ctx, "duckin-awesome", "ugly-duckling", 2450, 950)
    second = ctx.subscription(start=PERIOD_END, end=NEXT_END)
    ctx.add("customer.subscription.updated", second, PERIOD_END + 5)
    lines = [ctx.line("ugly-duckling", start=PERIOD_END, end=NEXT_END)]
    ctx.add(
        "invoice.paid", ctx.invoice("cycle", lines=lines, billing_reason="subscription_cycle"), PERIOD_END + 6
    )


def cancel_classic(ctx: Ctx) -> None:
    """The classic portal: cancel at the period's end (Stripe also sets `cancel_at` to it)."""
    subscribe(ctx)
    sub = ctx.subscription(cancel_at_period_end=True, cancel_at=PERIOD_END)
    ctx.add("customer.subscription.updated", sub, MID)


FLEXIBLE_CANCEL_AT = PERIOD_START + 20 * 86400


def cancel_flexible(ctx: Ctx) -> None:
    """The portal under flexible billing mode: `cancel_at` only, `cancel_at_period_end` false."""
    subscribe(ctx)
    ctx.add("customer.subscription.updated", ctx.subscription(cancel_at=FLEXIBLE_CANCEL_AT), MID)


def resume(ctx: Ctx) -> None:
    cancel_flexible(ctx)
    ctx.add("customer.subscription.updated", ctx.subscription(), MID + 60)


def one_off_paid(ctx: Ctx) -> None:
    subscribe(ctx)
    lines = [ctx.line("ugly-duckling", 5000, price="price_setup_fee", subscription=None)]
    ctx.add("invoice.paid", ctx.invoice("oneoff", subscription=None, lines=lines), MID)


def one_off_failed(ctx: Ctx) -> None:
    subscribe(ctx)
    lines = [ctx.line("ugly-duckling", 5000, price="price_setup_fee", subscription=None)]
    failed = ctx.invoice("oneoff", subscription=None, lines=lines)
    failed.update(status="open", amount_paid=0, attempt_count=1)
    ctx.add("invoice.payment_failed", failed, MID)


def stranger(ctx: Ctx) -> None:
    """Another product's customer on the same Stripe account (nobody in fivedocks)."""
    ctx.add("customer.subscription.created", ctx.subscription(), T)
    ctx.add("invoice.paid", ctx.invoice("create", billing_reason="subscription_create"), T + 1)


def with_nul(ctx: Ctx) -> None:
    sub = ctx.subscription(metadata={"user_id": str(ctx.user.pk), "note": "a\x00b", "bad\x00key": "x"})
    ctx.add("customer.subscription.created", sub, T)
    paid = ctx.invoice("create", billing_reason="subscription_create")
    paid["description"] = "Thanks\x00!"
    ctx.add("invoice.paid", paid, T + 1)


def _platform_metadata(ctx: Ctx) -> dict:
    return {"userId": str(ctx.user.pk), "planId": "ugly-duckling"}


def platform_checkout(ctx: Ctx) -> None:
    """A subscription the platform's own checkout started before the cutover: its keys only."""
    session = {
        "id": f"cs_{ctx.tag}",
        "object": "checkout.session",
        "mode": "subscription",
        "customer": ctx.cus,
        "subscription": ctx.sub,
        "client_reference_id": None,
        "customer_details": {"email": ctx.user.email.upper()},
        "metadata": _platform_metadata(ctx),
    }
    ctx.add("checkout.session.completed", session, T + 3)
    ctx.add("customer.subscription.created", ctx.subscription(metadata=_platform_metadata(ctx)), T)
    paid = ctx.invoice(
        "create",
        billing_reason="subscription_create",
        metadata=_platform_metadata(ctx),
        customer_email=ctx.user.email,
    )
    ctx.add("invoice.paid", paid, T + 1)


def platform_lookalike(ctx: Ctx) -> None:
    """Another product's `userId` (no known plan, or another email): never linked."""
    other = {"userId": str(ctx.user.pk), "planId": "gold"}
    ctx.add("customer.subscription.created", ctx.subscription(price="price_other_product", metadata=other), T)
    session = {
        "id": f"cs_{ctx.tag}",
        "object": "checkout.session",
        "mode": "subscription",
        "customer": ctx.cus,
        "subscription": ctx.sub,
        "customer_details": {"email": "someone.else@example.org"},
        "metadata": _platform_metadata(ctx),
    }
    ctx.add("checkout.session.completed", session, T + 3)


def platform_credited(ctx: Ctx) -> None:
    """The platform credited the first period at activation; Stripe's create invoice comes now."""
    ctx.add("invoice.paid", ctx.invoice("create", billing_reason="subscription_create"), T + 1)
    lines = [ctx.line("ugly-duckling", start=PERIOD_END, end=NEXT_END)]
    ctx.add(
        "invoice.paid", ctx.invoice("cycle", lines=lines, billing_reason="subscription_cycle"), PERIOD_END + 6
    )


def trial(ctx: Ctx) -> None:
    ctx.add("customer.subscription.created", ctx.subscription(status="trialing", plan="ugly-duckling"), T)
    lines = [ctx.line("ugly-duckling", 0)]
    ctx.add("invoice.paid", ctx.invoice("trial", lines=lines, billing_reason="subscription_create"), T + 1)
    ctx.add("customer.subscription.updated", ctx.subscription(start=PERIOD_END, end=NEXT_END), PERIOD_END + 5)
    lines = [ctx.line("ugly-duckling", start=PERIOD_END, end=NEXT_END)]
    ctx.add(
        "invoice.paid", ctx.invoice("cycle", lines=lines, billing_reason="subscription_cycle"), PERIOD_END + 6
    )


@dataclass(frozen=True)
class Flow:
    setup: Callable[[Ctx], None]
    build: Callable[[Ctx], None]


FLOWS: dict[str, Flow] = {
    "subscribe": Flow(fivedocks_customer, subscribe),
    "renew": Flow(fivedocks_customer, renew),
    "upgrade": Flow(fivedocks_customer, upgrade),
    "downgrade": Flow(fivedocks_customer, downgrade),
    "cancel_classic": Flow(fivedocks_customer, cancel_classic),
    "cancel_flexible": Flow(fivedocks_customer, cancel_flexible),
    "resume": Flow(fivedocks_customer, resume),
    "one_off_paid": Flow(fivedocks_customer, one_off_paid),
    "one_off_failed": Flow(fivedocks_customer, one_off_failed),
    "stranger": Flow(no_row, stranger),
    "nul": Flow(fivedocks_customer, with_nul),
    "platform_checkout": Flow(no_row, platform_checkout),
    "platform_lookalike": Flow(no_row, platform_lookalike),
    "platform_credited": Flow(migrated_platform_subscriber, platform_credited),
    "trial": Flow(fivedocks_customer, trial),
}


def prepare(name: str, layout: str, tag: str | None = None) -> Ctx:
    ctx = Ctx(tag=tag or f"{name}_{layout}", layout=layout)
    FLOWS[name].setup(ctx)
    FLOWS[name].build(ctx)
    return ctx
