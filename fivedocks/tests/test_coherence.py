"""The cache broadcast (fivedocks/coherence.py, fivedocks/db/base.py) against the real PostgreSQL.

Real transactions (`transaction=True`), a real LISTEN connection, the real listener thread.
Multi-process behaviour is proven with gunicorn in tests/test_coherent_cache.py.
"""

from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest
from django.core.cache import cache
from django.db import connection, transaction
from django.test import Client

from accounts.models import User
from accounts.tests.factories import UserFactory
from credits import cache as balance_cache
from credits import selectors as credit_selectors
from credits import services as credits
from credits.services import InsufficientCredits
from fivedocks import coherence
from notifications import selectors as notification_selectors
from notifications import services as notifications
from notifications.models import UserNotification

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def listening():
    """A LISTEN connection of our own on the test database: what other processes would hear."""
    conn = psycopg.connect(**coherence.listener_connection_kwargs(), autocommit=True)
    conn.execute(f"LISTEN {coherence.CHANNEL}")
    yield conn
    conn.close()


def heard(conn, timeout: float = 0.3) -> list[dict]:
    return [json.loads(n.payload) for n in conn.notifies(timeout=timeout)]


def keys_in(messages: list[dict]) -> set[str]:
    return {key for message in messages for key in message.get("k", ())}


def tables_in(messages: list[dict]) -> set[str]:
    return {table for message in messages for table in message.get("t", ())}


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached")


# --- sending ---------------------------------------------------------------------------------


def test_a_balance_change_is_heard_only_when_it_commits(listening):
    user = UserFactory()
    key = balance_cache.key_for(user.pk)
    heard(listening)  # what creating the user sent
    with transaction.atomic():
        credits.grant(user=user, amount=100, kind="purchase", reason="test")
        assert heard(listening) == []  # sent in the transaction: nothing before COMMIT
    assert key in keys_in(heard(listening))

    with pytest.raises(InsufficientCredits):
        credits.deduct(user=user, operation="full_search", idempotency_key="too-much")
    assert heard(listening) == []  # rolled back: never delivered

    with pytest.raises(RuntimeError), transaction.atomic():
        credits.deduct(user=user, operation="company_search", idempotency_key="undone")
        raise RuntimeError
    assert heard(listening) == []


def test_a_burst_in_one_transaction_is_one_notification(listening):
    user = UserFactory()
    heard(listening)
    with transaction.atomic():
        for n in range(20):
            credits.grant(user=user, amount=1, kind="bonus", reason="burst", idempotency_key=f"b{n}")
        notifications.mark_shown(user=user, notification_id=2)
        coherence.evict_on_commit("other:1", "other:2")
    messages = heard(listening)
    assert len(messages) == 1
    assert keys_in(messages) == {balance_cache.key_for(user.pk), "other:1", "other:2"}
    assert tables_in(messages) == {"user_notifications"}


def test_cachalot_writes_are_broadcast_orm_raw_and_autocommit(listening):
    user = UserFactory()
    heard(listening)
    notifications.mark_shown(user=user, notification_id=1)  # raw INSERT inside atomic
    assert "user_notifications" in tables_in(heard(listening))
    User.objects.filter(pk=user.pk).update(username="renamed")  # ORM write in autocommit
    assert "users" in tables_in(heard(listening))
    # After the autocommit write, the listener's re-read must see it: a notification is sent
    # after the statement too (cachalot registers an ORM write just before it runs).
    with psycopg.connect(**coherence.listener_connection_kwargs()) as other:
        name = other.execute("SELECT username FROM users WHERE id = %s", [user.pk]).fetchone()[0]
    assert name == "renamed"


def test_payloads_stay_under_the_limit_and_a_bulk_change_clears():
    pending = coherence._Pending()
    pending.keys.update(f"credits:balance:{n}" for n in range(2000))
    pending.tables.add("users")
    payloads = coherence.payloads(pending)
    assert len(payloads) > 1
    assert all(len(p.encode()) < 8000 for p in payloads)
    decoded = [json.loads(p) for p in payloads]
    assert keys_in(decoded) == pending.keys and tables_in(decoded) == {"users"}

    pending.keys.update(f"k{n}" for n in range(coherence.MAX_KEYS))
    assert [json.loads(p)["c"] for p in coherence.payloads(pending)] == [1]


def test_a_large_migration_batch_reaches_postgresql(listening):
    """Many keys in one transaction: several notifications, each accepted by PostgreSQL."""
    with transaction.atomic():
        coherence.evict_on_commit(*(f"credits:balance:{n}" for n in range(3000)))
    messages = heard(listening)
    assert len(messages) > 1 and len(keys_in(messages)) == 3000


