"""Read routing decisions, the lag formula on a real server, and the scaling settings.

The replica itself is exercised end to end in tests/test_replica.py (a real streaming replica);
here the decisions are checked one by one, with the monitor's view of a replica set by hand.
"""

from __future__ import annotations

import time

import psycopg
import pytest
from django.db import connection, transaction

from fivedocks import replicas
from fivedocks.config import ConfigError, for_transaction_pooling, replica_database
from fivedocks.replicas import MONITOR, PRIMARY, ReplicaRouter, ReplicaStatus


@pytest.fixture
def one_replica(settings):
    """A replica alias the monitor believes up and in time (nothing connects to it here)."""
    settings.DATABASE_REPLICAS = ["replica_1"]
    settings.REPLICA_MAX_LAG_SECONDS = 5
    settings.REPLICA_CHECK_SECONDS = 3600
    settings.READ_YOUR_WRITES_SECONDS = 10
    MONITOR._status["replica_1"] = ReplicaStatus(
        "replica_1", up=True, lag_seconds=0.0, checked_at=time.monotonic()
    )
    yield "replica_1"
    MONITOR.reset()


def test_without_replicas_every_read_is_the_primary(settings):
    settings.DATABASE_REPLICAS = []
    assert replicas.read_alias(user_id=1) == PRIMARY


def test_a_healthy_replica_takes_the_read(one_replica):
    with replicas.request_scope():
        assert replicas.read_alias(user_id=1) == one_replica
        assert replicas.replicas_used() == {one_replica}


@pytest.mark.django_db(transaction=True)
def test_reads_inside_a_transaction_go_to_the_primary(one_replica):
    with transaction.atomic():
        assert replicas.read_alias(user_id=1) == PRIMARY
        with replicas.reading(user_id=1):
            assert ReplicaRouter().db_for_read(None) == PRIMARY
    with replicas.reading(user_id=1) as alias:
        assert alias == one_replica
        assert ReplicaRouter().db_for_read(None) == one_replica


@pytest.mark.django_db(transaction=True)
def test_a_user_who_just_wrote_reads_the_primary_until_the_marker_expires(one_replica, settings):
    settings.READ_YOUR_WRITES_SECONDS = 1
    with transaction.atomic():
        replicas.note_write(user_id=7)
        # Not before the commit: a rolled back write leaves nothing to read back.
        assert not replicas.wrote_recently(user_id=7)
    assert replicas.read_alias(user_id=7) == PRIMARY
    assert replicas.read_alias(user_id=8) == one_replica
    time.sleep(1.1)
    assert replicas.read_alias(user_id=7) == one_replica


@pytest.mark.django_db(transaction=True)
def test_a_deduction_pins_its_user_to_the_primary(one_replica, user):
    from credits import services

    ReplicaRouter()  # as Django builds it in a process with replicas: wires the change signals
    services.grant(user=user, amount=100, kind="purchase", reason="test")
    assert replicas.wrote_recently(user_id=user.pk)
    assert replicas.read_alias(user_id=user.pk) == PRIMARY


def test_a_late_or_down_replica_is_skipped(one_replica):
    MONITOR._status[one_replica] = ReplicaStatus(
        one_replica, up=True, lag_seconds=6.0, checked_at=time.monotonic()
    )
    assert replicas.read_alias(user_id=1) == PRIMARY
    MONITOR._status[one_replica] = ReplicaStatus(
        one_replica, up=True, lag_seconds=None, checked_at=time.monotonic()
    )
    assert replicas.read_alias(user_id=1) == PRIMARY
    MONITOR.mark_down(one_replica, psycopg.OperationalError("gone"))
    assert replicas.read_alias(user_id=1) == PRIMARY
    assert MONITOR.status(one_replica).error == "OperationalError"


def test_primary_only_overrides_every_choice(one_replica):
    with replicas.request_scope(), replicas.primary_only():
        assert replicas.read_alias(user_id=1) == PRIMARY
        with replicas.reading(user_id=1):
            assert ReplicaRouter().db_for_read(None) == PRIMARY


def test_writes_and_migrations_stay_on_the_primary():
    router = ReplicaRouter()
    assert router.db_for_write(None) == PRIMARY
    assert router.allow_migrate(PRIMARY, "credits") is True
    assert router.allow_migrate("replica_1", "credits") is False


@pytest.mark.django_db
def test_a_primary_reports_no_lag():
    """The formula on a real server that is not in recovery (a promoted replica): never late."""
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
        user=settings["USER"],
        dbname=settings["NAME"],
    ) as conn:
        assert replicas.measure(conn) == (0.0, False, False)


def test_replica_settings():
    config = replica_database("postgres://reader@replica.internal:5433/fivedocks", index=1, connect_timeout=2)
    assert config["HOST"] == "replica.internal" and config["PORT"] == 5433
    assert config["OPTIONS"] == {"connect_timeout": 2}  # no pool: a down replica is refused at once
    assert config["TEST"] == {"MIRROR": "default"}
    with pytest.raises(ConfigError, match=r"DATABASE_REPLICA_URLS \(entry 2\) must be a PostgreSQL URL"):
        replica_database("mysql://x@y/z", index=2, connect_timeout=2)


def test_transaction_pooling_settings():
    config = for_transaction_pooling({"OPTIONS": {"pool": {"max_size": 4}}})
    assert config["OPTIONS"]["prepare_threshold"] is None
    assert config["DISABLE_SERVER_SIDE_CURSORS"] is True
    assert config["OPTIONS"]["pool"] == {"max_size": 4}


def test_cachalot_serves_the_primary_only(settings):
    assert settings.CACHALOT_DATABASES == ["default"]
