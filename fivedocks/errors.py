"""Domain errors: services raise them, the API turns them into one error shape."""

from __future__ import annotations


class DomainError(Exception):
    """A business rule said no. `status_code` and `code` shape the HTTP answer."""

    status_code = 400
    code = "invalid"

    def __init__(self, message: str = "", **details):
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.message = message or (self.__class__.__doc__ or self.code).strip()
        self.details = details


class NotFound(DomainError):
    """Not found."""

    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    """The request conflicts with the current state."""

    status_code = 409
    code = "conflict"


class UpstreamError(DomainError):
    """An external service (Stripe, Google, the KV store) failed or refused."""

    status_code = 502
    code = "upstream_error"


class WritesFrozen(DomainError):
    """Writes are frozen for this domain during a cutover; try again shortly."""

    status_code = 503
    code = "writes_frozen"


class PermissionRequired(DomainError):
    """You do not have permission to do this."""

    status_code = 403
    code = "permission_denied"
