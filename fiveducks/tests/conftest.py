"""Fixtures: Firebase's certificates and the platform's database, both local and real."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from fiveducks import firebase
from fiveducks.testing import FirebaseCerts, PlatformDatabase


@pytest.fixture
def firebase_certs(settings):
    with FirebaseCerts() as certs:
        certs.apply_to(settings)
        firebase._request.clear()
        yield certs
        firebase._request.clear()


@pytest.fixture(scope="session")
def _platform_db(django_db_setup, django_db_blocker):
    from django.conf import settings

    with django_db_blocker.unblock():
        database = PlatformDatabase(settings.DATABASES["default"])
    yield database
    database.drop()


@pytest.fixture
def platform(_platform_db, settings):
    """The platform's database (users, user_sessions) with settings pointed at it; emptied after."""
    _platform_db.apply_to(settings)
    yield _platform_db
    with _platform_db.connect() as conn:
        conn.execute("TRUNCATE users, user_sessions RESTART IDENTITY")


@pytest.fixture
def anonymous():
    return APIClient()


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}
