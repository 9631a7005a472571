"""Gmail at the platform's paths: the popup OAuth flow and the status routes (401 body B).

The client opens `/api/gmail/auth?userId=N` in a popup. Unlike the platform, the `userId`
parameter alone is never trusted: the popup must carry the caller's login, the platform's session
cookie or fivedocks' own short-lived Gmail cookie (set on a Firebase-authenticated call to a
Gmail route, see fiveducks.middleware), and it must name that same user. The OAuth state is
signed and carries a nonce that is also kept, with the PKCE verifier and the user id, in this
browser's session: the callback accepts only that browser's own pending flow, once.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.core import signing
from django.http import HttpResponse, HttpResponseRedirect
from django.utils.crypto import constant_time_compare
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from fivedocks.errors import DomainError
from fiveducks.authentication import GmailPopupCookieAuthentication
from fiveducks.legacy.base import AUTH_B, LegacyView, common_errors, error
from gmail import oauth, selectors, services
from gmail.models import GmailToken

TAG = ["platform: gmail"]
SESSION_KEY = "fiveducks_gmail_oauth"
STATE_SALT = "fiveducks.gmail-state"
STATE_MAX_AGE = 600  # seconds between opening the popup and Google's redirect

CALLBACK_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Gmail connected</title></head>
<body><p>Gmail is connected. You can close this window.</p>
<script>
  if (window.opener) {
    window.opener.postMessage({type: "GMAIL_AUTH_SUCCESS"}, window.location.origin);
    window.close();
  } else {
    window.location.href = "/outreach";
  }
</script></body></html>
"""


class StatusSerializer(serializers.Serializer):
    connected = serializers.BooleanField()
    authUrl = serializers.CharField(allow_null=True)

    class Meta:
        ref_name = "LegacyGmailStatus"


class AuthStatusSerializer(serializers.Serializer):
    authorized = serializers.BooleanField()
    hasValidToken = serializers.BooleanField()
    connected = serializers.BooleanField()

    class Meta:
        ref_name = "LegacyGmailAuthStatus"


class GmailUserSerializer(serializers.Serializer):
    email = serializers.CharField(allow_null=True)
    displayName = serializers.CharField(allow_null=True)

    class Meta:
        ref_name = "LegacyGmailUser"


def _connected(user) -> tuple[bool, GmailToken | None]:
    token = selectors.connection_for(user=user)
    return token is not None and token.status == GmailToken.Status.ACTIVE, token


class GmailLegacyView(LegacyView):
    unauthenticated_body = AUTH_B
    error_key = "error"


class GmailStatusView(GmailLegacyView):
    """GET /api/gmail/status: `{connected, authUrl}` (the popup's address when not connected)."""

    @extend_schema(tags=TAG, responses={200: StatusSerializer, **common_errors(AUTH_B, error_key="error")})
    def get(self, request: Request) -> Response:
        connected, _ = _connected(request.user)
        auth_url = None if connected else f"/api/gmail/auth?userId={request.user.pk}"
        return Response({"connected": connected, "authUrl": auth_url})


class GmailAuthStatusView(GmailLegacyView):
    """GET /api/gmail/auth-status: the same answer under the three names the client reads.

    A connection stays authorized while it is active: fivedocks refreshes expired access tokens
    (the platform stopped at the first expiry).
    """

    @extend_schema(
        tags=TAG, responses={200: AuthStatusSerializer, **common_errors(AUTH_B, error_key="error")}
    )
    def get(self, request: Request) -> Response:
        connected, _ = _connected(request.user)
        return Response({"authorized": connected, "hasValidToken": connected, "connected": connected})


class GmailUserView(GmailLegacyView):
    """GET /api/gmail/user: the connected mailbox's address and name (null when not connected)."""

    @extend_schema(tags=TAG, responses={200: GmailUserSerializer, **common_errors(AUTH_B, error_key="error")})
    def get(self, request: Request) -> Response:
        connected, token = _connected(request.user)
        if not connected:
            return Response({"email": None, "displayName": None})
        return Response({"email": token.email or None, "displayName": token.display_name or None})


def _redirect_uri(request: Request) -> str:
    return settings.PLATFORM_GMAIL_REDIRECT_URI or request.build_absolute_uri("/api/gmail/callback")


