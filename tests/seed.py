"""Seed a live server's database through the services; prints what it made as one JSON line.

Run by tests/liveserver.py as `python -m tests.seed` with the server's environment, so the data
goes through the same code (and the same settings) the server uses. Only the last stdout line is
read: the JSON below.
"""

from __future__ import annotations

import json
import secrets

import django

django.setup()

from rest_framework.authtoken.models import Token  # noqa: E402

from accounts.models import User  # noqa: E402
from credits import services as credits  # noqa: E402
from notifications import services as notifications  # noqa: E402

DOMAIN = "e2e.fivedocks.test"


def _user(name: str, *, staff: bool = False) -> dict:
    password = secrets.token_urlsafe(16)
    user = User.objects.create_user(
        email=f"{name}@{DOMAIN}", password=password, username=name, is_staff=staff, is_superuser=staff
    )
    token = Token.objects.create(user=user)
    return {"id": user.pk, "email": user.email, "password": password, "token": token.key, "obj": user}


def seed() -> dict:
    staff = _user("staff", staff=True)
    member = _user("member")
    customer = _user("customer")

    credits.grant(user=member["obj"], amount=5000, kind="purchase", reason="e2e: starting credits")
    credits.deduct(user=member["obj"], operation="company_search", idempotency_key="e2e-seed-1")
    notifications.mark_shown(user=member["obj"], notification_id=1)
    notifications.award_badge(user=member["obj"], badge_id=0)

    credits.grant(user=customer["obj"], amount=1200, kind="purchase", reason="e2e: first purchase")
    credits.deduct(user=customer["obj"], operation="email_search", idempotency_key="e2e-seed-2")
    credits.grant(user=customer["obj"], amount=300, kind="bonus", reason="e2e: welcome bonus")

    made = {"staff": staff, "member": member, "customer": customer}
    for entry in made.values():
        entry.pop("obj")
    return made


if __name__ == "__main__":
    print(json.dumps(seed()))
