"""Google's side of the connection: the OAuth flow, token refresh and revocation.

No database here: gmail.services decides when to call these and stores the results. Google's
addresses come from settings (GOOGLE_*_URI) so tests point them at gmail.testing.FakeGoogle.
Tokens are never logged, and exception messages that may quote one are not propagated.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import google.auth.exceptions
import google.auth.transport.requests
import requests
from django.conf import settings
from google.auth import jwt
from google.oauth2.credentials import Credentials
from google_auth_oauthlib.flow import Flow
from oauthlib.oauth2.rfc6749.errors import OAuth2Error

logger = logging.getLogger(__name__)

HTTP_TIMEOUT = 15  # seconds for any call to Google
DEFAULT_TOKEN_LIFETIME = dt.timedelta(seconds=3599)
GOOGLE_ISSUERS = {"accounts.google.com", "https://accounts.google.com"}


class GoogleError(Exception):
    """Google refused or could not be reached. `error` is Google's OAuth error code, if any."""

    def __init__(self, message: str, *, error: str = ""):
        super().__init__(message)
        self.error = error


@dataclass(frozen=True)
class AuthorizationRequest:
    url: str
    state: str
    code_verifier: str | None


@dataclass(frozen=True)
class GrantedTokens:
    access_token: str
    refresh_token: str | None
    expires_at: dt.datetime | None
    scopes: list[str]
    email: str = ""
    display_name: str = ""


def client_config() -> dict:
    return {
        "web": {
            "client_id": settings.GOOGLE_CLIENT_ID,
            "client_secret": settings.GOOGLE_CLIENT_SECRET,
            "auth_uri": settings.GOOGLE_AUTH_URI,
            "token_uri": settings.GOOGLE_TOKEN_URI,
            "redirect_uris": [settings.GOOGLE_REDIRECT_URI],
        }
    }


def build_flow(
    *, state: str | None = None, code_verifier: str | None = None, redirect_uri: str | None = None
) -> Flow:
    """The OAuth flow; `redirect_uri` defaults to GOOGLE_REDIRECT_URI (the platform's popup
    flow returns to its own path, /api/gmail/callback)."""
    return Flow.from_client_config(
        client_config(),
        scopes=list(settings.GMAIL_SCOPES),
        redirect_uri=redirect_uri or settings.GOOGLE_REDIRECT_URI,
        state=state,
        code_verifier=code_verifier,
    )


def authorization_request(
    *, state: str | None = None, redirect_uri: str | None = None
) -> AuthorizationRequest:
    """The consent URL: offline access (a refresh token), consent prompt, PKCE (S256).

    `state` defaults to a random one; a caller may bind its own (e.g. to a user and a nonce).
    """
    flow = build_flow(state=state, redirect_uri=redirect_uri)
    url, state = flow.authorization_url(
        access_type="offline", prompt="consent", include_granted_scopes="true"
    )
    return AuthorizationRequest(url=url, state=state, code_verifier=flow.code_verifier)


def exchange_code(
    *, code: str, state: str, code_verifier: str | None, redirect_uri: str | None = None
) -> GrantedTokens:
    """Trade an authorization code for tokens, and find out whose mailbox they open."""
    flow = build_flow(state=state, code_verifier=code_verifier, redirect_uri=redirect_uri)
    try:
        token = dict(flow.fetch_token(code=code, timeout=HTTP_TIMEOUT))
    except Warning as changed:
        # oauthlib raises a Warning when Google grants other scopes than asked (the user may
        # untick some on the consent screen); the token is valid, keep what was granted.
        token = dict(getattr(changed, "token", None) or {})
        if not token.get("access_token"):
            raise GoogleError("Google's token answer had no access token") from None
    except OAuth2Error as exc:
        raise GoogleError(
            f"Google refused the authorization code ({exc.error}: {exc.description or 'no detail'})",
            error=exc.error or "",
        ) from None
    except requests.RequestException as exc:
        raise GoogleError(
            f"Google's token endpoint could not be reached ({exc.__class__.__name__})"
        ) from None
    except ValueError:
        raise GoogleError("Google's token endpoint gave an unreadable answer") from None

    scopes = token.get("scope") or list(settings.GMAIL_SCOPES)
    if isinstance(scopes, str):
        scopes = scopes.split()
    expires_at = None
    if token.get("expires_at"):
        expires_at = dt.datetime.fromtimestamp(float(token["expires_at"]), tz=dt.UTC)
    email, name = identity(access_token=token["access_token"], id_token=token.get("id_token"))
    return GrantedTokens(
        access_token=token["access_token"],
        refresh_token=token.get("refresh_token") or None,
        expires_at=expires_at,
        scopes=list(scopes),
        email=email,
        display_name=name,
    )


