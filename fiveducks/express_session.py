"""The platform's Express session: the `connect.sid` cookie and its row in `user_sessions`.

express-session signs the cookie with cookie-signature: the value is
`"s:" + sid + "." + base64(HMAC-SHA256(secret, sid))` with the `=` padding stripped, then
URL-encoded (`s%3A...`). With several secrets (rotation) the first signs and any verifies.
connect-pg-simple keeps the session as JSON in `sess` (`passport.user` is the user id) with its
expiry in `expire`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from urllib.parse import unquote

from django.conf import settings
from psycopg import sql

from fiveducks import platform_db


class InvalidSession(Exception):
    """The cookie is not validly signed, or its session is missing, expired or anonymous."""


def sign(sid: str, secret: str) -> str:
    """The cookie value cookie-signature makes (before URL encoding): `s:<sid>.<signature>`."""
    mac = hmac.new(secret.encode(), sid.encode(), hashlib.sha256).digest()
    return "s:" + sid + "." + base64.b64encode(mac).decode().rstrip("=")


def unsign(cookie_value: str, secrets: list[str]) -> str:
    """The session id of a signed cookie value; InvalidSession when no secret signed it."""
    value = unquote(cookie_value)
    if not value.startswith("s:") or "." not in value:
        raise InvalidSession("the session cookie is not signed")
    sid = value[2 : value.rindex(".")]
    for secret in secrets:
        if sid and hmac.compare_digest(sign(sid, secret).encode(), value.encode()):
            return sid
    raise InvalidSession("the session cookie's signature is not valid")


@dataclass(frozen=True)
class PlatformSession:
    user_id: int
    expires_in: float  # seconds until its `expire`, by the platform database's clock


def session_for(sid: str) -> PlatformSession:
    """The logged-in session `sid` (from `unsign`) stands for (refused: InvalidSession)."""
    table = sql.Identifier(*settings.PLATFORM_SESSION_TABLE.split("."))
    # Compared in the database, as connect-pg-simple does (`expire` has no time zone: it is
    # read in the database session's zone, the one the platform wrote it in).
    query = sql.SQL(
        "SELECT sess, EXTRACT(EPOCH FROM expire::timestamptz - now())::float8 FROM {} WHERE sid = %s"
    ).format(table)
    with platform_db.cursor() as cur:
        cur.execute(query, [sid])
        row = cur.fetchone()
    if row is None:
        raise InvalidSession("no such session")
    sess, expires_in = row
    if expires_in < 0:
        raise InvalidSession("the session has expired")
    if isinstance(sess, str | bytes):
        try:
            sess = json.loads(sess)
        except ValueError:
            raise InvalidSession("the session is not JSON") from None
    user = ((sess or {}).get("passport") or {}).get("user") if isinstance(sess, dict) else None
    if isinstance(user, str) and user.isdigit():
        user = int(user)
    if not isinstance(user, int) or isinstance(user, bool) or user <= 0:
        raise InvalidSession("the session is not logged in")
    return PlatformSession(user_id=user, expires_in=float(expires_in))
