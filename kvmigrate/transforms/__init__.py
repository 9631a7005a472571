"""Pure transforms: one decoded KV record -> the rows it becomes, or a `Reject` with a reason.

`transform(key, prefix, ident, user_id, value)` dispatches on the key's family (its prefix).
The caller parses the key (`codec.parse_key`) and decodes the value (`codec.decode_value`).
"""

from __future__ import annotations

from typing import Any

from .base import (
    AccountRow,
    FirebaseRow,
    FlagRow,
    LedgerRow,
    Reject,
    SubscriptionRow,
    TokenRow,
    Transformed,
    find_bad_text,
    parse_int,
    values_hidden,
)
from .billing import REAL_FIELDS as REAL_SUBSCRIPTION_FIELDS
from .billing import subscription_from_record
from .credits import PLAN_ACCOUNT_FIELDS, REAL_ACCOUNT_FIELDS, account_from_record
from .gmail import token_from_record
from .notifications import ARRAY_FIELDS, flags_from_arrays, flags_from_plan

__all__ = [
    "FAMILIES",
    "AccountRow",
    "FirebaseRow",
    "FlagRow",
    "LedgerRow",
    "Reject",
    "SubscriptionRow",
    "TokenRow",
    "Transformed",
    "transform",
]

# family -> the domains its records can have rows in (the first is the one it is counted under
# when it is quarantined or skipped as a whole).
FAMILIES: dict[str, tuple[str, ...]] = {
    "user_credits": ("credits", "billing", "notifications"),
    "user_tokens": ("gmail",),
    "firebase_uid": ("accounts",),
    "credits": ("credits",),
    "subscription": ("billing",),
    "gmail": ("gmail",),
    "notifications": ("notifications",),
}
LAYOUTS = {"user_credits": "real", "user_tokens": "real", "firebase_uid": "real"}
REAL_KNOWN = frozenset(REAL_ACCOUNT_FIELDS) | frozenset(REAL_SUBSCRIPTION_FIELDS) | frozenset(ARRAY_FIELDS)
FIREBASE_UID_MAX = 128


def transform(
    key: str, prefix: str, ident: str, user_id: int | None, value: Any, *, check_text: bool = True
) -> Transformed:
    """The rows of one record. `user_id` is the key's id parsed strictly (None if it is not one).

    `check_text=False` skips the walk for characters PostgreSQL cannot store, when a cheap look
    at the raw value (`base.may_hold_bad_text`) already ruled them out.
    """
    if check_text:
        bad = find_bad_text(value)
        if bad:
            detail = f"{bad} holds a NUL character or a lone surrogate, which PostgreSQL cannot store"
            raise Reject("bad_text", detail)
    if prefix == "firebase_uid":
        return _firebase(key, ident, value)
    if user_id is None:
        raise Reject("bad_id", f"{ident!r} after {prefix}: is not a user id (a positive integer)")
    layout = LAYOUTS.get(prefix, "plan")
    if prefix == "notifications":
        rows, extra = flags_from_plan(value)
        return Transformed(
            key=key, family=prefix, layout=layout, user_id=user_id, flags=rows, flags_extra=extra or None
        )
    if not isinstance(value, dict):
        raise Reject("not_an_object", f"the value must be a JSON object, got {type(value).__name__}")
    if prefix == "user_credits":
        return _user_credits(key, user_id, value)
    if prefix == "credits":
        account, parts = account_from_record(key, "plan", user_id, value)
        extra = {name: item for name, item in value.items() if name not in PLAN_ACCOUNT_FIELDS}
        account.metadata = {"kv": _kv(key, "plan", value, extra, parts)}
        return Transformed(key=key, family=prefix, layout=layout, user_id=user_id, account=account)
    if prefix == "subscription":
        subscription = subscription_from_record(key, "plan", user_id, value)
        if subscription is None:
            raise Reject("missing:status", "none of the subscription fields is present")
        return Transformed(key=key, family=prefix, layout=layout, user_id=user_id, subscription=subscription)
    if prefix in ("user_tokens", "gmail"):
        with values_hidden():
            token = token_from_record(key, layout, user_id, value)
        return Transformed(key=key, family=prefix, layout=layout, user_id=user_id, token=token)
    raise ValueError(f"not a known family: {prefix}")  # the caller only passes known prefixes


def _kv(key: str, layout: str, record: dict, extra: dict, parts: dict) -> dict:
    kv: dict[str, Any] = {"key": key, "layout": layout, "fields": list(record)}
    if extra:
        kv["extra"] = extra
    kv.update(parts)
    return kv


def _user_credits(key: str, user_id: int, record: dict) -> Transformed:
    account, parts = account_from_record(key, "real", user_id, record)
    subscription = subscription_from_record(key, "real", user_id, record)
    flags, originals = flags_from_arrays(record)
    extra = {name: item for name, item in record.items() if name not in REAL_KNOWN}
    if originals:
        parts["flags"] = originals
    account.metadata = {"kv": _kv(key, "real", record, extra, parts)}
    flags_at = account.last_updated or account.created_at
    return Transformed(
        key=key,
        family="user_credits",
        layout="real",
        user_id=user_id,
        account=account,
        subscription=subscription,
        flags=flags,
        flags_at=flags_at,
    )


def _firebase(key: str, uid: str, value: Any) -> Transformed:
    if not uid.strip() or len(uid) > FIREBASE_UID_MAX or uid != uid.strip():
        raise Reject("bad_id", f"{uid!r} after firebase_uid: is not a Firebase uid (1 to 128 characters)")
    if find_bad_text(uid):
        raise Reject("bad_id", "the Firebase uid holds a NUL character or a lone surrogate")
    user_id = parse_int(value, "value", lo=1)
    return Transformed(
        key=key, family="firebase_uid", layout="real", user_id=user_id, firebase=FirebaseRow(uid, user_id)
    )
