"""The admin's runs and quarantine lists: visible to staff, read-only."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from kvmigrate.models import MigrationRun, QuarantinedRecord

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(staff_user):
    client = Client()
    client.force_login(staff_user)
    return client


@pytest.fixture
def data():
    run = MigrationRun.objects.create(
        source="/tmp/store.jsonl",
        status="attention",
        counts={"credits": {"read": 10, "created": 8, "quarantined": 2, "verified": 8}},
    )
    QuarantinedRecord.objects.create(
        run=run, key="user_credits:7", raw_value='"{\\"currentBalance\\":\\"lots\\"}"' + "x" * 200,
        fingerprint="a" * 64, reason_code="wrong_type:currentBalance",
        reason="currentBalance must be an integer",
    )  # fmt: skip
    QuarantinedRecord.objects.create(
        run=run,
        key="user_credits:abc",
        raw_value="{}",
        fingerprint="b" * 64,
        reason_code="bad_id",
        reason="no id",
    )
    return run


def test_runs_list_shows_counts_and_status(admin_client, data):
    page = admin_client.get(reverse("admin:kvmigrate_migrationrun_changelist"))
    assert page.status_code == 200
    body = page.content.decode()
    assert "attention" in body and "/tmp/store.jsonl" in body
    detail = admin_client.get(reverse("admin:kvmigrate_migrationrun_change", args=[data.pk]))
    assert detail.status_code == 200 and "<th>credits</th>" in detail.content.decode()


def test_quarantine_list_truncates_raw_values_and_filters_by_reason_and_run(admin_client, data):
    url = reverse("admin:kvmigrate_quarantinedrecord_changelist")
    body = admin_client.get(url).content.decode()
    assert "user_credits:7" in body and "user_credits:abc" in body and "x" * 200 not in body
    body = admin_client.get(url, {"reason_code": "bad_id"}).content.decode()
    assert "user_credits:abc" in body and "user_credits:7" not in body
    body = admin_client.get(url, {"run__id__exact": data.pk, "resolved": "no"}).content.decode()
    assert "user_credits:7" in body
    record = QuarantinedRecord.objects.get(key="user_credits:7")
    detail = admin_client.get(
        reverse("admin:kvmigrate_quarantinedrecord_change", args=[record.pk])
    ).content.decode()
    assert "x" * 200 in detail


def test_a_quarantined_token_record_is_masked(admin_client, data):
    from gmail import crypto

    secret = "ya29.plaintext-access-token-never-shown"
    record = QuarantinedRecord.objects.create(
        run=data,
        key="user_tokens:9",
        raw_value=crypto.encrypt(f'{{"gmailAccessToken": "{secret}", "tokenExpiry": "soon"}}'),
        raw_encrypted=True,
        fingerprint="c" * 64,
        reason_code="bad_timestamp:tokenExpiry",
        reason="tokenExpiry is not a time",
    )
    listing = admin_client.get(reverse("admin:kvmigrate_quarantinedrecord_changelist")).content.decode()
    detail = admin_client.get(
        reverse("admin:kvmigrate_quarantinedrecord_change", args=[record.pk])
    ).content.decode()
    for body in (listing, detail):
        assert "user_tokens:9" in body and "encrypted: holds OAuth tokens" in body
        assert secret not in body and record.raw_value not in body
    assert secret in record.raw_text()


def test_it_is_read_only(admin_client, data):
    record = QuarantinedRecord.objects.first()
    assert admin_client.get(reverse("admin:kvmigrate_quarantinedrecord_add")).status_code == 403
    assert (
        admin_client.post(reverse("admin:kvmigrate_quarantinedrecord_delete", args=[record.pk])).status_code
        == 403
    )
    assert QuarantinedRecord.objects.count() == 2


def test_non_staff_cannot_see_it(user, data):
    client = Client()
    client.force_login(user)
    assert client.get(reverse("admin:kvmigrate_migrationrun_changelist")).status_code == 302
