"""Service secrets, Firebase ID tokens and platform sessions through the credential cache.

A warm request runs no query (neither on fivedocks' database nor on the platform's); a revoked,
rotated or disabled credential, a changed scope or a deactivated user is seen on the next request;
a Firebase entry never outlives the token's `exp`, a platform session's never 5 s nor its
`expire`; the cache holds no credential, under its keys or in its values.
"""

from __future__ import annotations

import datetime as dt
import pickle
import time
from contextlib import contextmanager
from urllib.parse import unquote

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient, APIRequestFactory

from accounts import credential_cache
from accounts.services import issue_api_token
from accounts.tests.factories import UserFactory
from credits import services as credit_services
from fiveducks import express_session, firebase, login_cache, platform_db, services
from fiveducks.authentication import ServiceClientAuthentication
from fiveducks.models import ServiceSecret
from fiveducks.tests.conftest import bearer

pytestmark = pytest.mark.django_db(transaction=True)  # on_commit evictions run as in production

HOLDS = "/api/service/credits/holds/"
CREDITS = "/api/credits/"


def _sql(queries) -> list[str]:
    return [q["sql"] for q in queries.captured_queries]


@pytest.fixture
def verifications(monkeypatch) -> list[str]:
    """Counts google-auth verifications (the RSA check) of Firebase ID tokens."""
    calls: list[str] = []
    real = firebase.verify

    def counting(token: str):
        calls.append("verify")
        return real(token)

    monkeypatch.setattr(firebase, "verify", counting)
    return calls


@pytest.fixture
def platform_queries(monkeypatch) -> list[str]:
    """Every statement run on the platform's database connection."""
    seen: list[str] = []
    real = platform_db.cursor

    class Counting:
        def __init__(self, cur) -> None:
            self._cur = cur

        def execute(self, query, *args, **kwargs):
            seen.append(str(query))
            return self._cur.execute(query, *args, **kwargs)

        def __getattr__(self, name):
            return getattr(self._cur, name)

    @contextmanager
    def counting():
        with real() as cur:
            yield Counting(cur)

    monkeypatch.setattr(platform_db, "cursor", counting)
    return seen


@pytest.fixture
def clock(monkeypatch):
    """Moves `time.time` (the cache's deadlines, local memory's expiry) forward by `seconds`."""
    real = time.time
    offset = [0.0]
    monkeypatch.setattr(time, "time", lambda: real() + offset[0])

    def advance(seconds: float) -> None:
        offset[0] += seconds

    return advance


def _cached_entries() -> list[tuple[str, bytes]]:
    """Every key of the local-memory cache, with its stored (pickled) value."""
    with cache._lock:
        return [(key, cache._cache[key]) for key in list(cache._cache)]


