"""OpenAPI generation: every operation documents the errors it can really answer, in one shape.

drf-spectacular documents what a view's `extend_schema` says. The answers that come from DRF's
machinery rather than the view (401 without credentials, 403 from a permission or a missing CSRF
token, 400 for invalid input, 404 for a page past the end, 415, 429 from a throttle, 503 from a
cutover write freeze) were missing, and declared errors had no body schema. `AutoSchema` adds
them from the view's own authentication, permission, parser, pagination and throttle classes,
each with the `Error` body of fivedocks.api.
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import AllowAny

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class ErrorSerializer(serializers.Serializer):
    """The one error body of the API (fivedocks.api.error_body)."""

    status = serializers.IntegerField(help_text="The HTTP status code, repeated.")
    code = serializers.CharField(help_text="A machine-readable code, e.g. `insufficient_credits`.")
    detail = serializers.CharField(help_text="A human-readable message.")
    fields = serializers.DictField(
        child=serializers.JSONField(),
        required=False,
        help_text="Validation errors only: field name -> list of messages.",
    )

    class Meta:
        ref_name = "Error"


class AutoSchema(SpectacularAutoSchema):
    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        responses = operation["responses"]
        for code, response in responses.items():
            if code[0] in "45" and "content" not in response:
                declared = OpenApiResponse(ErrorSerializer, description=response.get("description", ""))
                responses[code] = self._get_response_for_code(declared, code)
        for code, description in self._implied_errors(operation).items():
            if code not in responses:
                implied = OpenApiResponse(ErrorSerializer, description=description)
                responses[code] = self._get_response_for_code(implied, code)
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _implied_errors(self, operation: dict) -> dict[str, str]:
        view, method = self.view, self.method
        parameters = operation.get("parameters", [])
        errors: dict[str, str] = {}
        if not all(isinstance(p, AllowAny) for p in view.get_permissions()):
            if view.get_authenticators():
                errors["401"] = "No credentials, or invalid ones."
            errors["403"] = "Not allowed (e.g. staff only), or a session request without a CSRF token."
        if "requestBody" in operation or any(p["in"] == "query" for p in parameters):
            errors["400"] = "Invalid input; `fields` says which."
        if "requestBody" in operation and view.get_parsers():
            errors["415"] = "Unsupported request content type."
        if any(p["in"] == "path" for p in parameters):
            errors["404"] = "Not found."
        if self._is_list_view() and self._get_paginator():
            errors["404"] = "Not found, or a page past the end."
        if view.get_throttles():
            errors["429"] = "Too many requests; `Retry-After` says when to try again."
        if method in UNSAFE_METHODS and self._freezable():
            errors["503"] = "Writes to this domain are paused during a cutover; see `Retry-After`."
        return errors

    def _freezable(self) -> bool:
        """The API of a domain that can be frozen (its services refuse writes while frozen)."""
        # Local (Django's app loading): cutover.public imports models, and DRF may import this
        # module (its DEFAULT_SCHEMA_CLASS) before the app registry is ready.
        from cutover.public import Domain

        parts = self.path.split("/", 3)
        return len(parts) > 2 and parts[1] == "api" and parts[2] in Domain.values
