"""Seed a live server's database through the services; prints what it made as one JSON line.

Run by tests/liveserver.py as `python -m tests.seed` with the server's environment, so the data
goes through the same code (and the same settings) the server uses. Only the last stdout line is
read: the JSON below.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import tempfile
import time
from pathlib import Path

import django

django.setup()

from django.conf import settings  # noqa: E402

from accounts.models import User  # noqa: E402
from accounts.services import issue_api_token  # noqa: E402
from billing import services as billing  # noqa: E402
from billing.testing import make_event, signed_payload  # noqa: E402
from credits import services as credits  # noqa: E402
from gmail import services as gmail  # noqa: E402
from kvmigrate import services as kvmigrate  # noqa: E402
from notifications import services as notifications  # noqa: E402

DOMAIN = "e2e.fivedocks.test"


def _user(name: str, *, staff: bool = False) -> dict:
    password = secrets.token_urlsafe(16)
    user = User.objects.create_user(
        email=f"{name}@{DOMAIN}", password=password, username=name, is_staff=staff, is_superuser=staff
    )
    token = issue_api_token(user=user)
    return {"id": user.pk, "email": user.email, "password": password, "token": token, "obj": user}


def seed() -> dict:
    staff = _user("staff", staff=True)
    member = _user("member")
    customer = _user("customer")
    # Its API key is rotated and revoked by the token endpoint's fuzzing: nobody else uses it.
    keyholder = _user("keyholder")

    credits.grant(user=member["obj"], amount=5000, kind="purchase", reason="e2e: starting credits")
    credits.deduct(user=member["obj"], operation="company_search", idempotency_key="e2e-seed-1")
    notifications.mark_shown(user=member["obj"], notification_id=1)
    notifications.award_badge(user=member["obj"], badge_id=0)

    credits.grant(user=customer["obj"], amount=1200, kind="purchase", reason="e2e: first purchase")
    credits.deduct(user=customer["obj"], operation="email_search", idempotency_key="e2e-seed-2")
    credits.grant(user=customer["obj"], amount=300, kind="bonus", reason="e2e: welcome bonus")

    subscription = _subscribe(customer["obj"], plan="ugly-duckling")
    gmail_tokens = _connect_gmail(customer["obj"], address="customer.inbox@example.com")
    _connect_gmail(member["obj"], address="member.inbox@example.com")

    legacy = _user("legacy")
    broken = _user("broken")
    migration = _migrate_from_kv(legacy["obj"], broken["obj"])

    made = {
        "migration": migration,
        "staff": staff,
        "member": member,
        "customer": customer,
        "keyholder": keyholder,
        "subscription": subscription,
        "gmail": gmail_tokens,
    }
    for entry in made.values():
        entry.pop("obj", None)
    return made


def _webhook(event_type: str, obj: dict, created: int) -> None:
    """Deliver a signed Stripe event through the same service the webhook endpoint calls."""
    payload, header = signed_payload(make_event(event_type, obj, created=created))
    recorded = billing.record_event(payload=payload, sig_header=header)
    assert recorded.event.status == "processed", (recorded.event.status, recorded.event.error)


def _subscribe(user: User, *, plan: str) -> dict:
    """An active subscription and its first paid invoice, as Stripe's webhooks would bring them."""
    now = int(time.time())
    customer_id, subscription_id = f"cus_e2e{user.pk}", f"sub_e2e{user.pk}"
    price = settings.BILLING_PLANS[plan]["stripe_price"]
    subscription = {
        "id": subscription_id,
        "object": "subscription",
        "customer": customer_id,
        "status": "active",
        "cancel_at_period_end": False,
        "metadata": {"user_id": str(user.pk), "plan": plan},
        "items": {
            "data": [
                {
                    "price": {"id": price},
                    "current_period_start": now - 86400,
                    "current_period_end": now + 29 * 86400,
                }
            ]
        },
    }
    _webhook("customer.subscription.created", subscription, now - 60)
    invoice = {
        "id": f"in_e2e{user.pk}",
        "object": "invoice",
        "customer": customer_id,
        "subscription": subscription_id,
        "billing_reason": "subscription_create",
        "total": 900,
        "amount_paid": 900,
        "currency": "usd",
        "lines": {"data": [{"price": {"id": price}, "amount": 900, "proration": False}]},
    }
    _webhook("invoice.paid", invoice, now - 30)
    return {"customer_id": customer_id, "subscription_id": subscription_id, "plan": plan}


def _connect_gmail(user: User, *, address: str) -> dict:
    """A Gmail connection with fresh secret tokens (stored encrypted by the service)."""
    access, refresh = f"ya29.e2e-{secrets.token_urlsafe(24)}", f"1//e2e-{secrets.token_urlsafe(32)}"
    gmail.store_tokens(
        user=user,
        access_token=access,
        refresh_token=refresh,
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
        scopes=settings.GMAIL_SCOPES,
        email=address,
        display_name=user.username.title(),
    )
    return {"email": address, "access_token": access, "refresh_token": refresh}


def _migrate_from_kv(legacy: User, broken: User) -> dict:
    """A kvmigrate run over a small KV export: one good record, one that must be quarantined."""
    broken_key = f"user_credits:{broken.pk}"
    broken_raw = '{"currentBalance": 180, "totalUsed": '  # cut short: not JSON
    # A token record that cannot be moved (its expiry is no time): quarantined, and its tokens
    # are secrets wherever they are kept.
    token_key = f"user_tokens:{broken.pk}"
    access, refresh = f"ya29.kv-{secrets.token_urlsafe(24)}", f"1//kv-{secrets.token_urlsafe(32)}"
    token_value = {"gmailAccessToken": access, "gmailRefreshToken": refresh, "tokenExpiry": "next tuesday"}
    records = [
        {"key": token_key, "value": token_value},
        {
            "key": f"user_credits:{legacy.pk}",
            "value": {"currentBalance": 180, "totalUsed": 70, "notifications": [None, 1]},
        },
        {"key": broken_key, "value": broken_raw},
    ]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "kv-export.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        result = kvmigrate.execute(kvmigrate.Options(source=str(path)))
    assert result.exit_code == kvmigrate.EXIT_ATTENTION, result.report
    return {
        "run_id": result.run.pk,
        "status": result.run.status,
        "quarantined_key": broken_key,
        "quarantined_raw": broken_raw,
        "migrated_key": f"user_credits:{legacy.pk}",
        "quarantined_token_key": token_key,
        "quarantined_tokens": [access, refresh],
    }


if __name__ == "__main__":
    print(json.dumps(seed()))
