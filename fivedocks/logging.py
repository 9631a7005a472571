"""Log lines carry the request id; JSON lines when stderr is not a terminal."""

from __future__ import annotations

import logging
import re
import sys

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from fivedocks import request_context

# Belt and braces: whatever a library logs, token-like strings never reach a log line.
_SECRET_PATTERNS = [
    re.compile(r"(ya29\.)[A-Za-z0-9._-]+"),  # Google access tokens
    re.compile(r"(1//)[A-Za-z0-9._-]+"),  # Google refresh tokens
    re.compile(r"((?:sk|rk|whsec)_(?:test|live)?_?)[A-Za-z0-9]+"),  # Stripe keys and secrets
    re.compile(r"(Authorization: (?:Token|Bearer) )\S+", re.IGNORECASE),
    # OAuth authorization codes, states and PKCE verifiers: in a query string or form body
    # (`code=...`) and in a dict's repr (`'code': '...'`), whoever logs them (oauthlib, urllib3).
    re.compile(
        r"((?<![A-Za-z0-9_])(?:code|state|code_verifier|refresh_token|access_token|id_token)=)[^&\s'\"]+"
    ),
    re.compile(r"(Generated new state )\S+"),  # requests-oauthlib at DEBUG
    re.compile(
        r"""(['"](?:code|state|code_verifier|refresh_token|access_token|id_token)['"]\s*:\s*['"])[^'"]+"""
    ),
]


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1[redacted]", text)
    return text


class RequestIdFilter(logging.Filter):
    """The current request's id; for `django.request` lines, which Django writes after the
    middleware has returned (the context is reset by then), the id kept on the request itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_context.request_id.get()
        if request_id == "-":
            request_id = getattr(getattr(record, "request", None), "request_id", None) or request_id
        record.request_id = request_id
        return True


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        # Tracebacks and arguments too: the whole line is redacted, not just the message.
        return redact(super().format(record))


class JsonLinesFormatter(JsonFormatter):
    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            # Django's `request` extra would print the full URL, query string included.
            reserved_attrs=[*RESERVED_ATTRS, "request"],
        )

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def formatter_name() -> str:
    return "text" if sys.stderr.isatty() else "json"
