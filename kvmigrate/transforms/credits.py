"""Credit accounts and their history, from `user_credits:` (real layout) and `credits:` (plan)."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from datetime import timedelta
from typing import Any

from .base import (
    BIGINT_MAX,
    EPOCH,
    INT_MAX,
    MS_MAX,
    SECONDS_BELOW,
    AccountRow,
    LedgerRow,
    Reject,
    Verbatim,
    parse_bool,
    parse_int,
    parse_str,
    parse_ts,
    to_ms,
    wrong_type,
)

# The real layout's account fields (subscription and flag fields are other domains' parts).
REAL_ACCOUNT_FIELDS = (
    "currentBalance", "lastTopUp", "totalUsed", "isBlocked", "monthlyAllowance", "createdAt",
    "updatedAt", "transactions",
)  # fmt: skip
PLAN_ACCOUNT_FIELDS = (
    "currentBalance", "totalPurchased", "totalUsed", "lastUpdated", "transactions",
    # not in the plan's list, but meaningful when another tool wrote them
    "isBlocked", "monthlyAllowance", "lastTopUp", "createdAt",
)  # fmt: skip
ENTRY_FIELDS = ("type", "amount", "description", "timestamp", "searchType", "success")
# The shapes the platform wrote: nothing about their names to keep.
_CANONICAL_ENTRIES = frozenset({ENTRY_FIELDS[:4], ENTRY_FIELDS, (*ENTRY_FIELDS[:4], "searchType")})

# A legacy `credit` entry becomes the ledger type its description says it was.
_ALLOWANCE = re.compile(r"top[\s-]?up|allowance|monthly", re.IGNORECASE)
_PURCHASE = re.compile(r"subscription|purchas|bought|payment|paid|stripe|checkout|\bplan\b", re.IGNORECASE)
PLAN_TYPES = {
    # plan type -> (ledger type, sign): None keeps the amount's own sign
    "purchase": ("purchase", 1),
    "bonus": ("bonus", 1),
    "refund": ("refund", 1),
    "allowance": ("allowance", 1),
    "deduction": ("deduction", -1),
    "adjustment": ("adjustment", None),
    "credit": (None, 1),  # the real layout's words, met in plan-layout stores too
    "debit": ("deduction", -1),
}


@functools.lru_cache(maxsize=4096)
def credit_kind(description: str) -> str:
    """bonus, allowance or purchase, by what a legacy `credit` entry was.

    A paid plan's credits are purchases (as billing books Stripe's paid invoices), even when the
    platform called them a monthly top-up; the free tier's monthly credits are allowances; the
    rest (welcome bonus, easter eggs, goodwill) are bonuses.
    """
    if _PURCHASE.search(description):
        return "purchase"
    if _ALLOWANCE.search(description):
        return "allowance"
    return "bonus"


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_digest(entry: dict, occurrence: int) -> str:
    """Identifies a history entry across runs: its content, and which identical copy it is."""
    canonical = _CANONICAL.encode(entry)
    data = f"{canonical}#{occurrence}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=10).hexdigest()


def idempotency_key(digest: str) -> str:
    return f"kv:{digest}"


def _optional_ts(record: dict, name: str, verbatim: Verbatim):
    value = record.get(name)
    if value is None:
        return None
    if type(value) is int and SECONDS_BELOW <= value < MS_MAX:  # Date.now(): nothing to keep
        return EPOCH + timedelta(milliseconds=value)
    moment = parse_ts(record[name], name)
    verbatim.keep(name, record[name], to_ms(moment))
    return moment


def _history(key: str, layout: str, entries: Any, fallback_ts) -> tuple[list[LedgerRow], list[str]]:
    if entries is None:
        return [], []
    if not isinstance(entries, list):
        raise wrong_type("transactions", entries, "an array")
    rows: list[LedgerRow] = []
    digests: list[str] = []
    occurrences: dict[str, int] = {}
    for index, entry in enumerate(entries):
        path = f"transactions[{index}]"
        if not isinstance(entry, dict):
            raise wrong_type(path, entry, "an object")
        row = _entry(key, layout, index, entry, fallback_ts)
        base = entry_digest(entry, 0)
        occurrences[base] = occurrences.get(base, 0) + 1
        digest = base if occurrences[base] == 1 else entry_digest(entry, occurrences[base] - 1)
        row.idempotency_key = idempotency_key(digest)
        rows.append(row)
        digests.append(digest)
    return rows, digests


def _entry(key: str, layout: str, index: int, entry: dict, fallback_ts) -> LedgerRow:
    path = f"transactions[{index}]"
    if "type" not in entry:
        raise Reject("missing:transactions[].type", f"{path}.type is required")
    if "amount" not in entry:
        raise Reject("missing:transactions[].amount", f"{path}.amount is required")
    legacy_type = entry["type"]
    if not isinstance(legacy_type, str):
        raise wrong_type(f"{path}.type", legacy_type, "a string")
    raw_amount = parse_int(entry["amount"], f"{path}.amount")
    description = entry.get("description")
    description = "" if description is None else parse_str(description, f"{path}.description")
    if layout == "real":
        if legacy_type == "credit":
            kind, amount = credit_kind(description), abs(raw_amount)
        elif legacy_type == "debit":
            kind, amount = "deduction", -abs(raw_amount)
        else:
            detail = f"{path}.type is {legacy_type!r}: credit or debit expected"
            raise Reject("bad_value:transactions[].type", detail)
        canonical_amount = abs(raw_amount)
    else:
        if legacy_type not in PLAN_TYPES:
            known = ", ".join(PLAN_TYPES)
            raise Reject("bad_value:transactions[].type", f"{path}.type is {legacy_type!r}; known: {known}")
        kind, sign = PLAN_TYPES[legacy_type]
        if kind is None:
            kind = credit_kind(description)
        amount = raw_amount if sign is None else sign * abs(raw_amount)
        canonical_amount = raw_amount if sign is None else abs(raw_amount)
    verbatim = Verbatim()
    verbatim.keep("amount", entry["amount"], canonical_amount)
    stamp = entry.get("timestamp")
    if type(stamp) is int and SECONDS_BELOW <= stamp < MS_MAX:  # Date.now(): nothing to keep
        created_at = EPOCH + timedelta(milliseconds=stamp)
    elif stamp is not None:
        created_at = parse_ts(stamp, f"{path}.timestamp")
        verbatim.keep("timestamp", stamp, to_ms(created_at))
    else:
        created_at = fallback_ts
        if "timestamp" in entry:
            verbatim["timestamp"] = None
    if "description" in entry and entry["description"] is None:
        verbatim["description"] = None
    metadata: dict[str, Any] = {"source": "kv", "key": key, "kv_index": index, "legacy_type": legacy_type}
    for name in ("searchType", "success"):
        if name in entry:
            metadata[name] = entry[name]
    if verbatim:
        metadata["verbatim"] = dict(verbatim)
    names = tuple(entry)
    if names not in _CANONICAL_ENTRIES:
        extra = {name: value for name, value in entry.items() if name not in ENTRY_FIELDS}
        if extra:
            metadata["extra"] = extra
        # Reverse writes type, amount, description and timestamp, then what the metadata holds;
        # `fields` is kept only when the entry's names differ from that.
        canonical_order = (*ENTRY_FIELDS[:4], *(n for n in ENTRY_FIELDS[4:] if n in entry), *extra)
        if names != canonical_order:
            metadata["fields"] = list(names)
    return LedgerRow(
        amount=amount,
        type=kind,
        reason=description,
        created_at=created_at,
        idempotency_key="",
        metadata=metadata,
    )


def account_from_record(key: str, layout: str, user_id: int, record: dict) -> tuple[AccountRow, dict]:
    """The account and its history; returns the `kv` metadata parts the caller completes."""
    verbatim = Verbatim()
    if "currentBalance" not in record:
        raise Reject("missing:currentBalance", "currentBalance is required")
    balance = parse_int(record["currentBalance"], "currentBalance")
    verbatim.keep("currentBalance", record["currentBalance"], balance)
    total_used = 0
    if record.get("totalUsed") is not None:
        total_used = parse_int(record["totalUsed"], "totalUsed", lo=0)
        verbatim.keep("totalUsed", record["totalUsed"], total_used)
    total_purchased = None
    if layout == "plan" and record.get("totalPurchased") is not None:
        total_purchased = parse_int(record["totalPurchased"], "totalPurchased", lo=0)
        verbatim.keep("totalPurchased", record["totalPurchased"], total_purchased)
    is_blocked = False
    if record.get("isBlocked") is not None:
        is_blocked = parse_bool(record["isBlocked"], "isBlocked")
        verbatim.keep("isBlocked", record["isBlocked"], is_blocked)
    if balance < 0 and not is_blocked:
        raise Reject(
            "negative_balance_not_blocked",
            f"currentBalance is {balance} but the account is not blocked (isBlocked must be true)",
        )
    monthly_allowance = None
    if record.get("monthlyAllowance") is not None:
        monthly_allowance = parse_int(record["monthlyAllowance"], "monthlyAllowance", lo=-INT_MAX, hi=INT_MAX)
        verbatim.keep("monthlyAllowance", record["monthlyAllowance"], monthly_allowance)
    last_top_up = _optional_ts(record, "lastTopUp", verbatim)
    created_at = _optional_ts(record, "createdAt", verbatim)
    updated_name = "updatedAt" if layout == "real" else "lastUpdated"
    last_updated = _optional_ts(record, updated_name, verbatim)
    fallback_ts = created_at or last_updated or last_top_up or EPOCH
    history, digests = _history(key, layout, record.get("transactions"), fallback_ts)
    if abs(sum(row.amount for row in history)) > BIGINT_MAX:
        raise Reject("out_of_range:transactions", "the history's amounts do not fit a 64-bit sum")
    account = AccountRow(
        user_id=user_id,
        balance=balance,
        total_used=total_used,
        total_purchased=total_purchased,
        is_blocked=is_blocked,
        monthly_allowance=monthly_allowance,
        last_top_up=last_top_up,
        created_at=created_at,
        last_updated=last_updated,
        metadata={},
        history=history,
    )
    parts: dict[str, Any] = {"tx": digests}
    if verbatim:
        parts["verbatim"] = dict(verbatim)
    return account, parts
