"""A local stand-in for Google's OAuth endpoints, for tests (Google cannot be reached from them).

`FakeGoogle` serves, on 127.0.0.1 and a random port:
- `GET  /o/oauth2/auth`  consent that approves at once: 302 to the redirect URI with code + state
- `POST /token`          authorization_code (checks client, redirect URI and PKCE) and refresh_token
- `POST /revoke`         revokes a grant by its refresh or access token
- `GET  /userinfo`       the identity behind a Bearer access token
It records every call (`calls`, `count()`), can be slowed (`refresh_delay`) or made to fail
(`fail_next`), and is used through the real libraries: point settings at it with `apply_to()`, or
use the `fake_google` pytest fixture (import it into a conftest.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit

import pytest

from fivedocks.testing import LocalHTTPServer

DEFAULT_SCOPES = (
    "https://www.googleapis.com/auth/gmail.modify",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
)


@dataclass
class Call:
    """One request the stand-in received (`form` holds the decoded body or query)."""

    endpoint: str  # "auth", "token", "revoke", "userinfo"
    grant_type: str | None
    form: dict[str, str]


@dataclass
class Grant:
    """What a user allowed: identity, scopes, and the tokens currently valid for it."""

    email: str
    name: str
    scopes: list[str]
    refresh_token: str
    access_tokens: set[str] = field(default_factory=set)
    revoked: bool = False
    sub: str = field(default_factory=lambda: str(secrets.randbelow(10**20)))


@dataclass
class _PendingCode:
    grant: Grant
    client_id: str
    redirect_uri: str
    code_challenge: str | None
    code_challenge_method: str | None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakeGoogle(LocalHTTPServer):
    """Google's OAuth endpoints, in-process. Thread-safe; start with `with FakeGoogle(...) as g:`."""

    thread_name = "fake-google"

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        token_lifetime: int = 3599,
        include_id_token: bool = True,
    ):
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        self.include_id_token = include_id_token
        self.refresh_delay = 0.0  # seconds each refresh_token grant takes
        self.next_identity = ("someone@example.com", "Some One")  # who consents at /o/oauth2/auth
        self.granted_scopes: list[str] | None = None  # None: whatever the client asked for
        self.calls: list[Call] = []
        self._fail: dict[str, list[tuple[int, dict]]] = {}
        self._codes: dict[str, _PendingCode] = {}
        self._grants: list[Grant] = []
        self._lock = threading.Lock()

    def handler_class(self) -> type[_Handler]:
        fake = self

        class Handler(_Handler):
            google = fake

        return Handler

    @property
    def auth_uri(self) -> str:
        return f"{self.base_url}/o/oauth2/auth"

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    @property
    def revoke_uri(self) -> str:
        return f"{self.base_url}/revoke"

    @property
    def userinfo_uri(self) -> str:
        return f"{self.base_url}/userinfo"

    def apply_to(self, settings) -> None:
        """Point Django settings (e.g. pytest-django's `settings` fixture) at this stand-in."""
        settings.GOOGLE_AUTH_URI = self.auth_uri
        settings.GOOGLE_TOKEN_URI = self.token_uri
        settings.GOOGLE_REVOKE_URI = self.revoke_uri
        settings.GOOGLE_USERINFO_URI = self.userinfo_uri
        settings.GOOGLE_CLIENT_ID = self.client_id
        settings.GOOGLE_CLIENT_SECRET = self.client_secret

    # --- what tests look at and steer ----------------------------------------------------------
    def count(self, endpoint: str, grant_type: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for c in self.calls
                if c.endpoint == endpoint and (grant_type is None or c.grant_type == grant_type)
            )

    def fail_next(self, endpoint: str, status: int, body: dict, times: int = 1) -> None:
        """Answer the next `times` calls to `endpoint` ("token", "revoke", "userinfo") with this."""
        with self._lock:
            self._fail.setdefault(endpoint, []).extend([(status, body)] * times)

    def issue_grant(
        self, *, email: str = "someone@example.com", name: str = "Some One", scopes=DEFAULT_SCOPES
    ) -> tuple[Grant, str]:
        """A grant as if the user had consented earlier; returns it and a fresh access token."""
        with self._lock:
            grant = Grant(email=email, name=name, scopes=list(scopes), refresh_token=f"1//fake-{_token()}")
            self._grants.append(grant)
            access = self._new_access_token(grant)
        return grant, access

    def revoke_grant(self, grant: Grant) -> None:
        """The user revokes access in their Google account: the refresh token stops working."""
        with self._lock:
            grant.revoked = True

    def consent(self, authorization_url: str) -> dict[str, str]:
        """The user approves on the consent screen: the redirect's query (`code`, `state`)."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorization_url).query).items()}
        status, location = self._authorize(query)
        if status != 302:
            raise AssertionError(f"the stand-in refused the authorization request: {location}")
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}

    def grant_for(self, refresh_token: str) -> Grant | None:
        with self._lock:
            return next((g for g in self._grants if g.refresh_token == refresh_token), None)

    # --- endpoint logic (called from the handler threads) -----------------------------------------
    def _record(self, endpoint: str, form: dict[str, str]) -> tuple[int, dict] | None:
        with self._lock:
            self.calls.append(Call(endpoint, form.get("grant_type"), dict(form)))
            queue = self._fail.get(endpoint)
            return queue.pop(0) if queue else None

    def _new_access_token(self, grant: Grant) -> str:
        access = f"ya29.fake-{_token()}"
        grant.access_tokens.add(access)
        return access

    def _authorize(self, query: dict[str, str]) -> tuple[int, str]:
        if query.get("client_id") != self.client_id:
            return 400, "unknown client_id"
        if query.get("response_type") != "code" or not query.get("redirect_uri"):
            return 400, "response_type=code and redirect_uri are required"
        email, name = self.next_identity
        scopes = self.granted_scopes if self.granted_scopes is not None else query.get("scope", "").split()
        with self._lock:
            grant = Grant(email=email, name=name, scopes=list(scopes), refresh_token=f"1//fake-{_token()}")
            self._grants.append(grant)
            code = f"4/fake-{_token()}"
            self._codes[code] = _PendingCode(
                grant=grant,
                client_id=query["client_id"],
                redirect_uri=query["redirect_uri"],
                code_challenge=query.get("code_challenge"),
                code_challenge_method=query.get("code_challenge_method"),
            )
        params = {"code": code, "scope": " ".join(scopes)}
        if "state" in query:
            params["state"] = query["state"]
        return 302, f"{query['redirect_uri']}?{urlencode(params)}"

    def _client_ok(self, form: dict[str, str], basic: tuple[str, str] | None) -> bool:
        client_id, secret = basic or (form.get("client_id"), form.get("client_secret"))
        return client_id == self.client_id and secret == self.client_secret

    def _token(self, form: dict[str, str], basic: tuple[str, str] | None) -> tuple[int, dict]:
        if not self._client_ok(form, basic):
            return 401, {"error": "invalid_client", "error_description": "The OAuth client was not found."}
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            return self._exchange(form)
        if grant_type == "refresh_token":
            if self.refresh_delay:
                time.sleep(self.refresh_delay)
            with self._lock:
                grant = next((g for g in self._grants if g.refresh_token == form.get("refresh_token")), None)
                if grant is None or grant.revoked:
                    return 400, {
                        "error": "invalid_grant",
                        "error_description": "Token has been expired or revoked.",
                    }
                access = self._new_access_token(grant)
            return 200, {
                "access_token": access,
                "expires_in": self.token_lifetime,
                "scope": " ".join(grant.scopes),
                "token_type": "Bearer",
            }
        return 400, {
            "error": "unsupported_grant_type",
            "error_description": f"Invalid grant_type: {grant_type}",
        }

    def _exchange(self, form: dict[str, str]) -> tuple[int, dict]:
        with self._lock:
            pending = self._codes.pop(form.get("code", ""), None)
            if pending is None:
                return 400, {"error": "invalid_grant", "error_description": "Malformed auth code."}
            if form.get("redirect_uri") != pending.redirect_uri:
                return 400, {"error": "redirect_uri_mismatch", "error_description": "Bad Request"}
            if pending.code_challenge:
                verifier = form.get("code_verifier", "")
                computed = (
                    _b64url(hashlib.sha256(verifier.encode()).digest())
                    if pending.code_challenge_method == "S256"
                    else verifier
                )
                if computed != pending.code_challenge:
                    return 400, {"error": "invalid_grant", "error_description": "Invalid code verifier."}
            grant = pending.grant
            access = self._new_access_token(grant)
        body = {
            "access_token": access,
            "expires_in": self.token_lifetime,
            "refresh_token": grant.refresh_token,
            "scope": " ".join(grant.scopes),
            "token_type": "Bearer",
        }
        if self.include_id_token:
            body["id_token"] = self._id_token(grant)
        return 200, body

    def _id_token(self, grant: Grant) -> str:
        now = int(time.time())
        header = {"alg": "RS256", "kid": "fake-google", "typ": "JWT"}
        claims = {
            "iss": "https://accounts.google.com",
            "aud": self.client_id,
            "azp": self.client_id,
            "sub": grant.sub,
            "email": grant.email,
            "email_verified": True,
            "name": grant.name,
            "iat": now,
            "exp": now + 3600,
        }
        parts = [_b64url(json.dumps(p).encode()) for p in (header, claims)]
        return ".".join([*parts, _b64url(b"not-a-real-signature")])

    def _revoke(self, form: dict[str, str]) -> tuple[int, dict]:
        token = form.get("token", "")
        with self._lock:
            for grant in self._grants:
                if not grant.revoked and (token == grant.refresh_token or token in grant.access_tokens):
                    grant.revoked = True
                    grant.access_tokens.clear()
                    return 200, {}
        return 400, {"error": "invalid_token", "error_description": "Token expired or revoked"}

    def _userinfo(self, bearer: str | None) -> tuple[int, dict]:
        with self._lock:
            for grant in self._grants:
                if bearer and not grant.revoked and bearer in grant.access_tokens:
                    return 200, {
                        "sub": grant.sub,
                        "email": grant.email,
                        "name": grant.name,
                        "email_verified": True,
                    }
        return 401, {"error": "invalid_token", "error_description": "Invalid Credentials"}


def _token() -> str:
    return secrets.token_urlsafe(24)


class _Handler(BaseHTTPRequestHandler):
    google: FakeGoogle
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # silent: requests carry tokens
        pass

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}

    def _basic(self) -> tuple[str, str] | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return unquote_plus(user), unquote_plus(password)

    def _send(self, status: int, body: dict | None = None, location: str | None = None) -> None:
        payload = json.dumps(body or {}).encode()
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/o/oauth2/auth":
            failure = self.google._record("auth", query)
            if failure:
                return self._send(*failure)
            status, where = self.google._authorize(query)
            if status == 302:
                return self._send(302, location=where)
            return self._send(status, {"error": "invalid_request", "error_description": where})
        if parts.path == "/userinfo":
            failure = self.google._record("userinfo", {})
            if failure:
                return self._send(*failure)
            auth = self.headers.get("Authorization", "")
            bearer = auth[7:] if auth.startswith("Bearer ") else None
            return self._send(*self.google._userinfo(bearer))
        return self._send(404, {"error": "not_found"})

    def do_POST(self):
        form = self._form()
        path = urlsplit(self.path).path
        if path == "/token":
            failure = self.google._record("token", form)
            return self._send(*(failure or self.google._token(form, self._basic())))
        if path == "/revoke":
            failure = self.google._record("revoke", form)
            return self._send(*(failure or self.google._revoke(form)))
        return self._send(404, {"error": "not_found"})


@pytest.fixture
def fake_google(settings, monkeypatch):
    """A started FakeGoogle with settings pointed at it (oauthlib allowed plain http, tests only)."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    with FakeGoogle(client_id=settings.GOOGLE_CLIENT_ID, client_secret=settings.GOOGLE_CLIENT_SECRET) as fake:
        fake.apply_to(settings)
        yield fake
