"""Users the platform registered after the migration: imported on first sight, welcomed once."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import User
from credits.models import CreditAccount, CreditTransaction
from fiveducks import first_sight
from fiveducks.tests.conftest import bearer

CREDITS = "/api/credits"
# Platform ids far above the test database's own sequence, so they never meet a factory's user.
NEW_ID = 7_000_001


def _welcome_rows(user_id: int) -> int:
    return CreditTransaction.objects.filter(user_id=user_id, idempotency_key=first_sight.WELCOME_KEY).count()


@pytest.mark.django_db
def test_a_platform_only_user_logs_in_with_firebase_and_gets_the_welcome_credits(
    anonymous, firebase_certs, platform
):
    platform.add_user(user_id=NEW_ID, email="New.Duck@Example.com", username="newduck")
    token = firebase_certs.mint(uid="uid-newduck", email="new.duck@example.com")
    response = anonymous.get(CREDITS, **bearer(token))
    assert response.status_code == 200, response.content
    assert response.json()["balance"] == 250
    user = User.objects.get(pk=NEW_ID)  # the platform's id kept
    assert (user.email, user.username, user.firebase_uid) == (
        "new.duck@example.com",
        "newduck",
        "uid-newduck",
    )
    assert not user.has_usable_password()
    # Later requests (now by uid) find the user and grant nothing more.
    for _ in range(2):
        assert anonymous.get(CREDITS, **bearer(token)).json()["balance"] == 250
    assert _welcome_rows(NEW_ID) == 1


@pytest.mark.django_db
def test_a_platform_only_user_logs_in_with_the_session_cookie(anonymous, platform):
    platform.add_user(user_id=NEW_ID + 1, email="cookie@example.com")
    anonymous.cookies["connect.sid"] = platform.login(NEW_ID + 1)
    response = anonymous.get(CREDITS)
    assert response.status_code == 200, response.content
    assert response.json()["balance"] == 250
    assert User.objects.filter(pk=NEW_ID + 1, email="cookie@example.com").exists()


@pytest.mark.django_db
def test_find_or_import_user_by_id(platform):
    platform.add_user(user_id=NEW_ID + 2, email="byid@example.com", username="byid")
    user = first_sight.find_or_import_user(user_id=NEW_ID + 2)
    assert user is not None and user.pk == NEW_ID + 2
    assert first_sight.find_or_import_user(user_id=NEW_ID + 2) == user
    assert first_sight.find_or_import_user(user_id=NEW_ID + 3) is None
    assert first_sight.find_or_import_user(user_id=0) is None
    assert _welcome_rows(NEW_ID + 2) == 1


@pytest.mark.django_db
def test_without_the_platform_database_only_known_users_are_found(platform, settings, user):
    platform.add_user(user_id=NEW_ID + 4, email="later@example.com")
    settings.PLATFORM_DATABASE_URL = ""
    assert first_sight.find_or_import_user(user_id=NEW_ID + 4) is None
    assert first_sight.find_or_import_user(user_id=user.pk) == user
    assert not User.objects.filter(pk=NEW_ID + 4).exists()


@pytest.mark.django_db
def test_a_platform_user_whose_email_fivedocks_gives_another_id_is_not_imported(platform, user):
    platform.add_user(user_id=NEW_ID + 5, email=user.email)
    assert first_sight.find_or_import_user(user_id=NEW_ID + 5) is None
    assert not User.objects.filter(pk=NEW_ID + 5).exists()
    assert not CreditTransaction.objects.filter(user_id=NEW_ID + 5).exists()


@pytest.mark.django_db
def test_an_unverified_email_never_imports(anonymous, firebase_certs, platform):
    platform.add_user(user_id=NEW_ID + 6, email="unverified@example.com")
    token = firebase_certs.mint(uid="uid-unv", email="unverified@example.com", email_verified=False)
    assert anonymous.get(CREDITS, **bearer(token)).status_code == 401
    assert not User.objects.filter(pk=NEW_ID + 6).exists()


@pytest.mark.django_db
def test_a_user_in_neither_system_is_refused_and_nothing_is_created(anonymous, firebase_certs, platform):
    before = (User.objects.count(), CreditAccount.objects.count())
    anonymous.cookies["connect.sid"] = platform.login(NEW_ID + 7)  # a session for no user
    assert anonymous.get(CREDITS).status_code == 401
    token = firebase_certs.mint(uid="uid-ghost", email="ghost@example.com")
    assert APIClient().get(CREDITS, **bearer(token)).status_code == 401
    assert (User.objects.count(), CreditAccount.objects.count()) == before


@pytest.mark.django_db
def test_a_known_user_without_an_account_gets_the_welcome_once_on_first_read(
    user_client, user, django_capture_on_commit_callbacks
):
    # The platform's lazy creation: the first credit read opened the account with 250. (In a
    # test the grant's commit, which refreshes the cached balance, happens at the block's end.)
    with django_capture_on_commit_callbacks(execute=True):
        assert user_client.get(CREDITS).status_code == 200
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            assert user_client.get(CREDITS).json()["balance"] == 250
    assert _welcome_rows(user.pk) == 1


@pytest.mark.django_db(transaction=True)
def test_eight_concurrent_first_requests_import_once_and_welcome_once(firebase_certs, platform):
    platform.add_user(user_id=NEW_ID + 8, email="rush@example.com", username="rush")
    token = firebase_certs.mint(uid="uid-rush", email="rush@example.com")
    barrier = threading.Barrier(8)
    answers: list = []
    errors: list = []

    def first_request():
        try:
            barrier.wait(timeout=10)
            response = APIClient().get(CREDITS, **bearer(token))
            answers.append((response.status_code, response.json()))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=first_request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert [status for status, _ in answers] == [200] * 8, answers
    assert {body["balance"] for _, body in answers} == {250}
    assert User.objects.filter(pk=NEW_ID + 8).count() == 1
    assert User.objects.get(pk=NEW_ID + 8).firebase_uid == "uid-rush"
    assert _welcome_rows(NEW_ID + 8) == 1
    assert CreditAccount.objects.get(user_id=NEW_ID + 8).balance == 250


@pytest.mark.django_db
def test_expired_session_of_a_platform_user_imports_nothing(anonymous, platform):
    platform.add_user(user_id=NEW_ID + 9, email="expired@example.com")
    anonymous.cookies["connect.sid"] = platform.login(NEW_ID + 9, expires_in=-dt.timedelta(seconds=5))
    assert anonymous.get(CREDITS).status_code == 401
    assert not User.objects.filter(pk=NEW_ID + 9).exists()


@pytest.mark.django_db
def test_no_lazy_welcome_while_credit_writes_are_frozen(user_client, user, settings):
    settings.WRITES_FROZEN = ["credits"]
    assert user_client.get(CREDITS).json()["balance"] == 0
    assert _welcome_rows(user.pk) == 0


@pytest.mark.django_db
def test_fivedocks_own_users_never_get_an_id_the_platform_hands_out(platform):
    # The platform's ids are a PostgreSQL serial (below 2**31); fivedocks' own start at 2**40 and
    # stay there after an import moved the sequence.
    from accounts.services import move_user_id_sequence

    platform.add_user(user_id=NEW_ID + 10, email="imported@example.com")
    assert first_sight.find_or_import_user(user_id=NEW_ID + 10) is not None
    move_user_id_sequence()
    staff = User.objects.create_superuser("staff@example.com", "a-long-password")
    assert staff.pk >= 2**40


@pytest.mark.django_db
def test_first_sight_during_a_credits_freeze_imports_and_welcomes_after_it(
    anonymous, firebase_certs, platform, settings, django_capture_on_commit_callbacks
):
    platform.add_user(user_id=NEW_ID + 11, email="frozen@example.com")
    token = firebase_certs.mint(uid="uid-frozen", email="frozen@example.com")
    settings.WRITES_FROZEN = ["credits"]
    response = anonymous.get(CREDITS, **bearer(token))
    assert response.status_code == 200 and response.json()["balance"] == 0
    assert User.objects.filter(pk=NEW_ID + 11).exists()
    settings.WRITES_FROZEN = []
    with django_capture_on_commit_callbacks(execute=True):
        anonymous.get(CREDITS, **bearer(token))
    assert anonymous.get(CREDITS, **bearer(token)).json()["balance"] == 250
    assert _welcome_rows(NEW_ID + 11) == 1
