"""Values and keys of the legacy KV store (../shared/kv-format.md).

The platform called `JSON.stringify` before the Replit client JSON-encoded again on `set`, so a
stored value is JSON *twice*; values written by other tools may be JSON once. `decode_value`
accepts both (and deeper nesting, up to a bound); `encode_value` writes what the platform wrote.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

__all__ = [
    "KNOWN_PREFIXES",
    "PLAN_PREFIXES",
    "REAL_PREFIXES",
    "DecodeError",
    "ParsedKey",
    "decode_value",
    "decode_with_depth",
    "encode_once",
    "encode_value",
    "parse_key",
    "parse_user_id",
]

# Section A: what the platform's code really wrote.
REAL_PREFIXES = ("user_credits", "user_tokens", "firebase_uid")
# Section B: what the migration plan assumed.
PLAN_PREFIXES = ("credits", "subscription", "gmail", "notifications")
KNOWN_PREFIXES = REAL_PREFIXES + PLAN_PREFIXES

# A value JSON-encoded more often than this is not something any client wrote: reject it.
MAX_ENCODING_DEPTH = 6
_BIGINT_MAX = 2**63 - 1
_USER_ID = re.compile(r"[1-9][0-9]{0,18}")
_SURROGATE = re.compile("[\ud800-\udfff]")


class DecodeError(ValueError):
    """A raw value that is not the JSON the contract promises; `reason` is short and quarantinable."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN/Infinity; JSON (and JSON.parse) does not.
    raise ValueError(f"{name} is not valid JSON")


_decoder = json.JSONDecoder(parse_constant=_reject_constant)


_loads = _decoder.decode


def decode_with_depth(raw: str) -> tuple[Any, int]:
    """Decode `raw` and say how many JSON layers it had (2 for the platform's own writes).

    Decoding goes on while the result is a string that is itself valid JSON, so `"\\"7\\""`
    (the platform's `firebase_uid` value) gives the number 7, and a string value that is not JSON
    (`"\\"hello\\""`) gives `hello`. A string that starts like an object or a list but does not
    parse is an error, not a string: it is a record cut short or mangled.
    """
    if not isinstance(raw, str):
        raise DecodeError(f"raw value must be a string, got {type(raw).__name__}")
    if not raw.strip():
        raise DecodeError("empty value")
    try:
        value = _loads(raw)
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise DecodeError(f"invalid JSON: {_describe_error(exc)}") from None
    depth = 1
    while isinstance(value, str):
        if not value.strip():
            break
        try:
            inner = _loads(value)
        except (json.JSONDecodeError, ValueError) as exc:
            if value.lstrip()[:1] in ("{", "["):
                # Not a genuine string: an encoded object cut short or mangled (`[object Object]`).
                raise DecodeError(f"invalid JSON inside the encoded string: {_describe_error(exc)}") from None
            break  # a genuine string value
        except RecursionError:
            raise DecodeError("invalid JSON: nested too deeply") from None
        depth += 1
        if depth > MAX_ENCODING_DEPTH:
            raise DecodeError(f"value is JSON-encoded more than {MAX_ENCODING_DEPTH} times")
        value = inner
    return value, depth


def decode_value(raw: str) -> Any:
    """The record behind a raw stored string (see `decode_with_depth`)."""
    return decode_with_depth(raw)[0]


def _describe_error(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at position {exc.pos}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)


def _js_compatible(obj: Any) -> Any:
    """Integral floats as JavaScript prints them (`1.0` -> `1`); everything else unchanged."""
    if isinstance(obj, float):
        if obj != obj or obj in (float("inf"), float("-inf")):
            raise ValueError("NaN and Infinity cannot be stored as JSON")
        return int(obj) if obj.is_integer() and abs(obj) < 2**53 else obj
    if isinstance(obj, dict):
        return {str(k): _js_compatible(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_js_compatible(v) for v in obj]
    return obj


# How Python prints a float JavaScript would print differently: `1.0` (JS: `1`), `1e+16` (JS: digits).
_PY_FLOAT = re.compile(r"[0-9]\.0(?![0-9])|[0-9]e[+-]")


def encode_once(obj: Any) -> str:
    """`JSON.stringify(obj)`: compact, non-ASCII kept, lone surrogates escaped as JS does."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    # Rare (or a string that merely looks so): redo with JS-style floats. The `in` tests are cheap.
    if (".0" in text or "e+" in text or "e-" in text) and _PY_FLOAT.search(text):
        text = json.dumps(_js_compatible(obj), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if not text.isascii() and _SURROGATE.search(text):
        text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


def encode_value(obj: Any) -> str:
    """The raw string the platform stored for `obj`: JSON twice (its stringify, then the client's)."""
    return encode_once(encode_once(obj))


class ParsedKey(NamedTuple):
    """A key of a known prefix: `prefix` without its colon, `ident` the rest, unvalidated."""

    prefix: str
    ident: str

    @property
    def layout(self) -> str:
        """`real` (section A) or `plan` (section B)."""
        return "real" if self.prefix in REAL_PREFIXES else "plan"

    @property
    def user_id(self) -> int | None:
        """The user id the key names, or None (firebase_uid keys name a uid, not a user)."""
        if self.prefix == "firebase_uid":
            return None
        return parse_user_id(self.ident)


def parse_key(key: str) -> ParsedKey | None:
    """Split a key of a known prefix; None for other prefixes (not ours: skipped, never quarantined).

    Prefixes are matched exactly (case-sensitive, colon included): `User_credits:7` or
    `user_credits_backup:7` belong to someone else.
    """
    head, sep, ident = key.partition(":")
    if not sep or head not in KNOWN_PREFIXES:
        return None
    return ParsedKey(head, ident)


def parse_user_id(ident: str) -> int | None:
    """A canonical positive integer id (ASCII digits, no sign, no leading zero, fits bigint), else None.

    Strict on purpose: `int()` would also accept ` 7`, `+7`, `0007` and Arabic-Indic digits, each
    of which would silently alias the record of user 7.
    """
    if not isinstance(ident, str) or not _USER_ID.fullmatch(ident):
        return None
    value = int(ident)
    return value if value <= _BIGINT_MAX else None
