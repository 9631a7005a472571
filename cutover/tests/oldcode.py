"""The platform's old code (REV), as it reads and writes `user_credits:{id}` (../shared/platform-api.md).

A faithful port of the parts a rollback exercises: `getUserCredits` (no lazy creation when the
record exists), `checkAndApplyMonthlyTopUp`, `deductCredits`, `claimEasterEgg`, and the fields
`GET /api/credits` answers with. Server-local time is UTC here. Used by the rollback tests to play
the old code against what the mirror wrote, and to check each record against its reading rules.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from kvmigrate.codec import decode_value, encode_value

CREDIT_COSTS = {
    "company_search": 10, "contact_discovery": 60, "email_search": 160, "full_search": 250,
    "company_and_contacts": 70, "company_contacts_emails": 240, "individual_email": 20,
}  # fmt: skip
PLAN_CREDIT_ALLOWANCES = {"ugly-duckling": 5000, "duckin-awesome": 15000}
EASTER_EGGS = {0: (1000, "Company mascot discovery", "🦆"), 1: (3000, "Solidarity bonus", "🇵🇸")}
MS_MIN = 10**11  # below: seconds, not Date.now()


def now_ms() -> int:
    return int(time.time() * 1000)


def _month(ms: int) -> tuple[int, int]:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.year, moment.month


def read(store, user_id: int) -> dict:
    return decode_value(store.get(f"user_credits:{user_id}"))


def write(store, user_id: int, record: dict) -> None:
    store.set_many([(f"user_credits:{user_id}", encode_value(record))])


def reading_problems(record: dict) -> list[str]:
    """What in a record the old code would misread: missing fields, wrong types, odd values."""
    problems = []

    def is_int(value) -> bool:
        return type(value) is int

    for name in ("currentBalance", "totalUsed", "monthlyAllowance"):
        if not is_int(record.get(name)):
            problems.append(f"{name} is {record.get(name)!r}, not an integer")
    for name in ("lastTopUp", "createdAt", "updatedAt"):
        value = record.get(name)
        if not (is_int(value) and value >= MS_MIN):
            problems.append(f"{name} is {value!r}, not integer epoch ms")
    if type(record.get("isBlocked")) is not bool:
        problems.append(f"isBlocked is {record.get('isBlocked')!r}, not a boolean")
    if not isinstance(record.get("transactions"), list):
        problems.append("transactions is not an array (the old code spreads it)")
    for index, entry in enumerate(record.get("transactions") or []):
        where = f"transactions[{index}]"
        if entry.get("type") not in ("credit", "debit"):
            problems.append(f"{where}.type is {entry.get('type')!r}")
        if not (is_int(entry.get("amount")) and entry["amount"] > 0):
            problems.append(f"{where}.amount is {entry.get('amount')!r}, not a positive integer")
        if not isinstance(entry.get("description"), str) or not entry["description"]:
            problems.append(f"{where}.description is {entry.get('description')!r}")
        if not (is_int(entry.get("timestamp")) and entry["timestamp"] >= MS_MIN):
            problems.append(f"{where}.timestamp is {entry.get('timestamp')!r}, not integer epoch ms")
        if entry.get("type") == "debit" and "searchType" in entry:
            if entry.get("success") is not True:
                problems.append(f"{where}: a search debit without success: true")
            if entry["description"] != f"{entry['searchType'].replace('_', ' ')} search":
                problems.append(f"{where}.description {entry['description']!r} is not the platform's wording")
    for name in ("notifications", "badges", "easterEggs"):
        if name in record and not all(v in (None, 0, 1) for v in record[name]):
            problems.append(f"{name} holds values other than null/1")
    return problems


def would_top_up(record: dict, at_ms: int) -> bool:
    """checkAndApplyMonthlyTopUp's test: a different month (or an unreadable lastTopUp)."""
    last = record.get("lastTopUp")
    if not isinstance(last, (int, float)):
        return True  # new Date(undefined).getMonth() is NaN: always "a new month"
    return _month(int(last)) != _month(at_ms)


def _top_up(record: dict, at_ms: int) -> None:
    if not would_top_up(record, at_ms):
        return
    plan = record.get("currentPlan") if record.get("subscriptionStatus") == "active" else None
    amount = PLAN_CREDIT_ALLOWANCES[plan] if plan else 250
    moment = datetime.fromtimestamp(at_ms / 1000, tz=UTC)
    record["currentBalance"] += amount
    record["lastTopUp"] = at_ms
    record["isBlocked"] = False
    record["transactions"] = [
        *record["transactions"],
        {"type": "credit", "amount": amount, "timestamp": at_ms,
         "description": f"Monthly top-up for {moment:%B %Y} ({plan or 'free tier'})"},
    ]  # fmt: skip
    record["updatedAt"] = at_ms


def deduct(store, user_id: int, search_type: str) -> dict:
    """deductCredits(userId, searchType): top-up check, then the debit appended."""
    at = now_ms()
    record = read(store, user_id)
    _top_up(record, at)
    amount = CREDIT_COSTS[search_type]
    record["currentBalance"] -= amount
    record["totalUsed"] += amount
    record["isBlocked"] = record["currentBalance"] < 0
    record["transactions"] = [
        *record["transactions"],
        {"type": "debit", "amount": amount, "description": f"{search_type.replace('_', ' ')} search",
         "timestamp": at, "searchType": search_type, "success": True},
    ]  # fmt: skip
    record["updatedAt"] = at
    write(store, user_id, record)
    return record


def claim_easter_egg(store, user_id: int, egg_id: int) -> dict:
    """claimEasterEgg: the credit prepended, the flag set, no top-up check."""
    at = now_ms()
    record = read(store, user_id)
    eggs = list(record.get("easterEggs") or [])
    if egg_id < len(eggs) and eggs[egg_id] == 1:
        raise AssertionError("Easter egg already claimed!")
    reward, description, emoji = EASTER_EGGS[egg_id]
    eggs.extend([None] * (egg_id + 1 - len(eggs)))
    eggs[egg_id] = 1
    record["currentBalance"] += reward
    if record["currentBalance"] >= 0:
        record["isBlocked"] = False
    record["transactions"] = [
        {"type": "credit", "amount": reward, "description": f"{emoji} {description}", "timestamp": at},
        *record["transactions"],
    ]
    record["easterEggs"] = eggs
    record["updatedAt"] = at
    write(store, user_id, record)
    return record
