from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services
from accounts.serializers import MeSerializer, TokenRequestSerializer, TokenSerializer
from fivedocks.throttling import SharedScopedRateThrottle


class MeView(APIView):
    """The authenticated caller's own account."""

    @extend_schema(responses=MeSerializer)
    def get(self, request: Request) -> Response:
        return Response(MeSerializer(request.user).data)


class TokenView(APIView):
    """Obtain (POST) or revoke (DELETE) the caller's API key for `Authorization: Token <key>`.

    POST while signed in (a session or the current key), or with `email` and `password`, issues a
    new key and revokes the previous one; the key is in this answer only. DELETE revokes it.
    """

    throttle_classes = [SharedScopedRateThrottle]
    throttle_scope = "auth-token"

    def get_permissions(self):
        return [AllowAny()] if self.request.method == "POST" else super().get_permissions()

    @extend_schema(
        request=TokenRequestSerializer,
        responses={
            201: TokenSerializer,
            401: OpenApiResponse(description="Not signed in, or wrong credentials"),
        },
    )
    def post(self, request: Request) -> Response:
        user = request.user if request.user.is_authenticated else None
        if user is None:
            payload = TokenRequestSerializer(data=request.data)
            payload.is_valid(raise_exception=True)
            data = payload.validated_data
            if not data.get("email") or not data.get("password"):
                raise exceptions.NotAuthenticated("Sign in, or send email and password.")
            user = authenticate(request._request, email=data["email"], password=data["password"])
            if user is None:
                raise exceptions.AuthenticationFailed("Wrong email or password.")
        key = services.issue_api_token(user=user)
        return Response(TokenSerializer({"token": key}).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None, 404: OpenApiResponse(description="No key to revoke")})
    def delete(self, request: Request) -> Response:
        if not services.revoke_api_token(user=request.user):
            return Response(
                {"status": 404, "code": "not_found", "detail": "You have no API token."},
                status=status.HTTP_404_NOT_FOUND,
            )
        return Response(status=status.HTTP_204_NO_CONTENT)
