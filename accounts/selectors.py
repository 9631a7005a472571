"""Reads of accounts: users by credential, and the users kvmigrate moves from the platform."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cachalot.api import get_last_invalidation
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection

from accounts import credential_cache
from accounts.models import ApiToken, User
from accounts.tokens import hash_key
from fivedocks import bulk

TOKEN = "api-token"  # the credential cache's kind for API tokens


def user_by_firebase_uid(*, firebase_uid: str) -> User | None:
    return User.objects.filter(firebase_uid=firebase_uid).first()


def user_for_api_token(*, key: str) -> User | None:
    """The active user owning this API key, or None. The one lookup by a key's hash; warm, it
    runs no query (`accounts.credential_cache`: key hash -> user id, the user through cachalot)."""
    digest = hash_key(key)

    def load() -> credential_cache.Found[int, User] | None:
        user_id = ApiToken.objects.filter(key_hash=digest).values_list("user_id", flat=True).first()
        if user_id is None:
            return None
        return credential_cache.Found(value=user_id, result=active_user(user_id))

    return credential_cache.remembered(TOKEN, digest, use=active_user, load=load)


def active_user(user_id: int) -> User | None:
    """The user behind a remembered credential, if still active.

    Every authenticated request asks this, so its warm path builds no query: the row read last
    is kept in this process (`_USER_ROWS`) with the stamp of cachalot's last invalidation of
    `users` at the time of the read, and is served while that stamp is unchanged. Any committed
    write to `users` (a deactivation, a permission change, an import) moves the stamp, in every
    worker (`fivedocks.coherence` broadcasts cachalot's invalidations), and the next request reads
    the row again. Compiling the ORM query just for cachalot to find its cached answer was 43%
    of a warm balance read's CPU (bench/_profile_read.py).
    """
    stamp = _users_stamp()
    if stamp:
        seen = _USER_ROWS.get(user_id)
        if seen is not None and seen[0] == stamp:
            return _fresh(seen[1])
    row = User.objects.filter(pk=user_id, is_active=True).values_list(*_USER_FIELDS).first()
    # The stamp read *before* the query: a write committed in between moves it, and the next
    # request reads again. Unknown (0: cachalot off, or its key culled) is never remembered.
    if stamp:
        _USER_ROWS.put(user_id, (stamp, row))
    return _fresh(row)


# --- the process's memory of user rows (see active_user) --------------------------------------

# Every column, in the model's order: what the ORM's own query loads, and what `from_db` takes.
_USER_FIELDS = [f.attname for f in User._meta.concrete_fields]


def _users_stamp() -> float:
    """When cachalot last invalidated `users` (0.0: unknown). One cache read, no query."""
    if not settings.CACHALOT_ENABLED:
        return 0.0
    return get_last_invalidation(User._meta.db_table, db_alias=DEFAULT_DB_ALIAS)


def _fresh(row: tuple | None) -> User | None:
    """A new instance per request (callers may change and save what they are given), built as
    the ORM builds one from a row."""
    return None if row is None else User.from_db(DEFAULT_DB_ALIAS, _USER_FIELDS, row)


class _BoundedRows:
    """user id -> (stamp, row); the least recently used dropped past `limit` (thread-safe)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._rows: OrderedDict[int, tuple[float, tuple | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, user_id: int) -> tuple[float, tuple | None] | None:
        with self._lock:
            seen = self._rows.get(user_id)
            if seen is not None:
                self._rows.move_to_end(user_id)
            return seen

    def put(self, user_id: int, seen: tuple[float, tuple | None]) -> None:
        with self._lock:
            self._rows[user_id] = seen
            self._rows.move_to_end(user_id)
            while len(self._rows) > self.limit:
                self._rows.popitem(last=False)


_USER_ROWS = _BoundedRows(limit=100_000)


# --- users moved from the platform (kvmigrate) --------------------------------------------------

USERS = User._meta.db_table


@dataclass(frozen=True, slots=True)
class ImportedUserState:
    """What fivedocks holds for a user the platform export names (to tell unchanged from updated)."""

    email: str
    username: str
    date_joined: datetime


def users_for_import(*, ids: Sequence[int], emails: Sequence[str]) -> dict[int, ImportedUserState]:
    """The users holding these ids or these email addresses, in one query (two index scans: an
    OR of both would scan the table)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, email, username, date_joined FROM {USERS} WHERE id = ANY(%s) "  # noqa: S608
            f"UNION SELECT id, email, username, date_joined FROM {USERS} WHERE email = ANY(%s)",
            [list(ids), list(emails)],
        )
        return {row[0]: ImportedUserState(*row[1:]) for row in cursor.fetchall()}


def firebase_uids_by_id(*, user_ids: Sequence[int]) -> bulk.Pairs:
    """(id, firebase_uid) of these users: part of kvmigrate's one read per batch."""
    return bulk.Pairs(f"SELECT id, firebase_uid FROM {USERS} WHERE id = ANY(%s)", (list(user_ids),))  # noqa: S608


def users_holding_firebase_uids(*, firebase_uids: Sequence[str]) -> bulk.Pairs:
    """(id, firebase_uid) of the users holding these Firebase uids."""
    return bulk.Pairs(
        f"SELECT id, firebase_uid FROM {USERS} WHERE firebase_uid = ANY(%s)",  # noqa: S608
        (list(firebase_uids),),
    )


def firebase_uids(*, user_ids: Sequence[int]) -> dict[int, str | None]:
    """User id -> Firebase uid (None: none yet) for those of these users that exist."""
    return dict(bulk.fetch_pairs({"users": firebase_uids_by_id(user_ids=user_ids)})["users"])


def user_page(*, after: int, size: int) -> list[tuple[int, str | None]]:
    """(id, firebase_uid) of the next `size` users with an id above `after`, in id order."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, firebase_uid FROM {USERS} WHERE id > %s ORDER BY id LIMIT %s",  # noqa: S608
            [after, size],
        )
        return cursor.fetchall()