# --- the listener ----------------------------------------------------------------------------


@pytest.fixture
def running_listener():
    listener = coherence.start_listener()
    assert listener is not None
    wait_for(lambda: listener.connected)
    yield listener
    coherence.stop_listener()
    listener.join(timeout=10)


def _notify(payload: dict) -> None:
    """As another process would: a separate connection, its own transaction."""
    with psycopg.connect(**coherence.listener_connection_kwargs(), autocommit=True) as other:
        other.execute("SELECT pg_notify(%s, %s)", [coherence.CHANNEL, json.dumps(payload)])


def test_the_listener_evicts_keys_another_process_changed(running_listener):
    user = UserFactory()
    credits.grant(user=user, amount=100, kind="purchase", reason="test")
    key = balance_cache.key_for(user.pk)
    assert cache.get(key) is not None  # this process's own write: stored at commit
    time.sleep(0.3)  # its own notification comes back too, and must not evict it
    assert cache.get(key) is not None
    assert credit_selectors.get_balance(user_id=user.pk).balance == 100
    # Another process deducts: the row changes behind this process's back, then it notifies.
    with psycopg.connect(**coherence.listener_connection_kwargs(), autocommit=True) as other:
        other.execute("UPDATE user_credits SET balance = 90 WHERE user_id = %s", [user.pk])
    assert credit_selectors.get_balance(user_id=user.pk).balance == 100  # stale: not told yet
    _notify({"k": [key]})
    wait_for(lambda: cache.get(key) is None)
    assert credit_selectors.get_balance(user_id=user.pk).balance == 90


def test_the_listener_invalidates_cachalot_tables(running_listener):
    user = UserFactory()
    notifications.mark_shown(user=user, notification_id=1)

    def shown() -> set[int]:
        return {flag.id for flag in notification_selectors.user_flags(user_id=user.pk).notifications}

    assert shown() == {1}
    with psycopg.connect(**coherence.listener_connection_kwargs(), autocommit=True) as other:
        other.execute(
            "INSERT INTO user_notifications (user_id, kind, notification_id, shown_at, metadata) "
            "VALUES (%s, 'notification', 2, now(), '{}')",
            [user.pk],
        )
    assert shown() == {1}  # cachalot's entry, not yet invalidated
    _notify({"t": [UserNotification._meta.db_table]})
    wait_for(lambda: shown() == {1, 2})


