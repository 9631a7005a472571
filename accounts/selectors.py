"""Reads of accounts: users by credential, and the users kvmigrate moves from the platform."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import connection

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
    user_id = credential_cache.lookup(TOKEN, digest)
    if user_id is not None:
        user = _active_user(user_id)
        if user is not None:
            return user
    fill = credential_cache.fill_token(TOKEN, digest)
    user_id = ApiToken.objects.filter(key_hash=digest).values_list("user_id", flat=True).first()
    user = _active_user(user_id) if user_id is not None else None
    if user is not None:
        credential_cache.fill(TOKEN, digest, user_id, fill)
    return user


def _active_user(user_id: int) -> User | None:
    # The same query on every path, so cachalot's cached answer serves the next request.
    return User.objects.filter(pk=user_id, is_active=True).first()


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
