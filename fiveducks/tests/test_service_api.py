"""The service API over HTTP: credentials, scopes, holds, charges, the Gmail token broker, audit."""

import datetime as dt
import logging

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import issue_api_token
from accounts.tests.factories import UserFactory
from credits import reconcile, selectors
from credits import services as credits
from credits.models import CreditHold, CreditTransaction
from fiveducks import services
from fiveducks.models import ServiceCall, ServiceSecret
from gmail import services as gmail
from gmail.models import GmailToken
from gmail.testing import fake_google  # noqa: F401 - the stand-in Google, as a fixture
from tests.concurrency import run_concurrently

HOLDS = "/api/service/credits/holds/"


def _client(token: str | None) -> APIClient:
    api = APIClient()
    if token:
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api


@pytest.fixture
def backend(db):
    """The platform's backend: a client with both scopes; returns its first secret."""
    return services.create_client(name="platform-backend", scopes=["credits:charge", "gmail:token"])


@pytest.fixture
def api(backend) -> APIClient:
    return _client(backend.token)


@pytest.fixture
def funded(db):
    user = UserFactory()
    credits.grant(user=user, amount=100, reason="opening")
    return user


# --- credentials --------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_command_prints_the_secret_once_and_stores_only_its_hash(capsys):
    call_command("service_client", "create", "platform-backend", "--scopes", "credits:charge,gmail:token")
    out, err = capsys.readouterr()
    token = out.strip()
    assert token.startswith("fd_svc_") and token not in err
    secret = token.split("_", 3)[3]  # fd_svc_<key id>_<secret>
    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(s)::text FROM service_secrets s")
        stored = cursor.fetchone()[0]
    assert secret not in stored and token not in stored
    assert ServiceSecret.objects.get().secret_hash == services.hash_secret(secret)
    call_command("service_client", "list")
    assert token not in capsys.readouterr().out
    assert _client(token).post(HOLDS, {}, format="json").status_code == 400  # authenticated, bad input


@pytest.mark.django_db
def test_a_wrong_secret_or_none_is_401(backend, funded):
    body = {"user_id": funded.pk, "amount": 1, "idempotency_key": "k"}
    assert _client(backend.token[:-2] + "xx").post(HOLDS, body, format="json").status_code == 401
    assert _client("fd_svc_nonsense").post(HOLDS, body, format="json").status_code == 401
    anonymous = _client(None).post(HOLDS, body, format="json")
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
def test_rotation_then_revoke_old_then_disable(backend, funded, capsys):
    body = {"user_id": funded.pk, "amount": 1, "idempotency_key": "k"}
    call_command("service_client", "rotate", "platform-backend")
    second = capsys.readouterr().out.strip()
    for n, token in enumerate((backend.token, second)):  # both live during the rotation
        response = _client(token).post(HOLDS, {**body, "idempotency_key": f"k{n}"}, format="json")
        assert response.status_code == 201
    with pytest.raises(Exception, match="revoke the old one first"):
        call_command("service_client", "rotate", "platform-backend")
    call_command("service_client", "revoke-old", "platform-backend")
    assert _client(backend.token).post(HOLDS, body, format="json").status_code == 401
    assert _client(second).post(HOLDS, {**body, "idempotency_key": "k9"}, format="json").status_code == 201
    call_command("service_client", "disable", "platform-backend")
    refused = _client(second).post(HOLDS, {**body, "idempotency_key": "k10"}, format="json")
    assert refused.status_code == 401 and refused.json()["code"] == "authentication_failed"


@pytest.mark.django_db
def test_a_credential_without_the_scope_is_403(funded):
    mailer = services.create_client(name="mailer", scopes=["gmail:token"])
    response = _client(mailer.token).post(
        HOLDS, {"user_id": funded.pk, "amount": 1, "idempotency_key": "k"}, format="json"
    )
    assert response.status_code == 403
    assert "credits:charge" in response.json()["detail"]
    assert not CreditHold.objects.exists()
    call = ServiceCall.objects.get()
    assert (call.client.name, call.action, call.status) == ("mailer", "credits.hold", 403)


