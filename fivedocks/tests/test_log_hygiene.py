"""Log lines never carry OAuth codes or states, and django.request lines carry the request id."""

import io
import json
import logging

import pytest

from fivedocks.logging import redact
from gmail.testing import fake_google  # noqa: F401 - the stand-in Google, as a fixture


@pytest.fixture
def console():
    """The configured console handler (with its filters), writing JSON lines to a buffer."""
    root = logging.getLogger()
    handler = next(h for h in root.handlers if h.get_name() == "console")
    buffer = io.StringIO()
    old_stream, old_level, old_formatter = handler.stream, root.level, handler.formatter
    handler.setStream(buffer)
    from fivedocks.logging import JsonLinesFormatter

    handler.setFormatter(JsonLinesFormatter())
    root.setLevel(logging.DEBUG)
    yield buffer
    handler.setStream(old_stream)
    handler.setFormatter(old_formatter)
    root.setLevel(old_level)


@pytest.mark.django_db
def test_the_oauth_callbacks_code_and_state_never_reach_a_log_line(console, user_client, fake_google):  # noqa: F811
    connect = user_client.get("/api/gmail/connect/").json()["authorization_url"]
    query = fake_google.consent(connect)
    response = user_client.get("/api/gmail/callback/", query)
    assert response.status_code == 200
    # A replay of the same redirect is refused (state used) and logged as a bad request.
    assert user_client.get("/api/gmail/callback/", query).status_code == 400
    logging.getLogger("oauthlib.test").debug(
        "token request body: code=%s&state=%s", query["code"], query["state"]
    )
    logging.getLogger("x").info("params %s", {"code": query["code"], "state": query["state"]})
    text = console.getvalue()
    assert text, "nothing was logged"
    leaks = [line for line in text.splitlines() if query["code"] in line or query["state"] in line]
    assert not leaks


def test_redact_covers_query_strings_and_dicts():
    assert (
        redact("GET /cb?code=4/0Abc-12&state=xyz HTTP/1.1")
        == "GET /cb?code=[redacted]&state=[redacted] HTTP/1.1"
    )
    assert "s3cret" not in redact("{'code': 's3cret', 'state': \"s3cret\"}")
    assert redact("error_code=5 status=ok") == "error_code=5 status=ok"


@pytest.mark.django_db
def test_django_request_lines_carry_the_request_id(console, user_client):
    response = user_client.get("/api/no-such-thing/", HTTP_X_REQUEST_ID="req-abc-123")
    assert response.status_code == 404 and response["X-Request-ID"] == "req-abc-123"
    lines = [json.loads(line) for line in console.getvalue().splitlines() if line.strip()]
    request_lines = [line for line in lines if line.get("logger") == "django.request"]
    assert request_lines, lines
    assert all(line["request_id"] == "req-abc-123" for line in request_lines)
