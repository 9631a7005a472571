"""Gmail's domain errors (the API turns them into the common error body)."""

from __future__ import annotations

from fivedocks.errors import Conflict, DomainError, NotFound, UpstreamError


class GmailNotConnected(NotFound):
    """No Gmail account is connected."""

    code = "gmail_not_connected"


class GmailReconnectRequired(Conflict):
    """Google no longer accepts this Gmail connection: reconnect Gmail (GET /api/gmail/connect/)."""

    code = "gmail_reconnect_required"


class GmailStateMismatch(DomainError):
    """The OAuth callback does not match a connection started in this session; start again."""

    code = "gmail_state_mismatch"


class GmailAuthorizationDenied(DomainError):
    """Google did not authorise the connection (the consent screen was declined or failed)."""

    code = "gmail_authorization_denied"


class GmailUpstreamError(UpstreamError):
    """Google refused the request or could not be reached."""

    code = "gmail_upstream_error"
