"""Reads on streaming replicas: which database a read goes to, and how late each replica is.

With `DATABASE_REPLICA_URLS` set, every replica is a Django database alias (`replica_1`, ...).
A read goes to a replica only when someone chose it explicitly: a selector asks `read_alias()`
and reads `.using()` it, and an admin list page is routed by `ReadRoutingMiddleware`. Every other
read (sessions, authentication, services, anything inside a transaction) goes to the primary,
so a read nobody thought about can never be stale. `read_alias()` answers the primary when:

- no replica is configured, or every replica is down or later than `REPLICA_MAX_LAG_SECONDS`;
- the connection to the primary is inside a transaction (a write's reads, a money decision);
- the user wrote in the last `READ_YOUR_WRITES_SECONDS` (a short-lived marker in the cache,
  set when the write commits), so they always see their own change;
- the request is being retried because a replica failed under it (`ReadRoutingMiddleware`).

Cache refills never come here: they read the primary (a refill from a late replica would keep a
stale value for the entry's whole life), and django-cachalot is enabled on the primary's alias
only (its keys include the alias, so a write on the primary would never invalidate a replica's).

Lag is probed by each process, at most every `REPLICA_CHECK_SECONDS`, on a connection of its own:
0 when the replica has replayed everything it received from a streaming WAL receiver (an idle
primary makes no replica look late), otherwise the age of the last replayed transaction.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from fivedocks import coherence

logger = logging.getLogger(__name__)

PRIMARY = DEFAULT_DB_ALIAS
# A down replica is probed 5 times less often: each attempt may cost a connect timeout.
DOWN_RECHECK_FACTOR = 5

_LAG_SQL = """
SELECT pg_is_in_recovery(),
       pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn(),
       EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status IS NULL OR status = 'streaming'),
       EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8
