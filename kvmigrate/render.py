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

from django.utils import timezone

from . import legacy_text
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
from .transforms.credits import ENTRY_FIELDS, entry_digest
from .transforms.gmail import REAL_FIELDS as TOKEN_FIELDS
from .transforms.notifications import ARRAYS

ACCOUNT_ORDER = (
    "currentBalance", "lastTopUp", "totalUsed", "isBlocked", "transactions", "monthlyAllowance",
    "createdAt", "updatedAt",
)  # fmt: skip
_MISSING = object()


def _ms(moment: datetime | None) -> int | None:
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
        "description": describe(row),
        "timestamp": to_ms(row.created_at),
    }
    if row.type == "deduction":
        operation = meta.get("operation") or meta.get("searchType")
        if operation:
            entry["searchType"] = operation
            entry["success"] = True
    return entry


# Ledger rows whose credits are the month's allowance, as the platform's `lastTopUp` counts them.
_STRIPE_MONTHLY = "stripe"


def describe(row: LedgerRow) -> str:
    """A row the app wrote, in the platform's words (kvmigrate.legacy_text), else its reason."""
    meta = row.metadata or {}
    if row.type == "deduction" and (meta.get("operation") or meta.get("searchType")):
        return legacy_text.operation(meta.get("operation") or meta.get("searchType"))
    if row.type == "allowance":
        return legacy_text.top_up(row.created_at)
    if row.type == "purchase" and meta.get("source") == _STRIPE_MONTHLY and meta.get("plan"):
        return legacy_text.top_up(row.created_at, meta["plan"])
    if row.type == "bonus" and isinstance(meta.get("easter_egg_id"), int):
        text = legacy_text.easter_egg(meta["easter_egg_id"])
        if text:
            return text
    if row.idempotency_key == WELCOME_BONUS_KEY:
        return legacy_text.WELCOME_BONUS
    return row.reason


# The idempotency key of the platform's welcome bonus when fivedocks grants it (first sight).
WELCOME_BONUS_KEY = "welcome-bonus"


def _is_top_up(row: LedgerRow) -> bool:
    meta = row.metadata or {}
    return row.type == "allowance" or (row.type == "purchase" and meta.get("source") == _STRIPE_MONTHLY)


def render_history(ledger: Iterable[LedgerRow], tx_order: list[str] | None) -> list[dict]:
    """The legacy history (see `rendered_history`)."""
    return [entry for _, entry, _ in rendered_history(ledger, tx_order)]


def rendered_history(
    ledger: Iterable[LedgerRow], tx_order: list[str] | None
) -> list[tuple[LedgerRow, dict, str]]:
    """The legacy history as (row, entry, digest): entries of the latest KV version, then the rest.

    `ledger` is every row of the user in (created_at, id) order. Entries the latest KV version
    had (`tx_order`, digests) come first in that order: migrated rows by their key, rows the app
    wrote (and a mirror or reverse rendered into the store) by the digest of their rendering.
    Entries an earlier KV version had and the latest did not are left out (the store had dropped
    them); rows the store never held follow in created_at order. The digest is the one
    kvmigrate's transform computes for the entry (`transforms.credits.entry_digest`), so the
    entries fivedocks wrote are recognised when a delta run reads them back.
    """
    order = {digest: index for index, digest in enumerate(tx_order or [])}
    placed: list[tuple[int, LedgerRow, dict, str]] = []
    later: list[tuple[LedgerRow, dict, str]] = []
    seen: dict[str, int] = {}
    for row in ledger:
        entry = render_entry(row)
        if entry is None:
            continue
        meta = row.metadata or {}
        if meta.get("source") == "kv" and tx_order is not None:
            digest = (row.idempotency_key or "").removeprefix("kv:")
            if digest in order:
                placed.append((order[digest], row, entry, digest))
            continue
        base = entry_digest(entry, 0)
        seen[base] = seen.get(base, 0) + 1
        digest = base if seen[base] == 1 else entry_digest(entry, seen[base] - 1)
        if digest in order:
            placed.append((order[digest], row, entry, digest))
        else:
            later.append((row, entry, digest))
    placed.sort(key=lambda item: item[0])
    return [(row, entry, digest) for _, row, entry, digest in placed] + later


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
    changed_at: datetime | None = None,
    history_out: list | None = None,
) -> dict:
    """The `user_credits:{id}` record for a user's rows, as the platform's old code reads it.

    Every field the old code reads is there with its type (integer epoch ms; `lastTopUp` and
    `monthlyAllowance` always, with the platform's defaults where fivedocks has none), so it
    neither grants a free top-up nor trips on a missing field. `changed_at` (the mirror's latest
    change of the record) moves `updatedAt` when a flag or the subscription changed. The
    rendered history's (row, entry, digest) are appended to `history_out` when given.
    """
    kv = (account.metadata or {}).get("kv", {}) if account is not None else {}
    real = kv.get("layout") == "real"
    verbatim = kv.get("verbatim", {}) if real else {}
    values: dict[str, Any] = {}
    ledger = list(ledger)
    if account is not None:
        history = rendered_history(ledger, kv.get("tx") if real else None)
        if history_out is not None:
            history_out.extend(history)
        # As the loader dates an account the store gave no creation time (the earliest it knows).
        created = (
            account.created_at
            or min((row.created_at for row in ledger), default=None)
            or account.last_updated
            or changed_at
            or timezone.now()
        )
        # When the platform would say the month's credits came: its own lastTopUp, fivedocks's
        # last monthly allowance or paid plan's monthly credits, else the account's creation
        # (the platform's lazy creation sets lastTopUp to that moment).
        topped = max(
            [t for t in (account.last_top_up, created) if t is not None]
            + [row.created_at for row in ledger if _is_top_up(row)],
            default=None,
        )
        updated = max((t for t in (account.last_updated, changed_at, created) if t is not None), default=None)
        allowance = account.monthly_allowance
        allowance = legacy_text.DEFAULT_MONTHLY_ALLOWANCE if allowance is None else allowance
        values.update(
            currentBalance=_pick(verbatim, "currentBalance", account.balance, parse_int, account.balance),
            lastTopUp=_pick(verbatim, "lastTopUp", topped, parse_ts, _ms(topped)),
            totalUsed=_pick(verbatim, "totalUsed", account.total_used, parse_int, account.total_used),
            isBlocked=_pick(verbatim, "isBlocked", account.is_blocked, parse_bool, account.is_blocked),
            monthlyAllowance=_pick(verbatim, "monthlyAllowance", allowance, parse_int, allowance),
            createdAt=_pick(verbatim, "createdAt", created, parse_ts, _ms(created)),
            updatedAt=_pick(verbatim, "updatedAt", updated, parse_ts, _ms(updated)),
            transactions=[entry for _, entry, _ in history],
        )
    else:  # a subscription or flags without an account: the platform's fresh-account shape
        moment = _ms(changed_at or timezone.now())
        values.update(
            currentBalance=0, lastTopUp=moment, totalUsed=0, isBlocked=False, transactions=[],
            monthlyAllowance=legacy_text.DEFAULT_MONTHLY_ALLOWANCE, createdAt=moment, updatedAt=moment,
        )  # fmt: skip
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
    # the fields the old code reads, always (in the platform's own order for a new record)
    for name in ACCOUNT_ORDER:
        if name not in record and values.get(name) is not None:
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
