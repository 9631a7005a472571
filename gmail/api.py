"""The Gmail connection API: connect (OAuth), callback, status, disconnect.

The OAuth state and PKCE verifier live in the Django session of the browser that asked for the
authorization URL, together with the id of the user who asked. The callback is a redirect from
Google (no Authorization header), so it accepts that session as proof of who started the flow;
when the callback is authenticated too, it must be the same user.
"""

from __future__ import annotations

from django.utils.crypto import constant_time_compare
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gmail import oauth, selectors, services
from gmail.errors import GmailAuthorizationDenied, GmailStateMismatch
from gmail.serializers import AuthorizationUrlSerializer, CallbackQuerySerializer, GmailStatusSerializer

SESSION_KEY = "gmail_oauth"


def _status_body(token) -> dict:
    return GmailStatusSerializer(GmailStatusSerializer.for_connection(token)).data


class ConnectView(APIView):
    """Start connecting Gmail: the Google consent URL to send the browser to."""

    @extend_schema(responses=AuthorizationUrlSerializer)
    def get(self, request: Request) -> Response:
        auth = oauth.authorization_request()
        request.session[SESSION_KEY] = {
            "state": auth.state,
            "code_verifier": auth.code_verifier,
            "user_id": request.user.pk,
        }
        return Response(AuthorizationUrlSerializer({"authorization_url": auth.url}).data)


class CallbackView(APIView):
    """Google's redirect after consent: exchange the code and store the (encrypted) tokens."""

    permission_classes = [AllowAny]

    @extend_schema(
        parameters=[
            OpenApiParameter("code", str, description="the authorization code from Google"),
            OpenApiParameter("state", str, description="the state given by /api/gmail/connect/"),
            OpenApiParameter("error", str, description="set by Google when consent failed"),
        ],
        responses={
            200: GmailStatusSerializer,
            400: OpenApiResponse(description="state mismatch, consent denied or no code"),
            502: OpenApiResponse(description="Google refused the code or could not be reached"),
        },
    )
    def get(self, request: Request) -> Response:
        query = CallbackQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        pending = request.session.get(SESSION_KEY) or {}
        state = params.get("state") or ""
        if not (state and pending.get("state") and constant_time_compare(state, pending["state"])):
            raise GmailStateMismatch()
        user = request.user if request.user.is_authenticated else None
        if user is not None and user.pk != pending.get("user_id"):
            raise GmailStateMismatch()
        # The state is single-use from here on, whatever happens next.
        del request.session[SESSION_KEY]
        if user is None:
            user = selectors.active_user(user_id=pending.get("user_id"))
            if user is None:
                raise GmailStateMismatch()
        if params.get("error"):
            raise GmailAuthorizationDenied(f"Google did not authorise the connection ({params['error']}).")
        if not params.get("code"):
            raise GmailAuthorizationDenied("Google's redirect carried no authorization code.")
        token = services.complete_connection(
            user=user, code=params["code"], state=state, code_verifier=pending.get("code_verifier")
        )
        return Response(_status_body(token))


class StatusView(APIView):
    """Whether the caller's Gmail is connected: address, status, expiry, scopes (never a token)."""

    @extend_schema(responses=GmailStatusSerializer)
    def get(self, request: Request) -> Response:
        return Response(_status_body(selectors.connection_for(user=request.user)))


class ConnectionView(APIView):
    """Disconnect Gmail: revoke the grant at Google, then delete the stored tokens."""

    @extend_schema(
        responses={
            204: None,
            404: OpenApiResponse(description="no Gmail connected"),
            502: OpenApiResponse(description="Google could not revoke; the connection is kept"),
        }
    )
    def delete(self, request: Request) -> Response:
        services.disconnect(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