# --- service secrets (fd_svc_...) --------------------------------------------------------------
def _service(token: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api


def test_a_warm_service_call_reads_no_secret_and_its_authentication_runs_no_query():
    issued = services.create_client(name="backend", scopes=["credits:charge"])
    api = _service(issued.token)
    assert api.post(HOLDS, {}, format="json").status_code == 400  # authenticated, bad input
    with CaptureQueriesContext(connection) as queries:
        assert api.post(HOLDS, {}, format="json").status_code == 400
    # What is left is the call's own audit row.
    assert [q for q in _sql(queries) if "service_secrets" in q or "service_clients" in q] == []
    assert any("INSERT INTO" in q and "service_calls" in q for q in _sql(queries))
    request = APIRequestFactory().post(HOLDS, HTTP_AUTHORIZATION=f"Bearer {issued.token}")
    with CaptureQueriesContext(connection) as queries:
        principal, client = ServiceClientAuthentication().authenticate(request)
    assert _sql(queries) == []
    assert (client.pk, client.name, client.scopes) == (issued.client.pk, "backend", ["credits:charge"])
    assert principal.pk == f"svc:{issued.client.pk}"


def test_with_the_cache_off_every_service_call_reads_its_secret(settings):
    settings.AUTH_CREDENTIAL_CACHE = False
    issued = services.create_client(name="backend", scopes=["credits:charge"])
    api = _service(issued.token)
    api.post(HOLDS, {}, format="json")
    with CaptureQueriesContext(connection) as queries:
        assert api.post(HOLDS, {}, format="json").status_code == 400
    assert any("service_secrets" in q for q in _sql(queries))


def test_last_use_is_still_recorded_at_most_once_a_minute():
    issued = services.create_client(name="backend", scopes=["credits:charge"])
    api = _service(issued.token)
    api.post(HOLDS, {}, format="json")
    first = ServiceSecret.objects.get(pk=issued.secret.pk).last_used_at
    assert first is not None
    with CaptureQueriesContext(connection) as queries:
        api.post(HOLDS, {}, format="json")
    assert not [q for q in _sql(queries) if q.startswith("UPDATE")]
    assert ServiceSecret.objects.get(pk=issued.secret.pk).last_used_at == first


def test_a_revoked_old_secret_is_refused_at_once_and_the_new_one_works():
    issued = services.create_client(name="backend", scopes=["credits:charge"])
    assert _service(issued.token).post(HOLDS, {}, format="json").status_code == 400
    second = services.rotate(name="backend")
    assert _service(issued.token).post(HOLDS, {}, format="json").status_code == 400  # both live
    assert _service(second.token).post(HOLDS, {}, format="json").status_code == 400
    services.revoke_old(name="backend")
    assert _service(issued.token).post(HOLDS, {}, format="json").status_code == 401
    assert _service(second.token).post(HOLDS, {}, format="json").status_code == 400


def test_disabling_the_client_or_dropping_a_scope_is_seen_at_once():
    issued = services.create_client(name="backend", scopes=["credits:charge", "gmail:token"])
    api = _service(issued.token)
    assert api.post(HOLDS, {}, format="json").status_code == 400
    services.set_scopes(name="backend", scopes=["gmail:token"])
    assert api.post(HOLDS, {}, format="json").status_code == 403
    services.set_scopes(name="backend", scopes=["credits:charge"])
    assert api.post(HOLDS, {}, format="json").status_code == 400
    services.set_disabled(name="backend", disabled=True)
    assert api.post(HOLDS, {}, format="json").status_code == 401
    services.set_disabled(name="backend", disabled=False)
    assert api.post(HOLDS, {}, format="json").status_code == 400


def test_a_wrong_secret_with_a_cached_key_id_is_refused():
    issued = services.create_client(name="backend", scopes=["credits:charge"])
    assert _service(issued.token).post(HOLDS, {}, format="json").status_code == 400
    wrong = issued.token[:-4] + ("aaaa" if not issued.token.endswith("aaaa") else "bbbb")
    assert _service(wrong).post(HOLDS, {}, format="json").status_code == 401


# --- Firebase ID tokens ----------------------------------------------------------------------
def test_a_warm_firebase_request_verifies_nothing_and_runs_no_query(firebase_certs, verifications):
    user = UserFactory(firebase_uid="uid-ann")
    credit_services.grant(user=user, amount=70, reason="test", idempotency_key="t:ann")
    api = APIClient()
    token = firebase_certs.mint(uid="uid-ann")
    assert api.get(CREDITS, **bearer(token)).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        response = api.get(CREDITS, **bearer(token))
    assert response.status_code == 200 and response.json()["balance"] == 70
    assert _sql(queries) == []
    assert verifications == ["verify"]  # the first request only


def test_with_the_cache_off_every_firebase_request_is_verified(firebase_certs, verifications, settings):
    settings.AUTH_CREDENTIAL_CACHE = False
    UserFactory(firebase_uid="uid-ben")
    token = firebase_certs.mint(uid="uid-ben")
    for _ in range(2):
        assert APIClient().get(CREDITS, **bearer(token)).status_code == 200
    assert verifications == ["verify", "verify"]


def test_a_deactivated_firebase_user_is_refused_on_the_next_request(firebase_certs):
    user = UserFactory(firebase_uid="uid-cat")
    token = firebase_certs.mint(uid="uid-cat")
    assert APIClient().get(CREDITS, **bearer(token)).status_code == 200
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert APIClient().get(CREDITS, **bearer(token)).status_code == 401
    user.is_active = True
    user.save(update_fields=["is_active"])
    assert APIClient().get(CREDITS, **bearer(token)).status_code == 200


def test_a_firebase_uid_moved_to_another_user_is_looked_up_again(firebase_certs):
    first = UserFactory(firebase_uid="uid-dan")
    token = firebase_certs.mint(uid="uid-dan")
    assert APIClient().get("/api/me/", **bearer(token)).json()["id"] == first.pk
    first.firebase_uid = None
    first.save(update_fields=["firebase_uid"])
    second = UserFactory(firebase_uid="uid-dan")
    assert APIClient().get("/api/me/", **bearer(token)).json()["id"] == second.pk


def test_a_firebase_entry_lives_until_exp_and_never_past_it(firebase_certs, settings, clock):
    settings.AUTH_CREDENTIAL_CACHE_TTL = 86400  # longer than the token: exp must bound it
    UserFactory(firebase_uid="uid-eve")
    token = firebase_certs.mint(uid="uid-eve", lifetime=600)
    exp = firebase.verify(token).expires_at
    assert APIClient().get(CREDITS, **bearer(token)).status_code == 200
    key = credential_cache.key_for(login_cache.FIREBASE, token)
    _value, deadline = cache.get(key)
    assert deadline <= exp
    assert cache._expire_info[cache.make_key(key)] <= exp + 0.05  # its clock read a moment later
    clock(exp - time.time() - 1)
    assert credential_cache.lookup(login_cache.FIREBASE, token) is not None
    clock(1)
    assert credential_cache.lookup(login_cache.FIREBASE, token) is None


def test_an_expired_firebase_token_is_refused_although_it_was_cached(firebase_certs, settings):
    settings.AUTH_CREDENTIAL_CACHE_TTL = 86400
    UserFactory(firebase_uid="uid-fay")
    token = firebase_certs.mint(uid="uid-fay", lifetime=2)
    exp = firebase.verify(token).expires_at
    api = APIClient()
    assert api.get(CREDITS, **bearer(token)).status_code == 200
    time.sleep(max(0.0, exp + 1.05 - time.time()))  # google-auth compares whole seconds
    assert api.get(CREDITS, **bearer(token)).status_code == 401


# --- the platform's sessions (connect.sid) ------------------------------------------------------
def test_a_warm_session_request_queries_neither_database(platform, platform_queries):
    user = UserFactory()
    credit_services.grant(user=user, amount=30, reason="test", idempotency_key="t:s")
    api = APIClient()
    api.cookies["connect.sid"] = platform.login(user.pk)
    assert api.get(CREDITS).status_code == 200
    assert len(platform_queries) == 1
    with CaptureQueriesContext(connection) as queries:
        response = api.get(CREDITS)
    assert response.status_code == 200 and response.json()["balance"] == 30
    assert _sql(queries) == []
    assert len(platform_queries) == 1


def test_with_the_cache_off_every_session_request_asks_the_platform(platform, platform_queries, settings):
    settings.AUTH_CREDENTIAL_CACHE = False
    api = APIClient()
    api.cookies["connect.sid"] = platform.login(UserFactory().pk)
    for _ in range(2):
        assert api.get(CREDITS).status_code == 200
    assert len(platform_queries) == 2


def test_a_session_ended_on_the_platform_is_seen_within_5_seconds(platform, platform_queries, clock):
    api = APIClient()
    api.cookies["connect.sid"] = cookie = platform.login(UserFactory().pk)
    assert api.get(CREDITS).status_code == 200
    sid = unquote(cookie)[2:].rsplit(".", 1)[0]
    with platform.connect() as conn:  # a logout on the platform: nothing tells fivedocks
        conn.execute("DELETE FROM user_sessions WHERE sid = %s", [sid])
    clock(4.5)
    assert api.get(CREDITS).status_code == 200  # the documented window
    assert len(platform_queries) == 1
    clock(0.5)
    assert api.get(CREDITS).status_code == 401
    assert len(platform_queries) == 2


def test_a_session_entry_never_outlives_its_expire(platform):
    api = APIClient()
    user = UserFactory()
    expires = time.time() + 2.0
    api.cookies["connect.sid"] = platform.login(user.pk, expires_in=dt.timedelta(seconds=2.0))
    assert api.get(CREDITS).status_code == 200
    time.sleep(max(0.0, expires + 0.2 - time.time()))  # well within the 5 s an entry may live
    assert api.get(CREDITS).status_code == 401


def test_a_session_entry_lasts_at_most_5_seconds(platform):
    api = APIClient()
    api.cookies["connect.sid"] = cookie = platform.login(UserFactory().pk)
    assert api.get(CREDITS).status_code == 200
    after = time.time()
    sid = express_session.unsign(cookie, [platform.secret])
    key = credential_cache.key_for(login_cache.PLATFORM_SESSION, sid)
    _value, deadline = cache.get(key)
    assert deadline <= after + login_cache.SESSION_MAX_AGE  # the session itself lives 7 days
    assert cache._expire_info[cache.make_key(key)] <= after + login_cache.SESSION_MAX_AGE + 0.05


def test_a_deactivated_user_with_a_live_session_is_refused_on_the_next_request(platform):
    user = UserFactory()
    api = APIClient()
    api.cookies["connect.sid"] = platform.login(user.pk)
    assert api.get(CREDITS).status_code == 200
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert api.get(CREDITS).status_code == 401


def test_a_forged_cookie_for_a_cached_session_is_refused(platform):
    api = APIClient()
    api.cookies["connect.sid"] = cookie = platform.login(UserFactory().pk)
    assert api.get(CREDITS).status_code == 200
    sid = express_session.unsign(cookie, [platform.secret])
    forged = express_session.sign(sid, "not-the-platform-secret")
    other = APIClient()
    other.cookies["connect.sid"] = forged
    assert other.get(CREDITS).status_code == 401


# --- what the cache holds ------------------------------------------------------------------------
def test_the_cache_holds_no_credential_of_any_kind(platform, firebase_certs):
    user = UserFactory(firebase_uid="uid-gus")
    api_key = issue_api_token(user=user)
    issued = services.create_client(name="backend", scopes=["credits:charge"])
    id_token = firebase_certs.mint(uid="uid-gus")
    cookie = platform.login(user.pk)
    sid = express_session.unsign(cookie, [platform.secret])
    APIClient().get(CREDITS, HTTP_AUTHORIZATION=f"Token {api_key}")
    _service(issued.token).post(HOLDS, {}, format="json")
    APIClient().get(CREDITS, **bearer(id_token))
    session = APIClient()
    session.cookies["connect.sid"] = cookie
    session.get(CREDITS)
    entries = _cached_entries()
    credential_keys = [key for key, _ in entries if "auth:credential:" in key]
    assert len(credential_keys) == 4  # one entry per kind
    secret = issued.token.split("_", 3)[3]
    forbidden = [api_key, issued.token, secret, services.hash_secret(secret), id_token, sid, cookie]
    forbidden += [unquote(cookie), id_token.split(".")[2]]
    for key, stored in entries:
        text = key + repr(pickle.loads(stored)) if stored[:1] == b"\x80" else key + repr(stored)
        for credential in forbidden:
            assert credential not in text, key
