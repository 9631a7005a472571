"""What every transform shares: the rows it yields, the rejection, and tolerant value parsers.

Transforms are pure: plain values in, plain dataclasses out (no ORM, no database), so they are
cheap to test and `verify` can re-run them to know what PostgreSQL should hold.

Round trip. Whatever has no column (unknown fields, the order of fields, a value written in a
form the column does not keep, e.g. a timestamp in seconds or a number as a string) goes into
`metadata["kv"]` so `reverse` can give the record back value for value: `fields` (names in
their order), `extra` (unknown fields), `verbatim` (original values whose canonical rendering
from the column would differ; reverse uses them while the column still holds what they parse to).
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BIGINT_MAX = 2**63 - 1
INT_MAX = 2**31 - 1
# Below this an epoch timestamp is in seconds (Stripe's), above in milliseconds (Date.now()).
SECONDS_BELOW = 10**11
MS_MAX = 253402300800000  # 10000-01-01: beyond, a datetime cannot hold it
_INT_STRING = re.compile(r"\s*[-+]?[0-9]+\s*")
_NUMBER_STRING = re.compile(r"\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*")
_SURROGATE = re.compile("[\ud800-\udfff]")


class Reject(Exception):
    """A record that cannot be moved: `code` is stable (filterable), `detail` is for humans."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail or code


# --- rows -------------------------------------------------------------------------------------


@dataclass(slots=True)
class LedgerRow:
    amount: int  # signed
    type: str  # a credits.models.CreditTransaction.Type value
    reason: str
    created_at: datetime
    idempotency_key: str
    metadata: dict
    pk: int | None = None  # the ledger row's id, when read from PostgreSQL


@dataclass(slots=True)
class AccountRow:
    user_id: int
    balance: int
    total_used: int
    total_purchased: int | None  # None: the ledger's purchases (the real layout has no such field)
    is_blocked: bool
    monthly_allowance: int | None
    last_top_up: datetime | None
    created_at: datetime | None
    last_updated: datetime | None
    metadata: dict
    history: list[LedgerRow] = field(default_factory=list)
    # Set by the loader: the idempotency key and metadata of the row that balances the ledger.
    migration_key: str = ""
    migration_metadata: dict = field(default_factory=dict)


@dataclass(slots=True)
class SubscriptionRow:
    user_id: int
    stripe_customer_id: str | None
    stripe_subscription_id: str
    status: str
    plan_type: str
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    metadata: dict


@dataclass(slots=True, frozen=True)
class FlagRow:
    kind: str  # notification | badge | easter_egg
    notification_id: int


@dataclass(slots=True)
class TokenRow:
    user_id: int
    access_token: str | None
    refresh_token: str | None
    expires_at: datetime | None
    email: str
    display_name: str
    scopes: list[str]
    created_at: datetime | None
    updated_at: datetime | None
    metadata: dict


@dataclass(slots=True, frozen=True)
class FirebaseRow:
    uid: str
    user_id: int


@dataclass(slots=True)
class Transformed:
    """Everything one KV record becomes. `user_id` is the user every row belongs to."""

    key: str
    family: str
    layout: str  # real | plan
    user_id: int
    account: AccountRow | None = None
    subscription: SubscriptionRow | None = None
    flags: list[FlagRow] | None = None  # None: the record says nothing about flags
    flags_at: datetime | None = None  # when the flags were (at the latest) shown
    flags_extra: dict | None = None  # unknown fields of a plan-layout notifications record
    token: TokenRow | None = None
    firebase: FirebaseRow | None = None

    @property
    def domains(self) -> tuple[str, ...]:
        """The domains this record has rows for (in dependency order)."""
        out = []
        if self.firebase is not None:
            out.append("accounts")
        if self.account is not None:
            out.append("credits")
        if self.subscription is not None:
            out.append("billing")
        if self.token is not None:
            out.append("gmail")
        if self.flags is not None:
            out.append("notifications")
        return tuple(out)


# --- tolerant parsers -------------------------------------------------------------------------


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# Set while a record that carries OAuth tokens is transformed: a reason then names the field and
# the kind of value, never the value (reasons land in the quarantine, the report and the admin).
_HIDE_VALUES: ContextVar[bool] = ContextVar("kvmigrate_hide_values", default=False)


@contextmanager
def values_hidden():
    token = _HIDE_VALUES.set(True)
    try:
        yield
    finally:
        _HIDE_VALUES.reset(token)


def _short(value: Any) -> str:
    if _HIDE_VALUES.get():
        return "(not shown: a record with tokens)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def generic(path: str) -> str:
    """`transactions[3].amount` -> `transactions[].amount`: reason codes stay a small set."""
    return re.sub(r"\[\d+\]", "[]", path)


