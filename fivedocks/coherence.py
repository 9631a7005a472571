"""Coherent per-process caches across workers and hosts, through PostgreSQL LISTEN/NOTIFY.

The local-memory cache is per process: a change committed by one gunicorn worker is invisible
to the others' entries. Every write that a cached entry depends on registers what it changes
(cache keys to evict, django-cachalot tables to invalidate) on its database connection; just
before COMMIT the connection sends it as one `pg_notify` on `CHANNEL`, inside the writing
transaction (fivedocks/db/base.py), so PostgreSQL delivers it only if, and only when, the change
commits. Every process serving requests runs one listener thread with a connection of its own
(`start_listener`): it applies what arrives to the process's local cache, a burst at a time
(everything that is waiting is read before applying, keys deduplicated).

While the listener is not connected (starting, or its connection was lost) the process cannot
know what changed, so `usable()` is False and readers bypass the local cache; after it has
reconnected it clears the whole local cache and only then marks it usable again: no change made
during the gap is missed.

A reader that fills the cache from the database takes a `fill_token` before its query and fills
only if no eviction touched the key meanwhile (`fill`): otherwise a read that started before a
commit could store the old value after the eviction had run.

Reusable by any cache: `evict_on_commit(key, ...)` is all a writer needs; a reader uses
`usable`, `fill_token` and `fill`. Processes that never start a listener (management commands,
the test process) use their cache as before; with a shared cache (Redis) the broadcast is off
by default (`CACHE_BROADCAST`), since every process already sees one cache.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Iterable

from django.conf import settings
from django.core.cache import caches
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from fivedocks.metrics import COHERENCE_EVENTS

logger = logging.getLogger(__name__)

CHANNEL = "fivedocks_cache"
# PostgreSQL refuses a payload of 8000 bytes or more; larger sets go in several notifications.
MAX_PAYLOAD = 7000
# More keys than this in one transaction (a bulk load) are sent as "clear everything".
MAX_KEYS = 5000
# How long the listener waits for a notification before checking its connection is alive.
PING_SECONDS = 5.0
# A cachalot result computed from a read that began before a commit can be stored just after
# the invalidation (cachalot stamps results when the query ends); tables are invalidated a
# second time after this delay so such a result does not outlive it.
SECOND_PASS_SECONDS = 1.0
_SLOTS = 4096  # eviction counters for the fill guard (a collision only skips a fill)


# --- Sending: registered in the transaction, flushed before COMMIT -------------------------


class _Pending:
    __slots__ = ("clear", "keys", "pins", "tables")

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.tables: set[str] = set()
        self.pins: dict[str, int] = {}  # short-lived markers to set everywhere: key -> seconds
        self.clear = False

    def __bool__(self) -> bool:
        return bool(self.keys or self.tables or self.pins or self.clear)


def broadcast_enabled() -> bool:
    return settings.CACHE_BROADCAST


def _pending_for(connection) -> _Pending:
    pending = getattr(connection, "_coherence_pending", None)
    if pending is None:
        pending = connection._coherence_pending = _Pending()
    return pending


def evict_on_commit(*keys: str, using: str = DEFAULT_DB_ALIAS) -> None:
    """Drop these local-cache keys in every process once the current transaction commits.

    Call it inside the writing transaction. The notification is sent in that transaction (never
    on rollback); this process drops the keys at commit as well, without waiting for its own
    listener. Outside a transaction (autocommit) it is sent after the statement that follows.
    """
    if not keys:
        return
    if broadcast_enabled():
        _register(connections[using], keys=keys)
    transaction.on_commit(lambda: evict_locally(keys), using=using)


def pin_on_commit(key: str, seconds: int, *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Set a short-lived marker (`key` -> 1 for `seconds`) in every process's local cache once
    the current transaction commits, e.g. "this user just wrote: read the primary" (replicas).

    Markers travel in the same notification as evictions; without the broadcast (a shared
    cache) the one cache is set at commit.
    """
    if broadcast_enabled():
        pending = _pending_for(connections[using])
        pending.pins[key] = max(pending.pins.get(key, 0), int(seconds))
        _register(connections[using])
    transaction.on_commit(lambda: _pin_locally({key: seconds}), using=using)