class GmailAuthView(GmailLegacyView):
    """GET /api/gmail/auth?userId=N: the popup's start, a redirect to Google's consent page."""

    authentication_classes = [*api_settings.DEFAULT_AUTHENTICATION_CLASSES, GmailPopupCookieAuthentication]

    @extend_schema(
        tags=TAG,
        parameters=[OpenApiParameter("userId", str, required=True, description="The caller's own user id")],
        responses={
            302: OpenApiResponse(description="To Google's consent page"),
            400: error("`userId` is not a user id"),
            **common_errors(AUTH_B, error_key="error"),
        },
    )
    def get(self, request: Request) -> HttpResponse:
        raw = request.query_params.get("userId", "")
        if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
            return Response({"error": "Invalid user ID parameter"}, status=400)
        if int(raw) != request.user.pk:
            return Response({"error": "The userId is not the logged-in user's"}, status=403)
        nonce = secrets.token_urlsafe(24)
        state = signing.dumps({"u": request.user.pk, "n": nonce}, salt=STATE_SALT)
        redirect_uri = _redirect_uri(request)
        auth = oauth.authorization_request(state=state, redirect_uri=redirect_uri)
        request.session[SESSION_KEY] = {
            "nonce": nonce,
            "user_id": request.user.pk,
            "code_verifier": auth.code_verifier,
            "redirect_uri": redirect_uri,
        }
        return HttpResponseRedirect(auth.url)


class GmailCallbackView(GmailLegacyView):
    """GET /api/gmail/callback?code&state: Google's redirect; answers the page that tells the
    opener (at this origin only) and closes."""

    authentication_classes = [*api_settings.DEFAULT_AUTHENTICATION_CLASSES, GmailPopupCookieAuthentication]
    permission_classes = [AllowAny]

    @extend_schema(
        tags=TAG,
        parameters=[
            OpenApiParameter("code", str, description="The authorization code from Google"),
            OpenApiParameter("state", str, description="The state /api/gmail/auth gave Google"),
            OpenApiParameter("error", str, description="Set by Google when consent failed"),
        ],
        responses={
            (200, "text/html"): OpenApiResponse(OpenApiTypes.STR, description="The page closing the popup"),
            400: error("No code, a denied consent, or a state that is not this browser's pending flow"),
            401: common_errors(AUTH_B)[401],
            502: error("Google refused the code or could not be reached"),
        },
    )
    def get(self, request: Request) -> HttpResponse:
        params = request.query_params
        if params.get("error"):
            self._forget(request)
            return Response({"error": "Gmail authorization was not granted"}, status=400)
        code, state = params.get("code") or "", params.get("state") or ""
        if not code:
            return Response({"error": "Authorization code missing"}, status=400)
        pending = request.session.get(SESSION_KEY) or {}
        try:
            claims = signing.loads(state, salt=STATE_SALT, max_age=STATE_MAX_AGE)
        except signing.BadSignature:
            claims = None
        valid = (
            isinstance(claims, dict)
            and isinstance(pending, dict)
            and pending.get("nonce")
            and constant_time_compare(str(claims.get("n")), str(pending["nonce"]))
            and claims.get("u") == pending.get("user_id")
            and (not request.user.is_authenticated or request.user.pk == claims.get("u"))
        )
        if not valid:
            return Response({"error": "Invalid state parameter"}, status=400)
        self._forget(request)  # single use, whatever happens next
        user = selectors.active_user(user_id=claims["u"])
        if user is None:
            return Response({"error": "Invalid state parameter"}, status=400)
        services.complete_connection(
            user=user,
            code=code,
            state=state,
            code_verifier=pending.get("code_verifier"),
            redirect_uri=pending.get("redirect_uri"),
        )
        return HttpResponse(CALLBACK_PAGE, content_type="text/html; charset=utf-8")

    def legacy_error(self, exc: DomainError) -> Response | None:
        if exc.status_code == 502:
            return Response({"error": "Failed to complete Gmail authorization"}, status=502)
        return None

    @staticmethod
    def _forget(request: Request) -> None:
        request.session.pop(SESSION_KEY, None)
