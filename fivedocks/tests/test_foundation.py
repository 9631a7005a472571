import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from fivedocks.config import ConfigError, database_from_url

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_healthz_ok():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": {"ok": True}, "cache": {"ok": True}}}


@pytest.mark.django_db
def test_healthz_degraded_not_503_when_cache_is_down(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "fivedocks.cache_backends.CountingRedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    from django.core.cache import caches

    caches._settings = None
    with contextlib.suppress(AttributeError):
        del caches._connections.default
    response = Client().get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["cache"] == {"ok": False, "error": "ConnectionError"}


@pytest.mark.django_db
def test_healthz_503_only_when_the_database_is_down(monkeypatch):
    from fivedocks import health

    monkeypatch.setitem(health.CHECKS, "database", lambda: {"ok": False, "error": "OperationalError"})
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "degraded"


@pytest.mark.django_db
def test_schema_is_served(user_client):
    response = user_client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert "/api/me/" in response.json()["paths"]


@pytest.mark.parametrize("url", ["nonsense", "mysql://u@h/db", "postgres://u@h:notaport/db", "postgres://h"])
def test_bad_database_url_is_a_config_error(url):
    with pytest.raises(ConfigError) as info:
        database_from_url(url, pool=False, pool_max=1)
    assert "DATABASE_URL" in str(info.value)


def test_manage_py_reports_bad_database_url_in_one_line():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "ENV_FILE": "/nonexistent", "DATABASE_URL": "nonsense", "DEBUG": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fivedocks: configuration error: DATABASE_URL")
    assert "Traceback" not in result.stderr


def test_missing_secret_key_in_production_is_one_line():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "ENV_FILE": "/nonexistent",
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "fivedocks: configuration error: SECRET_KEY is required when DEBUG is off (see .env.example)"
    )


def test_check_deploy_is_clean_with_production_settings():
    from cryptography.fernet import Fernet

    env = {
        "PATH": "/usr/bin:/bin",
        "ENV_FILE": "/nonexistent",
        "DEBUG": "0",
        "SECRET_KEY": "x" * 20 + "production-grade-secret-key-0123456789-abcdefghijkl",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
        "ALLOWED_HOSTS": "app.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://app.example.com",
        "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "STRIPE_SECRET_KEY": "sk_live_placeholder",
        "STRIPE_WEBHOOK_SECRET": "whsec_placeholder",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_default_local_cache_holds_many_balances(settings):
    # Django's default of 300 entries would evict balances once a few hundred users are active.
    from django.core.cache import cache

    assert cache._max_entries >= 100_000