def _pin_locally(pins: dict[str, int]) -> None:
    try:
        cache = local_cache()
        for key, seconds in pins.items():
            cache.set(key, 1, seconds)
    except Exception:  # a marker is an optimisation of correctness for reads; never an error
        logger.warning("could not set a cache marker", exc_info=True)


def invalidate_tables_on_commit(tables: Iterable[str], *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Have every process invalidate cachalot's results for these tables at commit.

    Called by the hook on cachalot's own invalidation (`install_cachalot_hook`), which cachalot
    runs for every write to a cachable table, ORM or raw SQL, with the writer's connection.
    """
    if broadcast_enabled() and not _applying.active:
        _register(connections[using], tables=tables)


def _register(connection, *, keys: Iterable[str] = (), tables: Iterable[str] = ()) -> None:
    pending = _pending_for(connection)
    pending.keys.update(keys)
    pending.tables.update(tables)
    if not connection.in_atomic_block and connection.get_autocommit():
        # Autocommit: the write is its own transaction, and it may be just before this call (raw
        # SQL, an on_commit callback) or just after (cachalot invalidates before an ORM write).
        # Send now, and again after the next statement (fivedocks/db/base.py).
        _send(connection, pending)


# This process's name on the channel: its own notifications need no applying (the writer's
# process updates its cache at commit itself). Renewed in a forked child.
_origin = uuid.uuid4().hex[:12]


def payloads(pending: _Pending) -> list[str]:
    """The notification payloads for one transaction: compact JSON, each under MAX_PAYLOAD."""
    pins = sorted([key, seconds] for key, seconds in pending.pins.items())
    if pending.clear or len(pending.keys) > MAX_KEYS:
        return [json.dumps({"o": _origin, "c": 1, **({"p": pins} if pins else {})}, separators=(",", ":"))]
    out: list[str] = []
    keys, tables = sorted(pending.keys), sorted(pending.tables)
    message: dict = {"o": _origin}
    if pins:  # a few markers a transaction: one user's
        message["p"] = pins
    size = 24 + len(json.dumps(message.get("p", [])))
    for field, values in (("k", keys), ("t", tables)):
        for value in values:
            cost = len(json.dumps(value)) + 1
            if size + cost + 8 > MAX_PAYLOAD and len(message) > 1:
                out.append(json.dumps(message, separators=(",", ":")))
                message, size = {"o": _origin}, 24
            message.setdefault(field, []).append(value)
            size += cost + (6 if len(message[field]) == 1 else 0)
    if len(message) > 1:
        out.append(json.dumps(message, separators=(",", ":")))
    return out


_NOTIFY_SQL = f"SELECT pg_notify('{CHANNEL}', p) FROM unnest(%s::text[]) AS p"  # noqa: S608 - a constant


def flush(connection) -> None:
    """Send what this connection's transaction registered (called just before its COMMIT)."""
    pending = getattr(connection, "_coherence_pending", None)
    if not pending:
        return
    connection._coherence_pending = None
    _send(connection, pending)


def flush_and_commit(connection) -> None:
    """Send the transaction's notification and COMMIT in one round trip.

    Literal values and no parameters make psycopg use the simple query protocol, which runs
    both statements of the string in order; the session is then idle, so psycopg's own
    `commit()` sends nothing more. A failing COMMIT raises here as it would from `commit()`.
    """
    from psycopg import sql

    pending = connection._coherence_pending
    connection._coherence_pending = None
    raw = connection.connection
    notify = sql.SQL(", ").join(
        sql.SQL("pg_notify({}, {})").format(sql.Literal(CHANNEL), sql.Literal(payload))
        for payload in payloads(pending)
    )
    raw.execute(sql.SQL("SELECT {}; COMMIT").format(notify).as_string(raw))
    raw.commit()  # the session is idle: nothing is sent; keeps psycopg's bookkeeping in step
    COHERENCE_EVENTS.labels("sent").inc()


def _send(connection, pending: _Pending) -> None:
    with connection.connection.cursor() as cursor:  # the raw psycopg cursor: no cachalot, no metrics
        cursor.execute(_NOTIFY_SQL, [payloads(pending)])
    COHERENCE_EVENTS.labels("sent").inc()


def discard(connection) -> None:
    """A rollback; or a transaction beginning, after autocommit registrations already sent."""
    connection._coherence_pending = None


# --- Applying, in every process ------------------------------------------------------------


class _Applying(threading.local):
    active = False


_applying = _Applying()
_lock = threading.Lock()  # held while evicting and while a reader checks-and-fills
_slots = [0] * _SLOTS
_epoch = 0  # bumped when the whole cache is cleared


def _slot(key: str) -> int:
    return hash(key) % _SLOTS


def local_cache():
    return caches["default"]


def evict_locally(keys: Iterable[str]) -> None:
    keys = list(keys)
    with _lock:
        for key in keys:
            _slots[_slot(key)] += 1
        try:
            local_cache().delete_many(keys)
        except Exception:
            COHERENCE_EVENTS.labels("apply_error").inc()
            logger.warning("cache eviction failed", exc_info=True)


def invalidate_tables_locally(tables: Iterable[str]) -> None:
    from cachalot.utils import _invalidate_tables  # the original, not the broadcasting hook

    tables = list(tables)
    _applying.active = True
    try:
        for alias in settings.CACHES:
            _invalidate_tables(caches[alias], DEFAULT_DB_ALIAS, tables)
    except Exception:
        COHERENCE_EVENTS.labels("apply_error").inc()
        logger.warning("cachalot invalidation failed", exc_info=True)
    finally:
        _applying.active = False


def clear_locally() -> None:
    global _epoch
    with _lock:
        _epoch += 1
        try:
            local_cache().clear()
        except Exception:
            COHERENCE_EVENTS.labels("apply_error").inc()
            logger.warning("cache clear failed", exc_info=True)


def apply(raw_payloads: Iterable[str]) -> tuple[set[str], set[str]]:
    """Apply a batch of notification payloads: one eviction and one invalidation for the lot."""
    keys: set[str] = set()
    tables: set[str] = set()
    pins: dict[str, int] = {}
    clear = False
    for raw in raw_payloads:
        try:
            message = json.loads(raw)
        except ValueError:
            logger.warning("ignored a malformed cache notification")
            continue
        if message.get("o") == _origin:
            continue  # this process's own change: applied at its commit already
        clear = clear or bool(message.get("c"))
        keys.update(message.get("k", ()))
        tables.update(message.get("t", ()))
        for key, seconds in message.get("p", ()):
            pins[key] = max(pins.get(key, 0), int(seconds))
    if clear:
        clear_locally()
        _pin_locally(pins)
        return keys, tables
    if pins:
        _pin_locally(pins)
    if keys:
        evict_locally(keys)
    if tables:
        invalidate_tables_locally(tables)
    COHERENCE_EVENTS.labels("applied").inc()
    return keys, tables


# --- Reading -------------------------------------------------------------------------------

_listener: Listener | None = None


def usable() -> bool:
    """May this process read (and fill) its local cache now? False while its listener is down."""
    listener = _listener
    return listener is None or listener.connected


def listening() -> bool:
    """Is this process told of every committed change now (its listener started and connected)?

    Stricter than `usable()`: a process that never started a listener (a management command)
    hears nothing, so state that must be seen at once (a write freeze) is never kept locally there.
    """
    listener = _listener
    return listener is not None and listener.connected


def fill_token(key: str) -> tuple[int, int] | None:
    """Taken before reading the database for `key`; None when the cache must not be used."""
    if not usable():
        return None
    return (_epoch, _slots[_slot(key)])


def fill(key: str, value, timeout: float | None, token: tuple[int, int] | None) -> bool:
    """Store a value read from the database unless an eviction of `key` (or a clear) happened
    since `token` was taken; never replaces an entry a write stored meanwhile (`add`)."""
    if token is None:
        return False
    with _lock:
        if not usable() or token != (_epoch, _slots[_slot(key)]):
            return False
        try:
            return local_cache().add(key, value, timeout)
        except Exception:
            logger.warning("cache fill failed", exc_info=True)
            return False


# --- The listener thread -------------------------------------------------------------------


def listener_connection_kwargs() -> dict:
    """A direct connection of its own (LISTEN needs a session, not a pooled transaction)."""
    # DATABASE_DIRECT_URL when set: through PgBouncer in transaction mode LISTEN would not hold.
    db = settings.DATABASES[settings.DIRECT_DATABASE_ALIAS]
    kwargs = {
        "dbname": db["NAME"],
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        "host": db.get("HOST") or None,
        "port": str(db["PORT"]) if db.get("PORT") else None,
        "connect_timeout": 5,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "application_name": f"fivedocks-cache-listener:{os.getpid()}",
    }
    return {k: v for k, v in kwargs.items() if v is not None}


class Listener(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="fivedocks-cache-listener", daemon=True)
        self.connected = False
        self.connected_since: float | None = None
        self.reconnects = 0
        self.last_error = ""
        self.backend_pid: int | None = None
        self._stopping = threading.Event()
        self._second_pass: list[tuple[float, set[str]]] = []

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        import psycopg

        delay = 0.05
        while not self._stopping.is_set():
            try:
                with psycopg.connect(**listener_connection_kwargs(), autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    # Everything committed from here on is delivered; what committed before (or
                    # during a gap) is covered by clearing the whole cache before using it again.
                    clear_locally()
                    self.backend_pid = conn.info.backend_pid
                    self.connected_since = time.time()
                    self.connected = True
                    COHERENCE_EVENTS.labels("connected").inc()
                    delay = 0.05
                    self._listen(conn)
            except Exception as exc:
                self.last_error = f"{exc.__class__.__name__}: {str(exc).strip()[:200]}"
            finally:
                if self.connected and not self._stopping.is_set():
                    self.reconnects += 1
                    COHERENCE_EVENTS.labels("disconnected").inc()
                    logger.warning("cache listener lost its connection; bypassing the local cache")
                self.connected = False
                self.backend_pid = None
            if self._stopping.wait(delay * (1 + random.random())):
                break
            delay = min(delay * 2, 2.0)

    def _listen(self, conn) -> None:
        while not self._stopping.is_set():
            wait = PING_SECONDS
            if self._second_pass:
                wait = max(0.0, min(wait, self._second_pass[0][0] - time.monotonic()))
            batch = [n.payload for n in conn.notifies(timeout=wait, stop_after=1)]
            if batch:
                batch += [n.payload for n in conn.notifies(timeout=0)]  # the rest of the burst
                _, tables = apply(batch)
                if tables:
                    self._second_pass.append((time.monotonic() + SECOND_PASS_SECONDS, tables))
            elif not self._second_pass:
                conn.execute("SELECT 1")  # a silent connection may be dead: find out
            now = time.monotonic()
            while self._second_pass and self._second_pass[0][0] <= now:
                invalidate_tables_locally(self._second_pass.pop(0)[1])


def start_listener() -> Listener | None:
    """Start this process's listener (once per process; again in a forked child)."""
    global _listener
    if not broadcast_enabled():
        return None
    if _listener is not None and _listener.is_alive():
        return _listener
    _listener = Listener()
    _listener.start()
    return _listener


def stop_listener() -> None:
    global _listener
    listener, _listener = _listener, None
    if listener is not None:
        listener.stop()


def listener() -> Listener | None:
    return _listener


def _after_fork_in_child() -> None:
    # A thread does not survive fork: a child of a process that listened starts its own. Its
    # notifications are not its parent's (nor a sibling's): a new origin.
    global _listener, _origin
    _origin = uuid.uuid4().hex[:12]
    if _listener is not None:
        _listener = None
        start_listener()


os.register_at_fork(after_in_child=_after_fork_in_child)


def health() -> dict | None:
    """The listener's check for /healthz; None when this process runs none."""
    listener = _listener
    if listener is None:
        return None
    check = {"ok": listener.connected, "reconnects": listener.reconnects}
    if not listener.connected and listener.last_error:
        check["error"] = listener.last_error
    return check


# --- cachalot's invalidations go through the same channel -------------------------------------

_hooked = False


def install_cachalot_hook() -> None:
    """Wrap cachalot's one table-invalidation step (django-cachalot 2.9.x, `cachalot.api`), so
    every table it invalidates for a write is also broadcast in the writer's transaction."""
    global _hooked
    if _hooked:
        return
    import cachalot.api

    original = cachalot.api._invalidate_tables

    def _invalidate_and_broadcast(cache, db_alias, tables):
        original(cache, db_alias, tables)
        from cachalot.utils import filter_cachable

        cachable = filter_cachable(set(tables))
        if cachable:
            invalidate_tables_on_commit(cachable, using=db_alias or DEFAULT_DB_ALIAS)

    _invalidate_and_broadcast.__wrapped__ = original
    cachalot.api._invalidate_tables = _invalidate_and_broadcast
    _hooked = True
