import datetime as dt

import pytest
from django.utils import timezone

from gmail import services
from gmail.testing import fake_google  # noqa: F401 - the stand-in Google, as a fixture


@pytest.fixture
def connect(fake_google):  # noqa: F811
    """Connect a user with a grant the stand-in knows; returns (token row, grant, access token)."""

    def _connect(user, *, expires_in: dt.timedelta = dt.timedelta(hours=1), email="someone@example.com"):
        grant, access = fake_google.issue_grant(email=email)
        token = services.store_tokens(
            user=user,
            access_token=access,
            refresh_token=grant.refresh_token,
            expires_at=timezone.now() + expires_in,
            scopes=grant.scopes,
            email=email,
            display_name="Some One",
        )
        return token, grant, access

    return _connect
