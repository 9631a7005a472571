"""The service API on a real gunicorn with two workers, called as the platform's backend calls it."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.liveserver import LiveServer, manage

pytestmark = pytest.mark.live

_NEW_USER = """
import json, secrets
from accounts.models import User
from credits import services
user = User.objects.create_user(f"svc-live-{secrets.token_hex(4)}@example.com")
services.grant(user=user, amount=100, reason="live test")
print(json.dumps({"id": user.pk}))
"""

_LEDGER = """
import json
from credits.selectors import balance_from_database
from credits.models import CreditTransaction
s = balance_from_database(user_id=%d)
rows = CreditTransaction.objects.filter(user_id=%d, type="deduction").count()
print(json.dumps({"balance": s.balance, "held": s.held, "deductions": rows}))
"""


def _shell(server: LiveServer, code: str) -> dict:
    return json.loads(manage(server.env, "shell", "-c", code).strip().splitlines()[-1])


def test_holds_over_http_on_several_workers_never_overspend(outside_server: LiveServer):
    token = manage(
        outside_server.env, "service_client", "create", "live-backend", "--scopes", "credits:charge"
    ).strip()
    user_id = _shell(outside_server, _NEW_USER)["id"]
    url = f"{outside_server.url}/api/service/credits/holds/"
    headers = {"Authorization": f"Bearer {token}"}

    def hold(i: int) -> requests.Response:
        body = {"user_id": user_id, "amount": 10, "idempotency_key": f"live-{i}"}
        return requests.post(url, json=body, headers=headers, timeout=30)

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(hold, range(32)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses.count(201) == 10 and statuses.count(402) == 22, statuses
    held = [r.json()["hold_id"] for r in answers if r.status_code == 201]

    def settle(i: int) -> int:
        hold_id = held[i % len(held)]
        action = "capture" if hold_id % 2 else "release"
        return requests.post(f"{url}{hold_id}/{action}/", json={}, headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert set(pool.map(settle, range(30))) == {200}  # each settled 3 times: idempotent
    captured = sum(1 for hold_id in held if hold_id % 2)
    state = _shell(outside_server, _LEDGER % (user_id, user_id))
    assert state == {"balance": 100 - 10 * captured, "held": 0, "deductions": captured}
    assert "OK" in manage(outside_server.env, "credits_reconcile")

    user_token = requests.post(url, json={}, headers={"Authorization": "Token nope"}, timeout=10)
    assert user_token.status_code == 401
