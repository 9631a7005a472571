"""Rows -> the platform's real-layout records (pure): the inverse of `transforms`.

A record that came from the real layout is given back value for value: its fields in their
order, unknown fields, original flag arrays and values written in a non-canonical form (kept in
`metadata["kv"]`), as long as the column still holds what they parse to. Rows with no KV past
(app-created, or from the plan layout) are written in the platform's canonical shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from .transforms.base import (
    AccountRow,
    FlagRow,
    LedgerRow,
    Reject,
    SubscriptionRow,
    TokenRow,
    parse_bool,
    parse_int,
    parse_ts,
    to_ms,
)
from .transforms.billing import REAL_FIELDS as SUBSCRIPTION_FIELDS
from .transforms.billing import parse_status
from .transforms.credits import ENTRY_FIELDS
from .transforms.gmail import REAL_FIELDS as TOKEN_FIELDS
from .transforms.notifications import ARRAYS

ACCOUNT_ORDER = (
    "currentBalance", "lastTopUp", "totalUsed", "isBlocked", "transactions", "monthlyAllowance",
    "createdAt", "updatedAt",
)  # fmt: skip
_MISSING = object()


def _ms(moment: datetime | None) -> int | float | None:
    return None if moment is None else to_ms(moment)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _pick(verbatim: dict, name: str, column: Any, parse: Callable[[Any, str], Any], canonical: Any) -> Any:
    """The original value while the column still holds what it parses to, else `canonical`."""
    if name not in verbatim:
        return canonical
    original = verbatim[name]
    try:
        parsed = None if original is None else parse(original, name)
    except Reject:
        return canonical
    return original if parsed == column else canonical


# --- user_credits ---------------------------------------------------------------------------


def render_entry(row: LedgerRow) -> dict | None:
    """A ledger row as a legacy history entry; None for `migration` rows (not history)."""
    if row.type == "migration":
        return None
    meta = row.metadata or {}
    if meta.get("source") == "kv" and meta.get("legacy_type") in ("credit", "debit"):
        verbatim = meta.get("verbatim", {})
        extra = meta.get("extra", {})
        names = meta.get("fields") or [
            *ENTRY_FIELDS[:4], *(n for n in ENTRY_FIELDS[4:] if n in meta), *extra,
        ]  # fmt: skip
        entry: dict[str, Any] = {}
        for name in names:
            if name == "type":
                entry[name] = meta["legacy_type"]
            elif name == "amount":
                entry[name] = verbatim.get("amount", abs(row.amount))
            elif name == "description":
                entry[name] = verbatim.get("description", row.reason)
            elif name == "timestamp":
                entry[name] = verbatim.get("timestamp", to_ms(row.created_at))
            elif name in ("searchType", "success"):
                entry[name] = meta.get(name)
            else:
                entry[name] = extra.get(name)
        return entry
    entry = {
        "type": "credit" if row.amount >= 0 else "debit",
        "amount": abs(row.amount),
        "description": row.reason,
        "timestamp": to_ms(row.created_at),
    }
    if row.type == "deduction":
        operation = meta.get("operation") or meta.get("searchType")
        if operation:
            entry["searchType"] = operation
            entry["success"] = True
    return entry


def render_history(ledger: Iterable[LedgerRow], tx_order: list[str] | None) -> list[dict]:
    """The legacy history: migrated entries in their KV order, then later rows by time.

    `ledger` is every row of the user in (created_at, id) order. Migrated entries of the latest
    KV version (`tx_order`, digests) come first in that order; entries an earlier KV version had
    and the latest did not are left out (the store had dropped them); rows the app wrote later
    follow in created_at order.
    """
    order = {digest: index for index, digest in enumerate(tx_order or [])}
    migrated: list[tuple[int, dict]] = []
    later: list[dict] = []
    for row in ledger:
        meta = row.metadata or {}
        from_kv = meta.get("source") == "kv"
        if from_kv and tx_order is not None:
            digest = (row.idempotency_key or "").removeprefix("kv:")
            if digest not in order:
                continue
            entry = render_entry(row)
            if entry is not None:
                migrated.append((order[digest], entry))
            continue
        entry = render_entry(row)
        if entry is not None:
            later.append(entry)
    migrated.sort(key=lambda pair: pair[0])
    return [entry for _, entry in migrated] + later


def render_flags(flags: Iterable[FlagRow], originals: dict) -> dict[str, Any]:
    """Arrays per kind: the originals with today's flags set (1) and withdrawn ones cleared."""
    by_kind: dict[str, set[int]] = {}
    for flag in flags:
        by_kind.setdefault(flag.kind, set()).add(flag.notification_id)
    out: dict[str, Any] = {}
    for name, kind in ARRAYS:
        ids = by_kind.get(kind, set())
        original = originals.get(name, _MISSING)
        if original is _MISSING and not ids:
            continue
        if not isinstance(original, list):
            if not ids:
                out[name] = original  # null stays null
                continue
            original = []
        array = list(original)
        for index, value in enumerate(array):
            if index not in ids and (value == 1 or value is True):
                array[index] = None
        for index in sorted(ids):
            if index >= len(array):
                array.extend([None] * (index + 1 - len(array)))
            if not (array[index] == 1 or array[index] is True):
                array[index] = 1
        out[name] = array
    return out


def _parse_text(value: Any, name: str) -> str | None:
    return _text(value)


