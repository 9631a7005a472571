"""Fixtures for the tests from the outside: one real server for the whole session."""

from __future__ import annotations

import pytest

from tests.liveserver import LiveServer, running_server


@pytest.fixture(scope="session")
def outside_server() -> LiveServer:
    """gunicorn with production settings on a free loopback port, its own seeded database."""
    from django.conf import settings

    with running_server(settings.DATABASES["default"]) as server:
        yield server


@pytest.fixture(scope="session")
def seed(outside_server: LiveServer) -> dict:
    return outside_server.seed