@pytest.mark.django_db
def test_a_user_token_or_session_cannot_call_the_service_api(backend, funded, client):
    body = {"user_id": funded.pk, "amount": 1, "idempotency_key": "k"}
    staff = UserFactory(is_staff=True, is_superuser=True)
    key = issue_api_token(user=staff)
    by_token = APIClient()
    by_token.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert by_token.post(HOLDS, body, format="json").status_code == 401
    as_bearer = _client(key)  # a user token sent as a Bearer is not a service secret
    assert as_bearer.post(HOLDS, body, format="json").status_code == 401
    client.force_login(staff)
    assert client.post(HOLDS, body, content_type="application/json").status_code == 401
    assert not CreditHold.objects.exists()


@pytest.mark.django_db
def test_no_secret_appears_in_a_log(funded, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    call_command("service_client", "create", "platform-backend", "--scopes", "credits:charge")
    first = capsys.readouterr().out.strip()
    call_command("service_client", "rotate", "platform-backend")
    second = capsys.readouterr().out.strip()
    body = {"user_id": funded.pk, "amount": 1, "idempotency_key": "k"}
    _client(first).post(HOLDS, body, format="json")
    _client(first[:-3] + "abc").post(HOLDS, body, format="json")  # a wrong one is logged, redacted
    call_command("service_client", "revoke-old", "platform-backend")
    _client(first).post(HOLDS, body, format="json")
    text = caplog.text
    assert "unknown or revoked secret" in text
    for token in (first, second):
        assert token not in text
        assert token.split("_", 3)[3] not in text


# --- holds ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_backends_sequence_hold_then_capture(api, funded):
    response = api.post(
        HOLDS, {"user_id": funded.pk, "operation": "email_search", "idempotency_key": "s1"}, format="json"
    )
    assert response.status_code == 402  # 160 > 100
    assert response.json()["code"] == "insufficient_credits"
    response = api.post(
        HOLDS,
        {"user_id": funded.pk, "operation": "company_and_contacts", "idempotency_key": "s2"},
        format="json",
    )
    assert response.status_code == 201
    hold = response.json()
    assert {k: hold[k] for k in ("amount", "balance", "available", "status")} == {
        "amount": 70,
        "balance": 100,
        "available": 30,
        "status": "open",
    }
    assert hold["expires_at"]
    replay = api.post(
        HOLDS,
        {"user_id": funded.pk, "operation": "company_and_contacts", "idempotency_key": "s2"},
        format="json",
    )
    assert replay.status_code == 200 and replay.json()["hold_id"] == hold["hold_id"]
    captured = api.post(f"{HOLDS}{hold['hold_id']}/capture/", {"amount": 50}, format="json")
    assert captured.status_code == 200
    body = captured.json()
    assert (body["captured"], body["balance"], body["available"]) == (50, 50, 50)
    assert body["transaction"]["metadata"]["hold_id"] == hold["hold_id"]
    assert body["transaction"]["amount"] == -50
    again = api.post(f"{HOLDS}{hold['hold_id']}/capture/", {}, format="json")
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert again.json()["transaction"]["id"] == body["transaction"]["id"]
    assert api.post(f"{HOLDS}{hold['hold_id']}/release/").status_code == 409
    assert list(reconcile.find_mismatches()) == []


@pytest.mark.django_db
def test_release_then_capture_is_409_and_expired_is_hold_expired(api, funded):
    first = api.post(
        HOLDS, {"user_id": funded.pk, "amount": 40, "idempotency_key": "a"}, format="json"
    ).json()
    released = api.post(f"{HOLDS}{first['hold_id']}/release/")
    assert released.status_code == 200 and released.json()["available"] == 100
    assert api.post(f"{HOLDS}{first['hold_id']}/release/").status_code == 200  # idempotent
    late = api.post(f"{HOLDS}{first['hold_id']}/capture/", {}, format="json")
    assert (late.status_code, late.json()["code"]) == (409, "hold_released")

    second = api.post(
        HOLDS, {"user_id": funded.pk, "amount": 40, "idempotency_key": "b", "ttl_seconds": 1}, format="json"
    ).json()
    CreditHold.objects.filter(pk=second["hold_id"]).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    for action in ("capture", "release"):
        response = api.post(f"{HOLDS}{second['hold_id']}/{action}/", {}, format="json")
        assert (response.status_code, response.json()["code"]) == (409, "hold_expired")


@pytest.mark.django_db
def test_another_client_cannot_see_or_settle_a_hold(api, funded):
    hold = api.post(HOLDS, {"user_id": funded.pk, "amount": 40, "idempotency_key": "a"}, format="json").json()
    other = _client(services.create_client(name="other", scopes=["credits:charge"]).token)
    assert other.post(f"{HOLDS}{hold['hold_id']}/capture/", {}, format="json").status_code == 404
    # The same idempotency key from another client is another hold (keys are per client).
    again = other.post(HOLDS, {"user_id": funded.pk, "amount": 40, "idempotency_key": "a"}, format="json")
    assert again.status_code == 201 and again.json()["hold_id"] != hold["hold_id"]


@pytest.mark.django_db
def test_an_unknown_user_is_404_and_bad_input_400(api):
    response = api.post(HOLDS, {"user_id": 987654, "amount": 1, "idempotency_key": "k"}, format="json")
    assert (response.status_code, response.json()["code"]) == (404, "user_not_found")
    both = api.post(HOLDS, {"user_id": 1, "amount": 1, "operation": "company_search", "idempotency_key": "k"})
    assert both.status_code == 400
    assert api.post(f"{HOLDS}999999/capture/", {}, format="json").status_code == 404
    audit = ServiceCall.objects.filter(action="credits.hold", status=404).get()
    assert (audit.user_id, audit.result) == (987654, "user_not_found")


@pytest.mark.django_db
def test_every_call_is_audited_with_client_user_action_result(api, backend, funded):
    hold = api.post(HOLDS, {"user_id": funded.pk, "amount": 40, "idempotency_key": "a"}, format="json").json()
    api.post(f"{HOLDS}{hold['hold_id']}/capture/", {}, format="json")
    api.post(HOLDS, {"user_id": funded.pk, "amount": 400, "idempotency_key": "b"}, format="json")
    rows = list(
        ServiceCall.objects.order_by("id").values_list(
            "client__name", "user_id", "action", "status", "result"
        )
    )
    assert rows == [
        ("platform-backend", funded.pk, "credits.hold", 201, "ok"),
        ("platform-backend", funded.pk, "credits.capture", 200, "ok"),
        ("platform-backend", funded.pk, "credits.hold", 402, "insufficient_credits"),
    ]
    assert backend.client.__class__.objects.get(pk=backend.client.pk).last_used_at is not None


# --- charge ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_charge_has_the_rules_of_the_users_own_deduct_and_its_own_key_space(api, funded):
    credits.deduct(user=funded, operation="company_search", idempotency_key="same-key")  # the user's own
    response = api.post(
        "/api/service/credits/charge/",
        {"user_id": funded.pk, "operation": "company_search", "idempotency_key": "same-key"},
        format="json",
    )
    assert response.status_code == 200
    assert (response.json()["balance"], response.json()["replayed"]) == (80, False)
    api.post(HOLDS, {"user_id": funded.pk, "amount": 75, "idempotency_key": "h"}, format="json")
    short = api.post(
        "/api/service/credits/charge/",
        {"user_id": funded.pk, "operation": "company_search", "idempotency_key": "k2"},
        format="json",
    )
    assert short.status_code == 402  # 80 - 75 held = 5 < 10
    keys = set(CreditTransaction.objects.filter(user=funded).values_list("idempotency_key", flat=True))
    assert "same-key" in keys and any(k and k.startswith("svc:") and k.endswith(":same-key") for k in keys)


# --- Gmail token broker ---------------------------------------------------------------------


def _connect(user, fake, *, expires_in):
    grant, access = fake.issue_grant(email="sender@example.com")
    gmail.store_tokens(
        user=user,
        access_token=access,
        refresh_token=grant.refresh_token,
        expires_at=timezone.now() + expires_in,
        scopes=grant.scopes,
        email="sender@example.com",
        display_name="Sender",
    )
    return grant, access


@pytest.mark.django_db
def test_the_broker_answers_a_valid_token_without_asking_google(api, funded, fake_google):  # noqa: F811
    _, access = _connect(funded, fake_google, expires_in=dt.timedelta(hours=1))
    response = api.post("/api/service/gmail/access-token/", {"user_id": funded.pk}, format="json")
    assert response.status_code == 200
    assert response.json()["access_token"] == access
    assert response.json()["email"] == "sender@example.com"
    assert response["Cache-Control"] == "no-store"
    assert fake_google.count("token", "refresh_token") == 0


@pytest.mark.django_db
def test_the_broker_answers_409_when_the_user_must_reconnect(api, funded, fake_google):  # noqa: F811
    missing = api.post("/api/service/gmail/access-token/", {"user_id": funded.pk}, format="json")
    assert (missing.status_code, missing.json()["code"]) == (409, "gmail_not_connected")
    grant, _ = _connect(funded, fake_google, expires_in=dt.timedelta(minutes=-5))
    fake_google.revoke_grant(grant)
    gone = api.post("/api/service/gmail/access-token/", {"user_id": funded.pk}, format="json")
    assert (gone.status_code, gone.json()["code"]) == (409, "gmail_reconnect_required")
    assert "reconnect" in gone.json()["detail"]


@pytest.mark.django_db
def test_the_broker_needs_the_gmail_scope(funded):
    charger = services.create_client(name="charger", scopes=["credits:charge"])
    response = _client(charger.token).post("/api/service/gmail/access-token/", {"user_id": funded.pk})
    assert response.status_code == 403


@pytest.mark.django_db(transaction=True)
def test_8_concurrent_callers_for_an_expired_token_cause_one_refresh(fake_google, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    issued = services.create_client(name="platform-backend", scopes=["gmail:token"])
    user = UserFactory()
    _, old_access = _connect(user, fake_google, expires_in=dt.timedelta(minutes=-1))
    fake_google.refresh_delay = 0.5  # every caller sees the expired token before the refresh ends

    def caller(_: int) -> tuple[int, str | None]:
        response = _client(issued.token).post(
            "/api/service/gmail/access-token/", {"user_id": user.pk}, format="json"
        )
        return response.status_code, response.json().get("access_token")

    outcomes = run_concurrently(caller, 8)
    answers, errors = outcomes.results, outcomes.errors
    assert errors == []
    assert fake_google.count("token", "refresh_token") == 1
    assert [status for status, _ in answers] == [200] * 8
    tokens = {token for _, token in answers}
    assert len(tokens) == 1 and old_access not in tokens
    assert GmailToken.objects.get(user=user).access_token in tokens
    for token in tokens | {old_access}:
        assert token not in caplog.text
    assert ServiceCall.objects.filter(action="gmail.access_token", status=200).count() == 8


# --- OpenAPI and metrics ----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_schema_documents_the_service_api(staff_client):
    schema = staff_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    for path in (
        "/api/service/credits/holds/",
        "/api/service/credits/holds/{hold_id}/capture/",
        "/api/service/credits/holds/{hold_id}/release/",
        "/api/service/credits/charge/",
        "/api/service/gmail/access-token/",
    ):
        assert path in schema["paths"], path
    hold = schema["paths"]["/api/service/credits/holds/"]["post"]
    assert hold["security"] == [{"serviceClient": []}]
    assert {"201", "402", "401", "403"} <= set(hold["responses"])
    assert "capture" in hold["description"]
    assert schema["components"]["securitySchemes"]["serviceClient"]["scheme"] == "bearer"


@pytest.mark.django_db
def test_metrics_count_holds_and_show_the_open_amount(api, funded, client, staff_user):
    hold = api.post(HOLDS, {"user_id": funded.pk, "amount": 40, "idempotency_key": "a"}, format="json").json()
    api.post(HOLDS, {"user_id": funded.pk, "amount": 25, "idempotency_key": "b"}, format="json")
    api.post(f"{HOLDS}{hold['hold_id']}/capture/", {}, format="json")
    client.force_login(staff_user)
    text = client.get("/metrics").content.decode()
    assert 'fivedocks_credit_holds_total{event="opened"}' in text
    assert 'fivedocks_credit_holds_total{event="captured"}' in text
    assert "fivedocks_credit_holds_open_amount 25.0" in text
    assert "fivedocks_credit_holds_expired 0.0" in text
    assert selectors.get_balance(user_id=funded.pk).available == 35


@pytest.mark.django_db
def test_ids_past_bigint_are_a_clear_4xx_never_a_500(api):
    huge = 2**70
    response = api.post(HOLDS, {"user_id": huge, "amount": 1, "idempotency_key": "k"}, format="json")
    assert response.status_code == 400
    assert api.post(f"{HOLDS}{huge}/capture/", {}, format="json").status_code == 404
    assert api.post(f"{HOLDS}{huge}/release/").status_code == 404
    charge = api.post(
        "/api/service/credits/charge/",
        {"user_id": huge, "operation": "company_search", "idempotency_key": "k"},
        format="json",
    )
    assert charge.status_code == 400
    token = api.post("/api/service/gmail/access-token/", {"user_id": huge}, format="json")
    assert token.status_code == 400
