"""The platform's logins as DRF authentication classes (docs/platform.md).

- `PlatformSessionAuthentication`: the Express `connect.sid` cookie, signed by cookie-signature
  and looked up in the platform's session table (PLATFORM_DATABASE_URL). Off when unset.
- `FirebaseAuthentication`: `Authorization: Bearer <Firebase ID token>`. Off while
  FIREBASE_PROJECT_ID is unset. The user is found by Firebase uid, then by verified email (the uid
  is then recorded); an unverified email never links to or imports a user.
- `GmailPopupCookieAuthentication`: the short-lived cookie fivedocks sets for the Gmail popup
  (which cannot carry a header), accepted only by the popup's own routes.

All three kinds of credential go through the credential cache (`fiveducks.login_cache`,
`fiveducks.selectors.secret_for_token`, docs/caching.md "Credentials"): a warm request is
authenticated without a query, a verification or a call to the platform's database.

Both platform users and Firebase users unknown to fivedocks are imported on first sight
(fiveducks.first_sight). A cookie-authenticated unsafe request must come from this origin or a
trusted one (`enforce_same_origin`): the client sends no CSRF token, but every browser sends
Origin (or Referer) on a cross-site POST.

Service clients (issue 13): `Authorization: Bearer fd_svc_...`: service clients, distinct from user tokens.

Only the service API accepts these, and the service API accepts nothing else: a user's token or
session never authenticates there (no user is ever the caller of `/api/service/`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission

from fiveducks import express_session, firebase, first_sight, login_cache, platform_db, selectors, services
from fiveducks.models import ServiceClient

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServicePrincipal:
    """What `request.user` is on the service API: the client, never a platform user."""

    client: ServiceClient

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    is_active = True

    @property
    def pk(self) -> str:
        return self.client.owner  # keys throttles and caches per client, apart from users

    def __str__(self) -> str:
        return f"service client {self.client.name}"


class ServiceClientAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header: Bearer fd_svc_... expected.")
        try:
            token = header[1].decode()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid service credentials.") from None
        credential = selectors.secret_for_token(token)  # warm: from the credential cache
        if credential is None:
            # The token itself is never logged; its public key id is, when it has one.
            key_id = token.removeprefix(services.TOKEN_PREFIX).partition("_")[0][:16]
            logger.warning("service api: unknown or revoked secret (key id %s)", key_id or "-")
            raise exceptions.AuthenticationFailed("Invalid service credentials.")
        client = credential.client
        if client.is_disabled:
            logger.warning("service api: disabled client %s refused", client.name)
            raise exceptions.AuthenticationFailed("This service client is disabled.")
        services.mark_used(
            secret_id=credential.secret_id, client_id=client.pk, last_used_at=credential.last_used_at
        )
        return ServicePrincipal(client), client

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="service"'


class IsServiceClient(BasePermission):
    """Authenticated by a service secret, and holding the view's `required_scope`."""

    message = "This service client lacks the scope this endpoint needs."

    def has_permission(self, request, view) -> bool:
        client = request.auth
        if not isinstance(client, ServiceClient):
            raise exceptions.NotAuthenticated("Service credentials (Bearer fd_svc_...) are required.")
        required = getattr(view, "required_scope", None)
        if required and required not in client.scopes:
            self.message = f"This service client lacks the {required!r} scope."
            return False
        return True


class ServiceClientScheme(OpenApiAuthenticationExtension):
    target_class = ServiceClientAuthentication
    name = "serviceClient"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "fd_svc_<key id>_<secret>",
            "description": "A service client's secret (manage.py service_client create NAME --scopes ...).",
        }


# --- The platform's logins ----------------------------------------------------------------------

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

GMAIL_COOKIE = "fd_gmail_popup"
GMAIL_COOKIE_PATH = "/api/gmail/"
GMAIL_COOKIE_MAX_AGE = 600  # seconds: long enough to open the popup and consent
GMAIL_COOKIE_SALT = "fiveducks.gmail-popup"


def request_origin(request) -> str:
    return f"{request.scheme}://{request.get_host()}"


def enforce_same_origin(request) -> None:
    """403 for an unsafe request whose Origin (else Referer) is not ours or a trusted origin."""
    if request.method in SAFE_METHODS:
        return
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        referer = request.headers.get("Referer") or ""
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    if not origin:
        raise exceptions.PermissionDenied("Cross-site request refused: no Origin or Referer header.")
    allowed = {request_origin(request), *settings.CSRF_TRUSTED_ORIGINS}
    if origin not in allowed:
        raise exceptions.PermissionDenied("Cross-site request refused: this origin is not trusted.")


def _usable(user):
    return user if user is not None and user.is_active else None


class PlatformSessionAuthentication(authentication.BaseAuthentication):
    """The platform's Express session cookie (`connect.sid`)."""

    def authenticate(self, request):
        raw = request.COOKIES.get(settings.PLATFORM_SESSION_COOKIE)
        if not raw or not platform_db.enabled():
            return None
        # The client sends its stale cookie along with a fresh Firebase token: a refused cookie
        # is then ignored (the token decides), as on the platform where the session is optional.
        has_header = bool(request.META.get("HTTP_AUTHORIZATION"))
        try:
            user = login_cache.session_user(raw)  # warm: no query here nor on the platform
        except express_session.InvalidSession as exc:
            if has_header:
                return None
            raise exceptions.AuthenticationFailed(f"The platform session was refused: {exc}.") from None
        except platform_db.PlatformUnavailable as exc:
            logger.warning("session login unavailable: %s", exc)
            if has_header:
                return None
            raise exceptions.AuthenticationFailed("The platform session could not be checked.") from None
        if user is None:
            if has_header:
                return None
            raise exceptions.AuthenticationFailed("The platform session's user is not known.")
        enforce_same_origin(request)
        return user, "platform-session"

    def authenticate_header(self, request):
        return None


class FirebaseAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <Firebase ID token>`."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if len(header) != 2 or header[0].lower() != self.keyword.lower().encode():
            return None
        if not firebase.enabled():
            return None
        try:
            token = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid bearer token.") from None
        if not firebase.looks_like_jwt(token):
            return None  # another kind of bearer credential: not a Firebase login
        try:
            user = login_cache.firebase_user(token)  # warm: no verification, no query
        except firebase.InvalidToken as exc:
            raise exceptions.AuthenticationFailed(f"Invalid Firebase ID token: {exc}.") from None
        if user is None:
            raise exceptions.AuthenticationFailed("No user is registered for this Firebase account.")
        # Lets the Gmail popup (no header possible) prove the same login for a few minutes.
        request._request.fiveducks_firebase_user_id = user.pk
        return user, "firebase"

    def authenticate_header(self, request):
        return f'{self.keyword} realm="api"'


def gmail_cookie_value(user_id: int) -> str:
    return signing.TimestampSigner(salt=GMAIL_COOKIE_SALT).sign(str(user_id))


class GmailPopupCookieAuthentication(authentication.BaseAuthentication):
    """The cookie set after a Firebase login, for the Gmail popup's own routes only."""

    def authenticate(self, request):
        raw = request.COOKIES.get(GMAIL_COOKIE)
        if not raw:
            return None
        try:
            user_id = signing.TimestampSigner(salt=GMAIL_COOKIE_SALT).unsign(
                raw, max_age=GMAIL_COOKIE_MAX_AGE
            )
        except signing.BadSignature:
            return None  # expired or forged: as if absent (the popup then asks to log in)
        user = _usable(first_sight.find_or_import_user(user_id=int(user_id)))
        if user is None:
            return None
        enforce_same_origin(request)
        return user, "gmail-popup-cookie"
