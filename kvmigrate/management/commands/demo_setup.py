"""`make run`'s demo data (here, beside kvgen: it writes to several domains, which accounts may not).

Create (or refresh) the demo data that `make run` prints: a staff user with credits and a token,
and a customer with an active subscription in its current period (so the staff report has rows).

Everything goes through the real write paths: credits through `credits.services.grant`, the
subscription and its monthly credits through signed Stripe webhook events handled by
`billing.services.record_event`, exactly as Stripe's deliveries are. Re-running is a no-op while
the data is current.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import stripe
from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from accounts.models import User
from accounts.services import issue_api_token
from billing import services as billing_services
from billing.models import SubscriptionStatus
from credits import services as credit_services

DEMO_EMAIL = "staff@fivedocks.local"
DEMO_PASSWORD = "fivedocks-demo"
DEMO_CREDITS = 1_000
CUSTOMER_EMAIL = "customer@fivedocks.local"
CUSTOMER_PLAN = "ugly-duckling"
PERIOD_DAYS = 30
DAY = 86_400
DEDUCT_BODY = '{"operation": "company_search", "idempotency_key": "try-1"}'


class Command(BaseCommand):
    help = "Create the demo staff user and customer (development only) and print how to use them."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--url", default="http://127.0.0.1:8000", help="the address the server will answer on (printed)"
        )

    def handle(self, *args, url: str, **options) -> None:
        url = url.rstrip("/")
        staff, _ = User.objects.get_or_create(email=DEMO_EMAIL, defaults={"username": "staff"})
        staff.is_staff = True
        staff.is_superuser = True
        staff.set_password(DEMO_PASSWORD)
        staff.save()
        # Once (the idempotency key makes a re-run return the first grant): the first API call
        # a newcomer makes, a deduction, must not answer 402.
        credit_services.grant(
            user=staff,
            amount=DEMO_CREDITS,
            kind="bonus",
            reason="demo: starting credits",
            idempotency_key="demo-setup:starting-credits",
        )
        token = issue_api_token(user=staff)  # a fresh key each time: only its hash is stored

        customer, _ = User.objects.get_or_create(email=CUSTOMER_EMAIL, defaults={"username": "customer"})
        subscription = getattr(customer, "subscription", None)
        current = (
            subscription is not None
            and subscription.status == SubscriptionStatus.ACTIVE
            and subscription.current_period_end is not None
            and subscription.current_period_end > timezone.now()
        )
        if not current:
            self._subscribe(customer)

        self.stdout.write(
            f"\nfivedocks is starting at {url}/\n"
            f"  admin:    {url}/admin/   staff login {DEMO_EMAIL} / {DEMO_PASSWORD}\n"
            f"  API docs: {url}/api/docs/\n"
            f"  health:   {url}/healthz\n"
            f"  try the API as the demo staff user ({DEMO_CREDITS:,} starting credits):\n"
            f"    curl -H 'Authorization: Token {token}' {url}/api/credits/\n"
            f"    curl -H 'Authorization: Token {token}' -H 'Content-Type: application/json' "
            f"-d '{DEDUCT_BODY}' {url}/api/credits/deduct/\n"
        )

    def _subscribe(self, customer: User) -> None:
        """An active subscription for the current period and its paid invoice, as Stripe sends them."""
        now = int(time.time())
        start = now - now % DAY
        tag = f"{customer.pk}_{datetime.fromtimestamp(start, UTC):%Y%m%d}"
        price = settings.BILLING_PLANS[CUSTOMER_PLAN]["stripe_price"]
        customer_id, subscription_id = f"cus_demo{customer.pk}", f"sub_demo{customer.pk}"
        item = {
            "price": {"id": price},
            "current_period_start": start,
            "current_period_end": start + PERIOD_DAYS * DAY,
        }
        subscription = {
            "id": subscription_id,
            "object": "subscription",
            "customer": customer_id,
            "status": "active",
            "cancel_at_period_end": False,
            "metadata": {"user_id": str(customer.pk), "plan": CUSTOMER_PLAN},
            "items": {"object": "list", "data": [item]},
        }
        invoice = {
            "id": f"in_demo{tag}",
            "object": "invoice",
            "billing_reason": "subscription_create",
            "customer": customer_id,
            "subscription": subscription_id,
            "total": 900,  # USD cents; a $0 invoice is a trial and grants nothing
            "amount_paid": 900,
            "currency": "usd",
            "lines": {
                "object": "list",
                "data": [{"price": {"id": price}, "amount": 900, "proration": False}],
            },
        }
        for kind, obj in (("customer.subscription.created", subscription), ("invoice.paid", invoice)):
            event = {
                "id": f"evt_demo_{kind.split('.')[-1]}_{tag}",
                "object": "event",
                "api_version": stripe.api_version,
                "created": now,
                "type": kind,
                "livemode": False,
                "data": {"object": obj},
            }
            payload = json.dumps(event)
            header = stripe.WebhookSignature.generate_signature_header(
                payload, settings.STRIPE_WEBHOOK_SECRET
            )
            billing_services.record_event(payload=payload.encode(), sig_header=header)
