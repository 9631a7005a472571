"""What every legacy view shares: the platform's error bodies and their OpenAPI description.

The legacy paths are the one exemption from the API's one error shape: the client reads the
platform's bodies (`401 {"message": "Authentication required"}`, ...). A view says which of the
platform's 401 bodies its route had; every other error is `{"message": ...}` unless the view
shapes a domain error itself (`legacy_error`). Writes frozen by a cutover (503, raised by the
services) keep the API's shape and `Retry-After`, as the schema documents for every write.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from fivedocks.errors import DomainError, WritesFrozen
from fiveducks.schema import LegacyAutoSchema

# The platform's three 401 bodies (../shared/platform-api.md §1).
AUTH_A = {"message": "Authentication required"}
AUTH_B = {"message": "Authentication required", "details": "Please log in to access this resource"}
AUTH_C = {"error": "Not authenticated"}


class MessageSerializer(serializers.Serializer):
    message = serializers.CharField()

    class Meta:
        ref_name = "LegacyMessage"


class AuthBSerializer(serializers.Serializer):
    message = serializers.CharField()
    details = serializers.CharField()

    class Meta:
        ref_name = "LegacyAuthRequired"


class ErrorFieldSerializer(serializers.Serializer):
    error = serializers.CharField()

    class Meta:
        ref_name = "LegacyError"


class LegacyView(APIView):
    """An APIView answering errors with the platform's bodies."""

    schema = LegacyAutoSchema()
    unauthenticated_body: dict = AUTH_A
    # Errors other than 401 are {"message": ...}; routes whose platform errors were {"error": ...}
    # (Gmail's) say so here.
    error_key = "message"

    def legacy_error(self, exc: DomainError) -> Response | None:
        """A view's own answer to a domain error; None: `{message: <the error's message>}`."""
        return None

    def handle_exception(self, exc):
        if isinstance(exc, WritesFrozen):  # the API's 503 body and Retry-After (documented so)
            return super().handle_exception(exc)
        if isinstance(exc, DomainError):
            shaped = self.legacy_error(exc)
            if shaped is not None:
                return shaped
        response = super().handle_exception(exc)
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            response.data = dict(self.unauthenticated_body)
            response.status_code = 401
        elif isinstance(exc, DomainError):
            response.data = {self.error_key: exc.message}
        elif isinstance(exc, exceptions.APIException):
            response.data = {self.error_key: _text(exc.detail)}
        return response


def _text(detail) -> str:
    if isinstance(detail, list) and detail:
        return _text(detail[0])
    if isinstance(detail, dict) and detail:
        return _text(next(iter(detail.values())))
    return str(detail)


def unauthenticated(body: dict) -> OpenApiResponse:
    serializer = {
        id(AUTH_A): MessageSerializer,
        id(AUTH_B): AuthBSerializer,
        id(AUTH_C): ErrorFieldSerializer,
    }
    return OpenApiResponse(serializer[id(body)], description=f"Not logged in: `{body}`")


def message(description: str) -> OpenApiResponse:
    return OpenApiResponse(MessageSerializer, description=description)


def error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorFieldSerializer, description=description)


def common_errors(auth_body: dict, *, unsafe: bool = False, error_key: str = "message") -> dict:
    """401, 403 (and for writes 400 unreadable body, 415) in the platform's shapes."""
    shaped = message if error_key == "message" else error
    errors = {
        401: unauthenticated(auth_body),
        403: shaped("Refused: a cross-site request with a cookie login, or not allowed"),
    }
    if unsafe:
        errors[400] = shaped("The body is not readable JSON, or a required field is missing")
        errors[415] = shaped("The body is not JSON")
    return errors
