"""schemathesis against the live server's own OpenAPI schema, as an ordinary user and as staff.

Every operation of /api/schema/ gets generated valid and invalid input (bounded: a small,
deterministic number of examples each, so the whole run stays short and reproducible). On every
answer: no 5xx; every 4xx in the one error shape; status code, content type and body as the
schema declares. A failure here is a product bug (schema, validation or error handling).
"""

from __future__ import annotations

import json
import os

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.liveserver import LiveServer

# Examples per operation and role in the fuzzing phase: 40 keeps the whole run near a minute
# on a 2-core machine. FUZZ_MAX_EXAMPLES=500 digs deeper locally; FUZZ_SEED changes the inputs.
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "40"))
SEED = int(os.environ.get("FUZZ_SEED", "20261125"))


def _legacy_paths() -> frozenset[str]:
    """The platform's own routes answering its own error bodies (fiveducks.legacy): exempt from
    the one error shape; response_schema_conformance checks their documented bodies instead."""
    from fiveducks.legacy.base import LegacyView
    from fiveducks.legacy_urls import urlpatterns

    return frozenset(
        "/" + str(p.pattern)
        for p in urlpatterns
        if issubclass(getattr(p.callback, "view_class", object), LegacyView)
    )


LEGACY_PATHS = _legacy_paths()


def error_shape(ctx, response, case) -> None:
    """Every 4xx is JSON {"status", "code", "detail", "fields"?} with status = the HTTP status."""
    if not 400 <= response.status_code < 500:
        return
    if case.operation.path in LEGACY_PATHS:
        return
    try:
        body = json.loads(response.content)
    except ValueError:
        shown = response.content[:200]
        raise AssertionError(f"{response.status_code} answer is not JSON: {shown!r}") from None
    assert isinstance(body, dict), f"error body is not an object: {body!r}"
    missing = {"status", "code", "detail"} - body.keys()
    assert not missing, f"error body lacks {sorted(missing)}: {body!r}"
    status = response.status_code
    assert body["status"] == status, f"body status {body['status']} != HTTP {status}"
    assert isinstance(body["code"], str) and body["code"], f"code must be a non-empty string: {body!r}"
    assert isinstance(body["detail"], str), f"detail must be a string: {body!r}"
    extra = body.keys() - {"status", "code", "detail", "fields"}
    assert not extra, f"unexpected keys {sorted(extra)} in error body: {body!r}"
    if "fields" in body:
        assert isinstance(body["fields"], dict), f"fields must be an object: {body!r}"


def refused_by_http_server(response) -> bool:
    """gunicorn's own answer to a request it will not parse (a URL over its 4 KiB request-line
    limit, a header it rejects): 400/414/431 in its HTML, before Django runs. Every answer of
    the app carries X-Request-ID (fivedocks.middleware); these do not."""
    return response.status_code in (400, 414, 431) and "X-Request-ID" not in response.headers


def app_answers_only(check):
    """Run `check` on the app's answers; a refusal by the HTTP server is not the app's to shape."""

    def wrapped(ctx, response, case):
        if refused_by_http_server(response):
            return None
        return check(ctx, response, case)

    wrapped.__name__ = check.__name__
    return wrapped


CHECKS = [
    not_a_server_error,  # on every answer, the HTTP server's too
    *map(app_answers_only, [status_code_conformance, content_type_conformance, response_schema_conformance]),
    app_answers_only(error_shape),
]


@pytest.fixture(scope="session")
def api_schema(outside_server: LiveServer):
    config = schemathesis.Config.from_dict(
        {
            "base-url": outside_server.url,
            "seed": SEED,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
            "phases": {"stateful": {"enabled": False}},
        }
    )
    return schemathesis.openapi.from_url(f"{outside_server.url}/api/schema/?format=json", config=config)


schema = schemathesis.pytest.from_fixture("api_schema")
# POST/DELETE /api/auth/token/ replace and revoke the caller's own key: fuzzed on their own, with
# a key of their own per case, so the shared seeded keys stay valid for every other operation.
TOKEN_PATH = "/api/auth/token/"
shared = schema.exclude(path=TOKEN_PATH)

_fuzz_settings = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.fuzz
@shared.parametrize()
@_fuzz_settings
def test_api_as_ordinary_user(case, seed):
    case.call_and_validate(headers={"Authorization": f"Token {seed['member']['token']}"}, checks=CHECKS)


@pytest.mark.fuzz
@shared.parametrize()
@_fuzz_settings
def test_api_as_staff(case, seed):
    case.call_and_validate(headers={"Authorization": f"Token {seed['staff']['token']}"}, checks=CHECKS)


@pytest.mark.fuzz
@schema.include(path=TOKEN_PATH).parametrize()
@_fuzz_settings
def test_the_token_endpoint(case, seed, outside_server: LiveServer):
    holder = seed["keyholder"]
    signed_in = requests.post(
        f"{outside_server.url}{TOKEN_PATH}",
        json={"email": holder["email"], "password": holder["password"]},
        timeout=10,
    )
    assert signed_in.status_code == 201, signed_in.text
    key = signed_in.json()["token"]
    case.call_and_validate(headers={"Authorization": f"Token {key}"}, checks=CHECKS)