def _subscription_values(sub: SubscriptionRow) -> dict[str, Any]:
    kv = (sub.metadata or {}).get("kv", {})
    verbatim = kv.get("verbatim", {}) if kv.get("layout") == "real" else {}
    customer, subscription_id, plan = (
        sub.stripe_customer_id,
        _text(sub.stripe_subscription_id),
        _text(sub.plan_type),
    )
    start, end = sub.current_period_start, sub.current_period_end
    status = None if sub.status == "none" else sub.status
    return {
        "stripeCustomerId": _pick(verbatim, "stripeCustomerId", customer, _parse_text, customer),
        "stripeSubscriptionId": _pick(
            verbatim, "stripeSubscriptionId", subscription_id, _parse_text, subscription_id
        ),
        "subscriptionStatus": _pick(verbatim, "subscriptionStatus", sub.status, parse_status, status),
        "currentPlan": _pick(verbatim, "currentPlan", plan, _parse_text, plan),
        "subscriptionStartDate": _pick(verbatim, "subscriptionStartDate", start, parse_ts, _ms(start)),
        "subscriptionEndDate": _pick(verbatim, "subscriptionEndDate", end, parse_ts, _ms(end)),
    }


def render_user_credits(
    *,
    account: AccountRow | None,
    ledger: Iterable[LedgerRow] = (),
    subscription: SubscriptionRow | None = None,
    flags: Iterable[FlagRow] = (),
) -> dict:
    """The `user_credits:{id}` record for a user's rows."""
    kv = (account.metadata or {}).get("kv", {}) if account is not None else {}
    real = kv.get("layout") == "real"
    verbatim = kv.get("verbatim", {}) if real else {}
    values: dict[str, Any] = {}
    if account is not None:
        values.update(
            currentBalance=_pick(verbatim, "currentBalance", account.balance, parse_int, account.balance),
            lastTopUp=_pick(verbatim, "lastTopUp", account.last_top_up, parse_ts, _ms(account.last_top_up)),
            totalUsed=_pick(verbatim, "totalUsed", account.total_used, parse_int, account.total_used),
            isBlocked=_pick(verbatim, "isBlocked", account.is_blocked, parse_bool, account.is_blocked),
            monthlyAllowance=_pick(
                verbatim, "monthlyAllowance", account.monthly_allowance, parse_int, account.monthly_allowance
            ),
            createdAt=_pick(verbatim, "createdAt", account.created_at, parse_ts, _ms(account.created_at)),
            updatedAt=_pick(verbatim, "updatedAt", account.last_updated, parse_ts, _ms(account.last_updated)),
            transactions=render_history(ledger, kv.get("tx") if real else None),
        )
    else:  # a subscription or flags without an account: the platform's fresh-account shape
        values.update(currentBalance=0, totalUsed=0, isBlocked=False, transactions=[])
    flag_arrays = render_flags(flags, kv.get("flags", {}) if real else {})
    values.update(flag_arrays)
    sub_values = _subscription_values(subscription) if subscription is not None else {}
    values.update(sub_values)
    extra = kv.get("extra", {}) if real else {}

    record: dict[str, Any] = {}
    if real:  # the fields the record had, in its order
        for name in kv.get("fields", []):
            if name in values:
                record[name] = values[name]
            elif name in SUBSCRIPTION_FIELDS:
                record[name] = None  # no subscription row (any more); the field was there
            elif name in extra:
                record[name] = extra[name]
    else:  # the platform's own shape
        for name in ACCOUNT_ORDER:
            if values.get(name) is not None:
                record[name] = values[name]
    # then what has data now and had no field then
    for name in flag_arrays:
        record.setdefault(name, flag_arrays[name])
    for name in SUBSCRIPTION_FIELDS:
        if name not in record and sub_values.get(name) is not None:
            record[name] = sub_values[name]
    if subscription is not None and subscription.cancel_at_period_end and "cancelAtPeriodEnd" not in record:
        record["cancelAtPeriodEnd"] = True
    return record


# --- user_tokens -----------------------------------------------------------------------------


def render_user_tokens(token: TokenRow) -> dict:
    """The `user_tokens:{id}` record (holds secrets: never print it)."""
    kv = (token.metadata or {}).get("kv", {})
    real = kv.get("layout") == "real"
    verbatim = kv.get("verbatim", {}) if real else {}
    access, refresh = token.access_token, token.refresh_token
    email, name_ = _text(token.email), _text(token.display_name)
    values = {
        "gmailAccessToken": _pick(verbatim, "gmailAccessToken", access, _parse_text, access),
        "gmailRefreshToken": _pick(verbatim, "gmailRefreshToken", refresh, _parse_text, refresh),
        "tokenExpiry": _pick(verbatim, "tokenExpiry", token.expires_at, parse_ts, _ms(token.expires_at)),
        "scopes": list(token.scopes),
        "createdAt": _pick(verbatim, "createdAt", token.created_at, parse_ts, _ms(token.created_at)),
        "updatedAt": _pick(verbatim, "updatedAt", token.updated_at, parse_ts, _ms(token.updated_at)),
        "gmailEmail": _pick(verbatim, "gmailEmail", email, _parse_text, email),
        "gmailDisplayName": _pick(verbatim, "gmailDisplayName", name_, _parse_text, name_),
    }
    extra = kv.get("extra", {}) if real else {}
    record: dict[str, Any] = {}
    if real:
        for name in kv.get("fields", []):
            if name in values:
                record[name] = values[name]
            elif name in extra:
                record[name] = extra[name]
    # Canonical shape for tokens with no real-layout past; for those with one, only what is new
    # since (the access token fetched on first use, a new refresh token).
    for name in TOKEN_FIELDS if not real else ("gmailAccessToken", "gmailRefreshToken", "tokenExpiry"):
        if name not in record and values[name] is not None:
            record[name] = values[name]
    return record
