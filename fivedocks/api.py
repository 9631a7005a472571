"""API conventions shared by every app: pagination and the one error-body shape.

Every 4xx/5xx answer from the API has the body
``{"status": <int>, "code": "<machine code>", "detail": "<human message>", "fields": {...}}``
where ``fields`` appears only on validation errors (field name -> list of messages).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import (
    DisallowedHost,
    PermissionDenied,
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from fivedocks.errors import DomainError


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


def error_body(status_code: int, code: str, detail: str, fields: Any = None) -> dict:
    body = {"status": status_code, "code": code, "detail": detail}
    if fields:
        body["fields"] = fields
    return body


def _flatten(detail: Any) -> Any:
    if isinstance(detail, list):
        return [_flatten(d) for d in detail]
    if isinstance(detail, dict):
        return {k: _flatten(v) for k, v in detail.items()}
    return str(detail)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, DomainError):
        response = Response(
            error_body(exc.status_code, exc.code, exc.message, exc.details or None),
            status=exc.status_code,
        )
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            response["Retry-After"] = str(retry_after)
        return response
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        fields = _flatten(detail) if isinstance(detail, dict) else {"non_field_errors": _flatten(detail)}
        message = "Invalid input."
        if isinstance(detail, dict):
            non_field = detail.get("non_field_errors")
            if non_field:
                message = str(non_field[0])
        elif isinstance(detail, list) and detail:
            message = str(detail[0])
        response.data = error_body(response.status_code, "invalid", message, fields)
    elif isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        response.data = error_body(response.status_code, code, str(exc.detail))
    return response


def json_error(request, status_code: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse(error_body(status_code, code, detail), status=status_code)


def bad_request(request, exception=None):
    """Django's 400s (a body too large, too many fields, a bad Host header, other suspicious
    requests) in the one error shape under /api/. Never reads the Host header (it may be bad)."""
    if request.path.startswith("/api/"):
        if isinstance(exception, RequestDataTooBig):
            return json_error(request, 413, "request_too_large", "The request body is too large.")
        if isinstance(exception, TooManyFieldsSent | TooManyFilesSent):
            return json_error(request, 400, "too_many_fields", "The request has too many fields.")
        if isinstance(exception, DisallowedHost):
            return json_error(request, 400, "bad_host", "The Host header is not one this server answers to.")
        return json_error(request, 400, "bad_request", "Bad request.")
    from django.views.defaults import bad_request as default_bad_request

    return default_bad_request(request, exception)


def permission_denied(request, exception=None):
    if request.path.startswith("/api/"):
        return json_error(request, 403, "permission_denied", "You do not have permission to do this.")
    from django.views.defaults import permission_denied as default_permission_denied

    return default_permission_denied(request, exception)


def not_found(request, exception=None):
    if request.path.startswith("/api/"):
        return json_error(request, status.HTTP_404_NOT_FOUND, "not_found", "Not found.")
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def server_error(request):
    if request.path.startswith("/api/"):
        return json_error(request, 500, "server_error", "Internal server error.")
    from django.views.defaults import server_error as default_server_error

    return default_server_error(request)