def test_a_lost_listener_bypasses_the_cache_then_clears_it(running_listener, monkeypatch):
    user = UserFactory()
    credits.grant(user=user, amount=100, kind="purchase", reason="test")
    key = balance_cache.key_for(user.pk)
    # An entry the process believes: as if a change's notification had been missed.
    cache.set(key, (12345, 0, 0, False, None, 10**9, 0, None), 600)
    assert credit_selectors.get_balance(user_id=user.pk).balance == 12345

    # The listener's backend is killed and it cannot reconnect (the address now refuses).
    good = coherence.listener_connection_kwargs
    monkeypatch.setattr(coherence, "listener_connection_kwargs", lambda: {**good(), "port": "1"})
    backend = running_listener.backend_pid
    with psycopg.connect(**good(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [backend])
    wait_for(lambda: not coherence.usable())
    assert credit_selectors.get_balance(user_id=user.pk).balance == 100  # the database, not 12345
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["listener"]["ok"] is False

    monkeypatch.setattr(coherence, "listener_connection_kwargs", good)
    wait_for(lambda: coherence.usable())
    assert running_listener.backend_pid != backend
    assert cache.get(key) is None  # cleared before the cache was used again
    assert credit_selectors.get_balance(user_id=user.pk).balance == 100
    assert Client().get("/healthz").json()["checks"]["listener"] == {
        "ok": True,
        "reconnects": 1,
        "queue_usage": 0.0,
    }


def test_a_fill_is_refused_when_an_eviction_ran_during_the_read():
    user = UserFactory()
    token = balance_cache.fill_token(user.pk)
    coherence.evict_locally([balance_cache.key_for(user.pk)])  # a commit arrived meanwhile
    balance_cache.fill(user.pk, balance_cache.BalanceSnapshot(7, 0, 0, False, None), token)
    assert cache.get(balance_cache.key_for(user.pk)) is None

    token = balance_cache.fill_token(user.pk)
    balance_cache.fill(user.pk, balance_cache.BalanceSnapshot(7, 0, 0, False, None), token)
    assert cache.get(balance_cache.key_for(user.pk))[0] == 7


# --- the atomic version guard ----------------------------------------------------------------


def _race_versions(store_cache) -> tuple:
    key = "credits:balance:race"
    store_cache.delete(key)
    versions = list(range(1, 401))
    barrier = threading.Barrier(8)

    def writer(mine: list[int]) -> None:
        barrier.wait()
        for version in mine:
            store_cache.set_if_newer(key, (version, 0, 0, False, None, version), 60, version_index=5)

    threads = [threading.Thread(target=writer, args=(versions[i::8][::-1],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return store_cache.get(key)


def test_set_if_newer_keeps_the_newest_under_concurrent_writers_locmem():
    assert _race_versions(cache)[5] == 400


def test_set_if_newer_keeps_the_newest_under_concurrent_writers_redis():
    from fivedocks.cache_backends import CountingRedisCache

    redis_cache = CountingRedisCache("redis://127.0.0.1:6379/7", {"KEY_PREFIX": f"h16-{time.time_ns()}"})
    try:
        assert _race_versions(redis_cache)[5] == 400
    finally:
        redis_cache.delete("credits:balance:race")


def test_an_older_commit_callback_never_replaces_a_newer_entry():
    user = UserFactory()
    newer = balance_cache.BalanceSnapshot(50, 0, 0, False, None, version=20)
    older = balance_cache.BalanceSnapshot(60, 0, 0, False, None, version=10)
    balance_cache.store(user.pk, newer)
    balance_cache.store(user.pk, older)
    assert balance_cache.read(user.pk) == newer


def test_the_connection_sends_nothing_when_nothing_was_registered(listening):
    heard(listening)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert heard(listening) == []


def test_a_marker_pinned_in_a_transaction_is_heard_with_the_commit(listening):
    """Read-your-writes markers (fivedocks.replicas) reach every process's local memory."""
    with transaction.atomic():
        coherence.pin_on_commit("fd:wrote:7", 10)
        assert heard(listening, 0.2) == []  # nothing before the commit
    messages = heard(listening)
    assert [message.get("p") for message in messages] == [[["fd:wrote:7", 10]]]
    assert cache.get("fd:wrote:7") == 1  # the writer's own process sets it at commit


def test_the_listener_sets_markers_another_process_pinned(running_listener):
    cache.delete("fd:wrote:8")
    _notify({"p": [["fd:wrote:8", 10]]})
    wait_for(lambda: cache.get("fd:wrote:8") == 1)


def test_a_rolled_back_marker_is_never_sent(listening):
    with pytest.raises(RuntimeError), transaction.atomic():
        coherence.pin_on_commit("fd:wrote:9", 10)
        raise RuntimeError("rolled back")
    assert heard(listening) == []
    assert cache.get("fd:wrote:9") is None


def test_a_listening_process_remembers_the_write_freeze_until_told(running_listener):
    """A serving process asks the freeze table once, not before every write; a freeze committed
    by another process reaches it through the listener, and then every write is refused."""
    from django.test.utils import CaptureQueriesContext

    from cutover.selectors import freeze_cache_key
    from fivedocks.errors import WritesFrozen

    user = UserFactory()
    credits.grant(user=user, amount=100, kind="purchase", reason="test")
    credits.deduct(user=user, operation="company_search", idempotency_key="freeze:1")
    with CaptureQueriesContext(connection) as queries:
        credits.deduct(user=user, operation="company_search", idempotency_key="freeze:2")
    assert not [q for q in queries.captured_queries if "cutover_write_freezes" in q["sql"]]
    # Another process freezes credits: its commit notifies (set_freeze's evict_on_commit).
    with psycopg.connect(**coherence.listener_connection_kwargs(), autocommit=True) as other:
        other.execute(
            "INSERT INTO cutover_write_freezes (domain, frozen, reason, retry_after_seconds, updated_at) "
            "VALUES ('credits', true, 'final delta run', 20, now())"
        )
    _notify({"k": [freeze_cache_key("credits")]})
    wait_for(lambda: cache.get(freeze_cache_key("credits"), "gone") == "gone")
    with pytest.raises(WritesFrozen):
        credits.deduct(user=user, operation="company_search", idempotency_key="freeze:3")


def test_without_a_listener_every_write_reads_the_freeze(db):
    """A management command hears no notification: it must never trust a remembered answer."""
    from django.test.utils import CaptureQueriesContext

    assert not coherence.listening()
    user = UserFactory()
    credits.grant(user=user, amount=100, kind="purchase", reason="test")
    for n in range(2):
        with CaptureQueriesContext(connection) as queries:
            credits.deduct(user=user, operation="company_search", idempotency_key=f"nolisten:{n}")
        assert [q for q in queries.captured_queries if "cutover_write_freezes" in q["sql"]]
