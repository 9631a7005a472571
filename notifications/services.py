"""Writes of one-time flags: shown notifications, awarded badges, claimed easter eggs.

"Once" is the unique constraint (user, kind, notification_id) plus `INSERT ... ON CONFLICT DO
NOTHING RETURNING id`: of concurrent inserts of the same flag exactly one returns a row; the
others wait on the unique index until it commits and then insert nothing. That single answer
decides `created` for `mark_shown` and whether an easter egg's credits are granted.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cachalot.api import cachalot_disabled
from cachalot.api import invalidate as cachalot_invalidate
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from credits import services as credit_services
from credits.services import CreditResult
from fivedocks import bulk, changes
from fivedocks.errors import Conflict, DomainError, NotFound
from notifications import catalogue
from notifications.catalogue import Kind
from notifications.models import UserNotification


class UnknownNotification(NotFound):
    """No such notification or badge in the catalogue."""

    code = "unknown_notification"


class UnknownEasterEgg(NotFound):
    """No easter egg has this phrase."""

    code = "unknown_easter_egg"


class AlreadyClaimed(Conflict):
    """This easter egg was already claimed."""

    code = "already_claimed"


_TABLE = UserNotification._meta.db_table
_FIELDS = ("id", "user_id", "kind", "notification_id", "shown_at", "metadata")

_INSERT_SQL = f"""
    INSERT INTO {_TABLE} (user_id, kind, notification_id, shown_at, metadata)
    VALUES (%(user_id)s, %(kind)s, %(notification_id)s, %(shown_at)s, %(metadata)s::jsonb)
    ON CONFLICT (user_id, kind, notification_id) DO NOTHING
    RETURNING id
"""  # noqa: S608 - the table name is ours, every value is a parameter


def mark_shown(
    *,
    user,
    notification_id: int,
    kind: str = Kind.NOTIFICATION,
    metadata: dict | None = None,
) -> tuple[UserNotification, bool]:
    """Record that `user` saw a notification (or got a badge); `created` is False on a repeat."""
    if kind == Kind.EASTER_EGG:
        raise DomainError("Easter eggs are claimed with their phrase (claiming grants credits).")
    if kind not in catalogue.KINDS:
        raise DomainError(f"Unknown kind {kind!r}; known: {', '.join(catalogue.KINDS)}.")
    if catalogue.get(kind, notification_id) is None:
        raise UnknownNotification(f"Unknown {kind} id {notification_id}.")
    changes.guard_writes("notifications")
    with transaction.atomic():
        row = _insert_flag(user_id=user.pk, kind=kind, notification_id=notification_id, metadata=metadata)
        if row is not None:
            return row, True
        return _existing(user_id=user.pk, kind=kind, notification_id=notification_id), False


def award_badge(*, user, badge_id: int, metadata: dict | None = None) -> tuple[UserNotification, bool]:
    """Award a badge once; awarding it again returns the first award (`created` False)."""
    return mark_shown(user=user, notification_id=badge_id, kind=Kind.BADGE, metadata=metadata)


def claim_easter_egg(*, user, phrase: str) -> tuple[UserNotification, CreditResult]:
    """Claim the egg whose phrase this is and grant its credits, once per user.

    The flag and the ledger row are written in one transaction, flag first: a concurrent second
    claim blocks on the flag's unique index, inserts nothing once the first commits, and raises
    AlreadyClaimed before touching the credit account.
    """
    egg = catalogue.egg_for_phrase(phrase or "")
    if egg is None:
        raise UnknownEasterEgg()
    changes.guard_writes("notifications")
    changes.guard_writes("credits")
    with transaction.atomic():
        row = _insert_flag(
            user_id=user.pk,
            kind=Kind.EASTER_EGG,
            notification_id=egg.id,
            metadata={"reward": egg.reward},
        )
        if row is None:
            raise AlreadyClaimed(f"The easter egg {egg.name!r} was already claimed.")
        result = credit_services.grant(
            user=user,
            amount=egg.reward,
            kind=credit_services.Type.BONUS,
            reason=f"Easter egg: {egg.name}",
            idempotency_key=f"easter-egg:{egg.id}",
            metadata={"easter_egg_id": egg.id},
        )
    if result.replayed:
        # The ledger already held this egg's grant (its flag had been deleted): the flag is
        # back, and nothing was granted a second time.
        raise AlreadyClaimed(f"The easter egg {egg.name!r} was already claimed.")
    return row, result


def _insert_flag(
    *, user_id: int, kind: str, notification_id: int, metadata: dict | None
) -> UserNotification | None:
    """The inserted row, or None when the flag already exists (committed by anyone)."""
    values: dict[str, Any] = {
        "user_id": user_id,
        "kind": kind,
        "notification_id": notification_id,
        "shown_at": timezone.now(),
        "metadata": metadata or {},
    }
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT_SQL, {**values, "metadata": json.dumps(values["metadata"], cls=DjangoJSONEncoder)}
        )
        inserted = cursor.fetchone()
    # Raw SQL: say which table changed (cachalot defers this to the commit inside atomic).
    cachalot_invalidate(UserNotification)
    if inserted is None:
        return None
    changes.user_data_changed(domain="notifications", user_id=user_id)
    return UserNotification.from_db(connection.alias, _FIELDS, [inserted[0], *values.values()])


def _existing(*, user_id: int, kind: str, notification_id: int) -> UserNotification:
    # A write path reads the database, never a cached answer.
    with cachalot_disabled():
        return UserNotification.objects.get(user_id=user_id, kind=kind, notification_id=notification_id)


# --- flags moved from the KV store (kvmigrate) -----------------------------------------------------

_FLAGS = UserNotification._meta.db_table
_MIGRATED_FLAG_COLUMNS = ("user_id", "kind", "notification_id", "shown_at", "metadata")


@dataclass(frozen=True, slots=True)
class MigratedFlag:
    """One flag a KV record says its user has."""

    user_id: int
    kind: str
    notification_id: int
    shown_at: datetime
    metadata: str  # JSON (where it came from)


def load_migrated_flags(*, flags: Sequence[MigratedFlag], existing: Collection[tuple[int, str, int]]) -> int:
    """Copy in one batch of migrated flags; returns how many were new.

    Flags are a union: those the user already has stay, the new ones are copied in. `existing`
    holds the (user, kind, id) the caller found (`selectors.migrated_flags`, same transaction),
    and a flag listed twice goes in once (the first wins). The KV mirror is not told: the store is
    the source here. Frozen like every write; kvmigrate calls it inside
    `fivedocks.changes.freeze_exempt()`.
    """
    changes.guard_writes("notifications")
    have = set(existing)
    rows = []
    for flag in flags:
        key = (flag.user_id, flag.kind, flag.notification_id)
        if key not in have:
            have.add(key)
            rows.append((*key, flag.shown_at, flag.metadata))
    if rows:
        with transaction.atomic(savepoint=False):  # no savepoint: a round trip less per batch
            bulk.copy_rows(_FLAGS, _MIGRATED_FLAG_COLUMNS, rows)
            bulk.invalidate_on_commit(_FLAGS)
    return len(rows)
