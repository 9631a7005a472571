"""Tokens are encrypted at rest; keys rotate; nothing leaks through SQL, lookups or dumps."""

import io
import json

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import FieldError, ImproperlyConfigured
from django.core.management import call_command
from django.db import connection

from gmail import crypto
from gmail.apps import check_encryption_keys
from gmail.models import GmailToken
from gmail.services import store_tokens

ACCESS = "ya29.a0Af-plaintext-access-token"
REFRESH = "1//0g-plaintext-refresh-token"


def _store(user, **extra):
    values = {
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "expires_at": None,
        "scopes": ["https://www.googleapis.com/auth/gmail.modify"],
        "email": "someone@example.com",
        "display_name": "Some One",
    }
    values.update(extra)
    return store_tokens(user=user, **values)


def _raw_rows() -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM gmail_tokens")
        return cursor.fetchall()


@pytest.mark.django_db
def test_select_star_shows_no_plaintext_token(user):
    _store(user)
    rows = _raw_rows()
    assert len(rows) == 1
    dumped = repr(rows)
    assert ACCESS not in dumped
    assert REFRESH not in dumped
    # ... and the columns hold Fernet ciphertexts that decrypt back.
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token, refresh_token FROM gmail_tokens")
        access_ct, refresh_ct = cursor.fetchone()
    assert crypto.decrypt(access_ct) == ACCESS
    assert crypto.decrypt(refresh_ct) == REFRESH
    token = GmailToken.objects.get(user=user)
    assert (token.access_token, token.refresh_token) == (ACCESS, REFRESH)


@pytest.mark.django_db
def test_same_token_encrypts_differently_each_time(user, staff_user):
    _store(user)
    _store(staff_user)
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token FROM gmail_tokens")
        first, second = (row[0] for row in cursor.fetchall())
    assert first != second


@pytest.mark.django_db
def test_encrypted_columns_allow_no_value_lookups(user):
    _store(user)
    with pytest.raises(FieldError):
        GmailToken.objects.filter(access_token=ACCESS).exists()
    assert GmailToken.objects.filter(access_token__isnull=False).count() == 1


@pytest.mark.django_db
def test_key_rotation_keeps_tokens_readable(user, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.TOKEN_ENCRYPTION_KEYS = [old]
    _store(user)

    # New key first: rows written with the old key still read.
    settings.TOKEN_ENCRYPTION_KEYS = [new, old]
    assert GmailToken.objects.get(user=user).refresh_token == REFRESH
    out = io.StringIO()
    call_command("gmail_rotate_keys", stdout=out)
    assert "1 Gmail connection(s) re-encrypted" in out.getvalue()

    # Every row is now under the new key alone: the old key can go.
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token, refresh_token FROM gmail_tokens")
        access_ct, refresh_ct = cursor.fetchone()
    assert Fernet(new.encode()).decrypt(access_ct.encode()).decode() == ACCESS
    assert Fernet(new.encode()).decrypt(refresh_ct.encode()).decode() == REFRESH
    settings.TOKEN_ENCRYPTION_KEYS = [new]
    token = GmailToken.objects.get(user=user)
    assert (token.access_token, token.refresh_token) == (ACCESS, REFRESH)


@pytest.mark.django_db
def test_a_removed_key_gives_a_clear_error(user, settings):
    settings.TOKEN_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    _store(user)
    settings.TOKEN_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(crypto.TokenDecryptionError, match="gmail_rotate_keys"):
        GmailToken.objects.get(user=user)


def test_dev_key_is_derived_from_secret_key_and_stable(settings):
    settings.TOKEN_ENCRYPTION_KEYS = []
    ciphertext = crypto.encrypt("hello")
    assert Fernet(crypto.dev_key(settings.SECRET_KEY)).decrypt(ciphertext.encode()) == b"hello"
    assert crypto.dev_key(settings.SECRET_KEY) == crypto.dev_key(settings.SECRET_KEY)
    assert crypto.dev_key("another secret") != crypto.dev_key(settings.SECRET_KEY)


def test_no_dev_key_outside_debug_and_tests(settings):
    settings.TOKEN_ENCRYPTION_KEYS = []
    settings.DEBUG = False
    settings.TESTING = False
    with pytest.raises(ImproperlyConfigured, match="TOKEN_ENCRYPTION_KEYS is required"):
        crypto.encrypt("x")


def test_malformed_key_fails_the_system_check_without_echoing_it(settings):
    settings.TOKEN_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), "not-a-fernet-key"]
    errors = check_encryption_keys()
    assert [e.id for e in errors] == ["gmail.E001"]
    assert "key #2" in errors[0].msg
    assert "not-a-fernet-key" not in errors[0].msg


def test_keys_may_come_as_a_comma_separated_string(settings):
    key = Fernet.generate_key().decode()
    settings.TOKEN_ENCRYPTION_KEYS = f" {key} , "
    assert crypto.configured_keys() == (key,)


@pytest.mark.django_db
def test_dumpdata_shows_no_plaintext_and_loaddata_reads_it_back(user, tmp_path):
    _store(user)
    out = io.StringIO()
    call_command("dumpdata", "gmail", stdout=out)
    assert ACCESS not in out.getvalue()
    assert REFRESH not in out.getvalue()
    fixture = tmp_path / "gmail.json"
    fixture.write_text(out.getvalue())
    GmailToken.objects.all().delete()
    call_command("loaddata", str(fixture), verbosity=0)
    token = GmailToken.objects.get(user=user)
    assert (token.access_token, token.refresh_token) == (ACCESS, REFRESH)
    assert json.loads(out.getvalue())[0]["fields"]["access_token"].startswith("encrypted:")


@pytest.mark.django_db
def test_status_values_are_constrained_by_the_database(user):
    from django.db import IntegrityError

    token = _store(user)
    with pytest.raises(IntegrityError):
        GmailToken.objects.filter(pk=token.pk).update(status="bogus")
