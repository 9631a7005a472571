"""Writes for accounts: API tokens, and the users imported from the platform (ids kept)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from accounts import credential_cache, selectors
from accounts.models import ApiToken, User
from accounts.tokens import generate_key, hash_key
from fivedocks import bulk


def issue_api_token(*, user: User) -> str:
    """A new API key for `user`, replacing any earlier one. Returned once: only its hash is kept."""
    key = generate_key()
    with transaction.atomic():
        previous = ApiToken.objects.select_for_update().filter(user=user).values_list("key_hash", flat=True)
        credential_cache.forget_on_commit(selectors.TOKEN, *previous)
        ApiToken.objects.update_or_create(user=user, defaults={"key_hash": hash_key(key)})
    return key


def revoke_api_token(*, user: User) -> bool:
    """Delete the user's API key; True when there was one."""
    with transaction.atomic():
        tokens = ApiToken.objects.select_for_update().filter(user=user)
        credential_cache.forget_on_commit(selectors.TOKEN, *tokens.values_list("key_hash", flat=True))
        deleted, _ = tokens.delete()
    return bool(deleted)


# --- users moved from the platform (kvmigrate's --users-from, the first-sight import) ----------

USERS = User._meta.db_table
# An unusable password (Django's "!" prefix): imported users sign in through Firebase.
UNUSABLE_PASSWORD = "!kvmigrate-imported"
_USER_COLUMNS = (
    "id",
    "email",
    "username",
    "date_joined",
    "password",
    "is_superuser",
    "is_staff",
    "is_active",
)


@dataclass(frozen=True, slots=True)
class MigratedUser:
    """A platform user, cleaned (email lower-cased, username cut to fit): the id is kept."""

    id: int
    email: str
    username: str
    created_at: datetime | None  # None: a new user joins now, an existing one keeps its date


def _user_values(user: MigratedUser, now: datetime) -> tuple:
    return (user.id, user.email, user.username, user.created_at or now, UNUSABLE_PASSWORD, False, False, True)


_UPSERT_USERS_SQL = f"""
    INSERT INTO {USERS} (id, email, username, date_joined, password, is_superuser, is_staff, is_active)
    SELECT i, e, n, COALESCE(d, now()), %s, false, false, true
      FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::timestamptz[]) AS x(i, e, n, d)
    ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email, username = EXCLUDED.username{{joined}}
"""  # noqa: S608 - the table is ours, every value is a parameter


def load_migrated_users(*, users: Sequence[MigratedUser], existing: Collection[int]) -> None:
    """Write one batch of imported users (ids kept) in one transaction.

    `existing` holds the ids the caller found (`selectors.users_for_import`, same transaction):
    the others are copied in, these updated (email, username; date_joined only when the platform
    gives one). The first-sight import and the app's sign-up may create users at any time: a
    wrong guess fails on the unique index, it never writes a user twice. Not frozen (accounts has
    no write freeze) and not mirrored (the KV store holds no user record).
    """
    if not users:
        return
    present = set(existing)
    now = timezone.now()
    with transaction.atomic(savepoint=False):  # no savepoint: a round trip less per batch
        bulk.copy_rows(USERS, _USER_COLUMNS, [_user_values(u, now) for u in users if u.id not in present])
        again = [u for u in users if u.id in present]
        with connection.cursor() as cursor:
            for dated in (True, False):
                part = [u for u in again if (u.created_at is not None) is dated]
                if part:
                    joined = ", date_joined = EXCLUDED.date_joined" if dated else ""
                    ids, emails = [u.id for u in part], [u.email for u in part]
                    names, joined_at = [u.username for u in part], [u.created_at for u in part]
                    cursor.execute(
                        _UPSERT_USERS_SQL.format(joined=joined),
                        [UNUSABLE_PASSWORD, ids, emails, names, joined_at],
                    )
        bulk.invalidate_on_commit(USERS)


def load_migrated_firebase_uids(*, uids: Mapping[int, str]) -> None:
    """Set the Firebase uid of these users (user id -> uid), in one statement.

    The caller (kvmigrate) decided which record may claim which uid; a uid another user holds
    fails on the unique index rather than moving.
    """
    if not uids:
        return
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE {USERS} SET firebase_uid = v.uid
                  FROM unnest(%s::bigint[], %s::text[]) AS v(id, uid)
                 WHERE {USERS}.id = v.id AND {USERS}.firebase_uid IS DISTINCT FROM v.uid""",  # noqa: S608
            [list(uids), list(uids.values())],
        )
        bulk.invalidate_on_commit(USERS)


def move_user_id_sequence() -> int | None:
    """Move the users id sequence past the largest id; returns the new position.

    Never below the sequence's start: ids fivedocks creates itself begin far above the
    platform's (accounts migration 0002), so an import never pulls them back into its range.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [USERS])
        (sequence,) = cursor.fetchone()
        if sequence is None:
            return None
        cursor.execute(
            f"""SELECT setval(%s::regclass, GREATEST(
                   (SELECT COALESCE(MAX(id), 1) FROM {USERS}),
                   COALESCE(pg_sequence_last_value(%s::regclass), 1),
                   (SELECT seqstart - 1 FROM pg_sequence WHERE seqrelid = %s::regclass)))""",  # noqa: S608
            [sequence, sequence, sequence],
        )
        return cursor.fetchone()[0]


_INSERT_ONE_SQL = f"""
    INSERT INTO {USERS} ({", ".join(_USER_COLUMNS)}) VALUES ({", ".join(["%s"] * len(_USER_COLUMNS))})
    ON CONFLICT DO NOTHING
    RETURNING id
"""  # noqa: S608 - the columns are ours, every value is a parameter


def insert_user_if_new(*, user: MigratedUser) -> bool:
    """Insert one imported user (id kept) unless its id or email exists; True when inserted.

    The first-sight import (fiveducks.first_sight): the same mapping as `--users-from`, but it
    never updates a user fivedocks already has. Under concurrent inserts of the same user one
    inserts and the others wait on the unique index, then insert nothing.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_INSERT_ONE_SQL, list(_user_values(user, timezone.now())))
        inserted = cursor.fetchone() is not None
        if inserted:
            bulk.invalidate_on_commit(USERS)
    return inserted
