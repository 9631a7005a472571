"""Firebase ID tokens, verified with google-auth against FIREBASE_CERTS_URL.

`google.oauth2.id_token.verify_firebase_token` hard-codes Google's certificate address, so the
general `verify_token(..., certs_url=FIREBASE_CERTS_URL)` is used (tests serve their own
certificates) and the Firebase-specific checks are made here: the issuer
`https://securetoken.google.com/<project>` and a non-empty `sub` (the Firebase uid).

google-auth fetches the certificates on every call; `CachingRequest` keeps them for as long as
their `Cache-Control: max-age` allows (Google rotates them every few hours and says so there).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

import google.auth.exceptions
import google.auth.transport.requests
from django.conf import settings
from google.oauth2 import id_token

HTTP_TIMEOUT = 10
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.IGNORECASE)
_NO_STORE = re.compile(r"(?:^|,)\s*(no-store|no-cache)\b", re.IGNORECASE)


class InvalidToken(Exception):
    """The token is not a valid Firebase ID token for this project (the message says why)."""


@dataclass(frozen=True)
class FirebaseIdentity:
    uid: str
    email: str
    email_verified: bool
    name: str
    expires_at: float = 0.0  # the token's `exp` (epoch seconds): nothing may trust it past that


@dataclass
class _Cached:
    response: object
    expires_at: float


class CachingRequest(google.auth.transport.requests.Request):
    """google-auth's requests transport that caches GET answers as their Cache-Control allows."""

    def __init__(self) -> None:
        super().__init__()
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        if method != "GET":
            return super().__call__(url, method, body, headers, timeout or HTTP_TIMEOUT, **kwargs)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(url)
            if cached is not None and cached.expires_at > now:
                return cached.response
        response = super().__call__(url, method, body, headers, timeout or HTTP_TIMEOUT, **kwargs)
        lifetime = cache_lifetime(response.headers.get("Cache-Control", "")) if response.status == 200 else 0
        with self._lock:
            if lifetime > 0:
                self._cache[url] = _Cached(response, now + lifetime)
            else:
                self._cache.pop(url, None)
        return response

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


def cache_lifetime(cache_control: str) -> int:
    """Seconds an answer may be reused: its max-age, 0 when absent or no-store/no-cache."""
    if _NO_STORE.search(cache_control or ""):
        return 0
    match = _MAX_AGE.search(cache_control or "")
    return int(match.group(1)) if match else 0


_request = CachingRequest()


def enabled() -> bool:
    return bool(settings.FIREBASE_PROJECT_ID)


def looks_like_jwt(token: str) -> bool:
    """Three base64url segments: other bearer tokens (service credentials) are not ours to judge."""
    parts = token.split(".")
    return len(parts) == 3 and all(parts) and all(re.fullmatch(r"[A-Za-z0-9_-]+", p) for p in parts)


def verify(token: str) -> FirebaseIdentity:
    """The token's identity; InvalidToken for an expired, tampered, foreign or malformed token."""
    project = settings.FIREBASE_PROJECT_ID
    try:
        claims = id_token.verify_token(
            token, _request, audience=project, certs_url=settings.FIREBASE_CERTS_URL
        )
    except google.auth.exceptions.TransportError:
        raise InvalidToken("the Firebase certificates could not be fetched") from None
    except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
        # google-auth's messages name the failed check (expired, wrong audience, bad signature)
        # and never include the token itself.
        raise InvalidToken(str(exc).split("\n")[0][:200]) from None
    if claims.get("iss") != f"https://securetoken.google.com/{project}":
        raise InvalidToken("the token was not issued by this Firebase project")
    uid = claims.get("sub")
    if not isinstance(uid, str) or not uid.strip():
        raise InvalidToken("the token has no subject (Firebase uid)")
    email = claims.get("email")
    return FirebaseIdentity(
        uid=uid,
        email=email.strip().lower() if isinstance(email, str) else "",
        email_verified=claims.get("email_verified") is True,
        name=str(claims.get("name") or ""),
        expires_at=float(claims.get("exp") or 0),
    )