def wrong_type(path: str, value: Any, expected: str) -> Reject:
    detail = f"{path} must be {expected}, got {type_name(value)} {_short(value)}"
    return Reject(f"wrong_type:{generic(path)}", detail)


def parse_int(value: Any, path: str, *, lo: int = -BIGINT_MAX, hi: int = BIGINT_MAX) -> int:
    """An integer: a JSON integer, an integral float (`180.0`) or a numeric string (`"180"`)."""
    if type(value) is int and lo <= value <= hi:  # the common case, first
        return value
    if isinstance(value, bool) or value is None:
        raise wrong_type(path, value, "an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise wrong_type(path, value, "an integer")
        number = int(value)
    elif isinstance(value, str) and _INT_STRING.fullmatch(value):
        number = int(value)
    elif isinstance(value, str) and _NUMBER_STRING.fullmatch(value):
        as_float = float(value)
        if not math.isfinite(as_float) or not as_float.is_integer():
            raise wrong_type(path, value, "an integer")
        number = int(as_float)
    else:
        raise wrong_type(path, value, "an integer")
    if not lo <= number <= hi:
        raise Reject(f"out_of_range:{generic(path)}", f"{path} is {number}, outside {lo}..{hi}")
    return number


def parse_bool(value: Any, path: str) -> bool:
    """A boolean: true/false, 0/1 or the strings "true"/"false"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise wrong_type(path, value, "a boolean")


def parse_ts(value: Any, path: str) -> datetime:
    """A timestamp: epoch ms, epoch s (below 10^11), either as a numeric string, or ISO 8601."""
    if type(value) is int and SECONDS_BELOW <= value < MS_MAX:  # Date.now(): the common case
        return EPOCH + timedelta(milliseconds=value)
    if isinstance(value, bool) or value is None:
        raise wrong_type(path, value, "a timestamp")
    number: int | float | None = None
    if isinstance(value, (int, float)):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if _INT_STRING.fullmatch(text):
            number = int(text)
        elif _NUMBER_STRING.fullmatch(text):
            number = float(text)
        else:
            return _parse_iso(text, value, path)
    else:
        raise wrong_type(path, value, "a timestamp")
    if isinstance(number, float) and not math.isfinite(number):
        raise _bad_ts(path, "not a timestamp", value)
    if number < 0:
        raise _bad_ts(path, "negative", value)
    try:
        if number < SECONDS_BELOW:
            return EPOCH + timedelta(seconds=number)
        return EPOCH + timedelta(milliseconds=number)
    except OverflowError:
        raise _bad_ts(path, "out of range", value) from None


def _bad_ts(path: str, why: str, value: Any) -> Reject:
    return Reject(f"bad_timestamp:{generic(path)}", f"{path} is {why}: {_short(value)}")


def _parse_iso(text: str, original: Any, path: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _bad_ts(path, "not a timestamp", original) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise _bad_ts(path, "out of range", original) from None


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds as `Date.now()` gives them: an integer (sub-millisecond parts dropped).

    A value the store held with a fraction is kept verbatim by the transforms (it differs from
    this), so a record read from the store still goes back value for value.
    """
    return (moment - EPOCH) // timedelta(milliseconds=1)


def parse_str(value: Any, path: str, *, max_length: int | None = None) -> str:
    if not isinstance(value, str):
        raise wrong_type(path, value, "a string")
    if max_length is not None and len(value) > max_length:
        detail = f"{path} has {len(value)} characters, at most {max_length} fit"
        raise Reject(f"too_long:{generic(path)}", detail)
    return value


def find_bad_text(value: Any, path: str = "") -> str | None:
    """The path of the first string PostgreSQL cannot store (NUL, lone surrogate), or None."""
    if isinstance(value, str):
        return path or "value" if ("\x00" in value or _SURROGATE.search(value)) else None
    if isinstance(value, dict):
        for name, item in value.items():
            sub = f"{path}.{name}" if path else str(name)
            if "\x00" in name or _SURROGATE.search(name):
                return sub
            found = find_bad_text(item, sub)
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = find_bad_text(item, f"{path}[{index}]")
            if found:
                return found
    return None


def may_hold_bad_text(raw: str) -> bool:
    """Cheap pre-check on the raw string: only then is the decoded value walked."""
    return "u0000" in raw or "\\ud" in raw or "\\uD" in raw or "\x00" in raw or bool(_SURROGATE.search(raw))


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values: `1` and `true` differ (Python says equal), `180` and `180.0` do not."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


class Verbatim(dict):
    """Original values whose canonical rendering would differ (see the module docstring)."""

    def keep(self, name: str, original: Any, canonical: Any) -> None:
        if type(original) is type(canonical) and original == canonical:
            return
        if not same_json(original, canonical):
            self[name] = original