def identity(*, access_token: str, id_token: str | None) -> tuple[str, str]:
    """(email, display name) from the id_token, else from the userinfo endpoint; ("", "") if neither.

    The id_token comes straight from Google's token endpoint over TLS, so (OpenID Connect core
    3.1.3.7) its issuer is vouched for by TLS; we still check audience and issuer.
    """
    if id_token:
        try:
            claims = jwt.decode(id_token, verify=False)
        except (ValueError, google.auth.exceptions.GoogleAuthError):
            claims = {}
            logger.warning("gmail: the id_token from Google could not be parsed; trying userinfo")
        trusted = claims.get("aud") == settings.GOOGLE_CLIENT_ID and claims.get("iss") in GOOGLE_ISSUERS
        if trusted and claims.get("email"):
            return str(claims["email"]), str(claims.get("name") or "")
    uri = getattr(settings, "GOOGLE_USERINFO_URI", "")
    if not uri:
        return "", ""
    try:
        response = requests.get(
            uri, headers={"Authorization": f"Bearer {access_token}"}, timeout=HTTP_TIMEOUT
        )
        info = response.json() if response.ok else {}
    except (requests.RequestException, ValueError) as exc:
        logger.warning(
            "gmail: userinfo unavailable (%s); connecting without an email", exc.__class__.__name__
        )
        return "", ""
    if not isinstance(info, dict):
        return "", ""
    return str(info.get("email") or ""), str(info.get("name") or "")


class _Request(google.auth.transport.requests.Request):
    """google-auth's transport with a bounded timeout (its default is 120 s)."""

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        return super().__call__(url, method, body, headers, timeout or HTTP_TIMEOUT, **kwargs)


def refresh(*, refresh_token: str, scopes: list[str]) -> tuple[str, dt.datetime, str | None]:
    """Refresh with google-auth against settings.GOOGLE_TOKEN_URI.

    Returns (access_token, expires_at (aware UTC), refresh_token if Google rotated it).
    Raises GoogleError; `error == "invalid_grant"` means the grant is gone (revoked, expired).
    """
    credentials = Credentials(
        token=None,
        refresh_token=refresh_token,
        token_uri=settings.GOOGLE_TOKEN_URI,
        client_id=settings.GOOGLE_CLIENT_ID,
        client_secret=settings.GOOGLE_CLIENT_SECRET,
        scopes=scopes or None,
    )
    try:
        credentials.refresh(_Request())
    except google.auth.exceptions.RefreshError as exc:
        data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
        error = str(data.get("error") or "")
        description = str(data.get("error_description") or "")
        raise GoogleError(
            f"Google refused to refresh the token ({error or 'unknown error'}"
            f"{': ' + description if description else ''})",
            error=error,
        ) from None
    except google.auth.exceptions.TransportError as exc:
        raise GoogleError(
            f"Google's token endpoint could not be reached ({exc.__class__.__name__})"
        ) from None
    if credentials.expiry:
        expires_at = credentials.expiry.replace(tzinfo=dt.UTC)
    else:  # Google always sends expires_in; an answer without one gets its usual hour
        expires_at = dt.datetime.now(dt.UTC) + DEFAULT_TOKEN_LIFETIME
    rotated = credentials.refresh_token if credentials.refresh_token != refresh_token else None
    return credentials.token, expires_at, rotated


def revoke(*, token: str) -> None:
    """Revoke a token at settings.GOOGLE_REVOKE_URI (the token goes in the body, not the URL).

    A token Google no longer knows (400 invalid_token) counts as revoked.
    """
    try:
        response = requests.post(
            settings.GOOGLE_REVOKE_URI,
            data={"token": token},
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=HTTP_TIMEOUT,
        )
    except requests.RequestException as exc:
        raise GoogleError(
            f"Google's revoke endpoint could not be reached ({exc.__class__.__name__})"
        ) from None
    if response.ok:
        return
    try:
        error = str(response.json().get("error") or "")
    except (ValueError, AttributeError):
        error = ""
    if response.status_code == 400 and error == "invalid_token":
        return
    raise GoogleError(
        f"Google refused to revoke the token (HTTP {response.status_code}{', ' + error if error else ''})",
        error=error,
    )
