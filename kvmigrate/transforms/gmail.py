"""Gmail OAuth tokens from `user_tokens:` (real layout) and `gmail:` (plan). Secrets: never logged."""

from __future__ import annotations

from typing import Any

from .base import Reject, TokenRow, Verbatim, parse_str, parse_ts, to_ms, wrong_type

REAL_FIELDS = {
    "gmailAccessToken": "access_token",
    "gmailRefreshToken": "refresh_token",
    "tokenExpiry": "expires_at",
    "scopes": "scopes",
    "createdAt": "created_at",
    "updatedAt": "updated_at",
    "gmailEmail": "email",
    "gmailDisplayName": "display_name",
}
PLAN_FIELDS = {
    "accessToken": "access_token",
    "refreshToken": "refresh_token",
    "expiresAt": "expires_at",
    "email": "email",
    "scope": "scopes",
    # not in the plan's list, but meaningful when another tool wrote them
    "displayName": "display_name",
    "createdAt": "created_at",
    "updatedAt": "updated_at",
}
_MAX = {"email": 254, "display_name": 255}


def _scopes(value: Any, name: str, verbatim: Verbatim) -> list[str]:
    if isinstance(value, str):
        scopes = value.split()
        verbatim[name] = value
        return scopes
    if not isinstance(value, list):
        raise wrong_type(name, value, "a list of scopes")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise wrong_type(f"{name}[{index}]", item, "a string")
    return list(value)


def token_from_record(key: str, layout: str, user_id: int, record: Any) -> TokenRow:
    if not isinstance(record, dict):
        raise Reject("not_an_object", "the value must be a JSON object")
    names = REAL_FIELDS if layout == "real" else PLAN_FIELDS
    verbatim = Verbatim()
    values: dict[str, Any] = {
        "access_token": None,
        "refresh_token": None,
        "expires_at": None,
        "email": "",
        "display_name": "",
        "scopes": [],
        "created_at": None,
        "updated_at": None,
    }
    for name, value in record.items():
        column = names.get(name)
        if column is None or value is None:
            continue
        if column in ("expires_at", "created_at", "updated_at"):
            values[column] = parse_ts(value, name)
            verbatim.keep(name, value, to_ms(values[column]))
        elif column == "scopes":
            values[column] = _scopes(value, name, verbatim)
        elif column in ("access_token", "refresh_token"):
            token = parse_str(value, name)
            if token.strip():
                values[column] = token
            else:
                verbatim[name] = value  # an empty token is no token
        else:
            values[column] = parse_str(value, name, max_length=_MAX[column])
            verbatim.keep(name, value, values[column] or None)
    if values["access_token"] is None and values["refresh_token"] is None:
        raise Reject("no_gmail_token", "neither an access token nor a refresh token: nothing to connect with")
    kv: dict[str, Any] = {"key": key, "layout": layout, "fields": list(record)}
    extra = {name: value for name, value in record.items() if name not in names}
    if extra:
        kv["extra"] = extra
    if verbatim:
        kv["verbatim"] = dict(verbatim)
    return TokenRow(user_id=user_id, metadata={"kv": kv}, **values)