"""


def replica_aliases() -> list[str]:
    return list(settings.DATABASE_REPLICAS)


# --- Per-request state: the choice made, the replicas used, a retry on the primary ----------


@dataclass
class _RequestState:
    choice: str | None = None  # the alias ORM reads without `.using()` go to (admin lists)
    primary_only: bool = False
    used: set[str] = field(default_factory=set)


_state: contextvars.ContextVar[_RequestState | None] = contextvars.ContextVar("fivedocks_reads", default=None)


@contextmanager
def request_scope() -> Iterator[_RequestState]:
    state = _RequestState()
    token = _state.set(state)
    try:
        yield state
    finally:
        _state.reset(token)


@contextmanager
def primary_only() -> Iterator[None]:
    """Every read in this block goes to the primary, whatever the selectors ask."""
    state = _state.get()
    if state is None:
        with request_scope() as state:
            state.primary_only = True
            yield
        return
    was, state.primary_only, state.choice = state.primary_only, True, None
    try:
        yield
    finally:
        state.primary_only = was


def replicas_used() -> set[str]:
    state = _state.get()
    return set(state.used) if state else set()


# --- Read-your-writes ------------------------------------------------------------------------


def _marker_key(user_id: int) -> str:
    return f"fd:wrote:{user_id}"


def _marker_cache():
    from django.core.cache import caches

    return caches[settings.READ_YOUR_WRITES_CACHE]


def note_write(*, user_id: int | None) -> None:
    """This user's data changed: read it from the primary for READ_YOUR_WRITES_SECONDS.

    Set when the transaction commits (at once outside one): a read made before the commit
    cannot see the change anyway, and a rollback changes nothing to read.
    """
    if user_id is None or not settings.DATABASE_REPLICAS or settings.READ_YOUR_WRITES_SECONDS <= 0:
        return

    if settings.READ_YOUR_WRITES_CACHE == "default":
        # The coherent cache: the marker reaches every worker's local memory with the commit's
        # notification (fivedocks.coherence), not only the writer's.
        coherence.pin_on_commit(_marker_key(user_id), settings.READ_YOUR_WRITES_SECONDS, using=PRIMARY)
        return

    def mark() -> None:
        try:
            _marker_cache().set(_marker_key(user_id), 1, settings.READ_YOUR_WRITES_SECONDS)
        except Exception:  # a cache outage: the user may read a replica, never an error
            logger.warning("could not set the read-your-writes marker", exc_info=True)

    transaction.on_commit(mark, using=PRIMARY)


def wrote_recently(*, user_id: int) -> bool:
    try:
        return _marker_cache().get(_marker_key(user_id)) is not None
    except Exception:
        return True  # cannot tell: the primary is always right


# --- The choice ---------------------------------------------------------------------------


def read_alias(*, user_id: int | None = None) -> str:
    """The database alias a read for `user_id` (None: nobody's own data) should use."""
    aliases = settings.DATABASE_REPLICAS
    if not aliases:
        return PRIMARY
    state = _state.get()
    if state is not None and state.primary_only:
        return PRIMARY
    if connections[PRIMARY].in_atomic_block:
        return PRIMARY
    if user_id is not None and wrote_recently(user_id=user_id):
        return PRIMARY
    usable = [alias for alias in aliases if MONITOR.usable(alias)]
    if not usable:
        return PRIMARY
    alias = usable[0] if len(usable) == 1 else random.choice(usable)
    if state is not None:
        state.used.add(alias)
    return alias


@contextmanager
def reading(*, user_id: int | None = None) -> Iterator[str]:
    """ORM reads in this block that name no database go to `read_alias(user_id)` (the router)."""
    alias = read_alias(user_id=user_id)
    state = _state.get()
    if state is None:
        with request_scope() as state:
            state.choice = alias
            yield alias
        return
    was, state.choice = state.choice, alias
    try:
        yield alias
    finally:
        state.choice = was


def _on_user_data_changed(domain: str, user_id: int) -> None:
    note_write(user_id=user_id)


def connect_signals() -> None:
    """Every committed change to a user's data pins that user to the primary for a while:
    whatever the services report through `fivedocks.changes.user_data_changed` (credits,
    notifications, subscriptions, Gmail connections; a webhook, a token refresh or staff as well
    as the user's own requests)."""
    from fivedocks import changes

    changes.subscribe(_on_user_data_changed)


class ReplicaRouter:
    """Writes and unchosen reads go to the primary; chosen reads to the chosen replica.

    Django builds the router on the first database access of a process that has replicas; that is
    when the read-your-writes markers get wired to the domain's change signals."""

    def __init__(self) -> None:
        connect_signals()

    def db_for_read(self, model, **hints):
        state = _state.get()
        if state is None or state.choice is None or state.primary_only:
            return PRIMARY
        if connections[PRIMARY].in_atomic_block:
            return PRIMARY  # a read inside a writing transaction
        return state.choice

    def db_for_write(self, model, **hints):
        return PRIMARY

    def allow_relation(self, obj1, obj2, **hints):
        return True  # every alias holds the same data

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == PRIMARY


# --- Health and lag -------------------------------------------------------------------------


@dataclass
class ReplicaStatus:
    alias: str
    up: bool = False
    lag_seconds: float | None = None
    in_recovery: bool | None = None
    streaming: bool | None = None
    error: str | None = None
    checked_at: float = 0.0  # time.monotonic(); 0: never probed

    def as_check(self, max_lag: float) -> dict:
        usable = self.up and self.lag_seconds is not None and self.lag_seconds <= max_lag
        check: dict = {"ok": usable, "up": self.up, "lag_seconds": self.lag_seconds}
        check["max_lag_seconds"] = max_lag
        if self.error:
            check["error"] = self.error
        return check


def _conninfo(alias: str) -> dict:
    db = connections.settings[alias]
    kwargs = {
        "dbname": db.get("NAME") or "",
        "user": db.get("USER") or "",
        "connect_timeout": settings.REPLICA_CONNECT_TIMEOUT,
        "application_name": "fivedocks-replica-probe",
        "autocommit": True,
        "prepare_threshold": None,  # safe behind PgBouncer in transaction mode
    }
    for key, name in (("HOST", "host"), ("PORT", "port"), ("PASSWORD", "password")):
        if db.get(key):
            kwargs[name] = str(db[key])
    options = db.get("OPTIONS", {})
    for name in ("sslmode", "sslrootcert", "sslcert", "sslkey"):
        if name in options:
            kwargs[name] = options[name]
    return kwargs


def measure(conn: psycopg.Connection) -> tuple[float | None, bool, bool]:
    """(lag in seconds or None when unknown, in recovery, WAL receiver streaming)."""
    in_recovery, caught_up, streaming, age = conn.execute(_LAG_SQL).fetchone()
    if not in_recovery:
        return 0.0, False, False  # a promoted replica (or the primary itself) is never behind
    if caught_up and streaming:
        return 0.0, True, True
    # Behind what it received, or cut off from the primary: as late as its last transaction.
    return (max(age, 0.0) if age is not None else None), True, bool(streaming)


class ReplicaMonitor:
    """Per-process view of each replica; a request probes at most once per interval, the others
    use the last answer meanwhile (a probe in progress never makes another request wait)."""

    def __init__(self) -> None:
        self._status: dict[str, ReplicaStatus] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._conns: dict[str, psycopg.Connection] = {}
        self._guard = threading.Lock()

    def _lock(self, alias: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(alias, threading.Lock())

    def status(self, alias: str, *, fresh: bool = False) -> ReplicaStatus:
        current = self._status.get(alias) or ReplicaStatus(alias)
        interval = settings.REPLICA_CHECK_SECONDS * (1 if current.up else DOWN_RECHECK_FACTOR)
        stale = not current.checked_at or time.monotonic() - current.checked_at >= interval
        if fresh or stale:
            lock = self._lock(alias)
            if lock.acquire(blocking=fresh):
                try:
                    current = self._probe(alias)
                finally:
                    lock.release()
        return current

    def usable(self, alias: str) -> bool:
        status = self.status(alias)
        lag = status.lag_seconds
        return status.up and lag is not None and lag <= settings.REPLICA_MAX_LAG_SECONDS

    def mark_down(self, alias: str, error: BaseException) -> None:
        """A read failed on this replica: route around it until a probe finds it well again."""
        self._status[alias] = ReplicaStatus(
            alias, up=False, error=error.__class__.__name__, checked_at=time.monotonic()
        )
        self._drop_connection(alias)

    def _drop_connection(self, alias: str) -> None:
        conn = self._conns.pop(alias, None)
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken
                conn.close()

    def _probe(self, alias: str) -> ReplicaStatus:
        try:
            conn = self._conns.get(alias)
            if conn is None or conn.closed:
                conn = self._conns[alias] = psycopg.connect(**_conninfo(alias))
            lag, in_recovery, streaming = measure(conn)
            status = ReplicaStatus(alias, True, lag, in_recovery, streaming, None, time.monotonic())
        except Exception as exc:
            # The class only: a driver's message may carry a host name or credentials.
            status = ReplicaStatus(alias, up=False, error=exc.__class__.__name__, checked_at=time.monotonic())
            self._drop_connection(alias)
        was = self._status.get(alias)
        if was is None or was.up != status.up:
            logger.log(
                logging.INFO if status.up else logging.WARNING,
                "replica %s is %s",
                alias,
                "up" if status.up else f"down ({status.error})",
            )
        self._status[alias] = status
        return status

    def reset(self) -> None:
        for alias in list(self._conns):
            self._drop_connection(alias)
        self._status.clear()


MONITOR = ReplicaMonitor()


def health_checks() -> dict[str, dict]:
    """One /healthz check per replica (`replica:<alias>`), probed now."""
    max_lag = settings.REPLICA_MAX_LAG_SECONDS
    return {
        f"replica:{alias}": MONITOR.status(alias, fresh=True).as_check(max_lag) for alias in replica_aliases()
    }


# --- The request: admin lists on a replica, a failed replica read retried on the primary ----

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ReadRoutingMiddleware:
    """Scopes the read choice to a request, and makes a down replica cost speed, not an error.

    - An admin list page (GET) reads from `read_alias(staff user)` through the router.
    - A write request that succeeds pins its user to the primary (read-your-writes), on top of
      the services' own markers for the user whose data changed.
    - A safe request whose view failed with a database error after reading a replica (it went
      down, or cancelled a query in a conflict with recovery) is run again on the primary, and
      that replica is skipped until a probe finds it well.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not settings.DATABASE_REPLICAS:
            return self.get_response(request)
        with request_scope():
            response = self.get_response(request)
        if request.method not in _SAFE_METHODS and response.status_code < 400:
            user = getattr(request, "user", None)
            if user is not None and user.is_authenticated:
                note_write(user_id=user.pk)
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        state = _state.get()
        match = request.resolver_match
        if (
            state is not None
            and request.method in _SAFE_METHODS
            and match is not None
            and match.namespace == "admin"
            and (match.url_name or "").endswith("_changelist")
            and request.user.is_authenticated
        ):
            state.choice = read_alias(user_id=request.user.pk)
        return None

    def process_exception(self, request, exception):
        from django.db import InterfaceError, OperationalError

        state = _state.get()
        if (
            state is None
            or state.primary_only
            or not state.used
            or request.method not in _SAFE_METHODS
            or not isinstance(exception, (OperationalError, InterfaceError))
        ):
            return None
        for alias in state.used:
            logger.warning(
                "read on replica %s failed (%s): retried on the primary", alias, type(exception).__name__
            )
            MONITOR.mark_down(alias, exception)
            connections[alias].close_if_unusable_or_obsolete()
        match = request.resolver_match
        with primary_only():
            response = match.func(request, *match.args, **match.kwargs)
            if hasattr(response, "render") and callable(response.render):
                response = response.render()
        return response
