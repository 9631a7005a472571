"""Log lines carry the request id; JSON lines when stderr is not a terminal."""

from __future__ import annotations

import logging
import re
import sys

from pythonjsonlogger.json import JsonFormatter

from fivedocks import request_context

# Belt and braces: whatever a library logs, token-like strings never reach a log line.
_SECRET_PATTERNS = [
    re.compile(r"(ya29\.)[A-Za-z0-9._-]+"),  # Google access tokens
    re.compile(r"(1//)[A-Za-z0-9._-]+"),  # Google refresh tokens
    re.compile(r"((?:sk|rk|whsec)_(?:test|live)?_?)[A-Za-z0-9]+"),  # Stripe keys and secrets
    re.compile(r"(Authorization: (?:Token|Bearer) )\S+", re.IGNORECASE),
]


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1[redacted]", text)
    return text


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_context.request_id.get()
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


class JsonLinesFormatter(JsonFormatter):
    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )


def formatter_name() -> str:
    return "text" if sys.stderr.isatty() else "json"
