"""Reads of a user's flags. Served through cachalot: `user_notifications` is a cachable table,
so a repeat read costs no query until a write to the table invalidates it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection

from fivedocks import bulk
from fivedocks.replicas import read_alias
from notifications import catalogue
from notifications.catalogue import Kind
from notifications.models import UserNotification


@dataclass(frozen=True)
class Flag:
    id: int
    name: str
    shown_at: datetime


@dataclass(frozen=True)
class UserFlags:
    notifications: list[Flag] = field(default_factory=list)
    badges: list[Flag] = field(default_factory=list)
    easter_eggs: list[Flag] = field(default_factory=list)


_GROUP = {Kind.NOTIFICATION: "notifications", Kind.BADGE: "badges", Kind.EASTER_EGG: "easter_eggs"}


def user_flags(*, user_id: int) -> UserFlags:
    """The user's shown notifications, badges and claimed easter eggs, by id (from a replica
    unless the user just wrote; cachalot serves the primary's alias only)."""
    rows = (
        UserNotification.objects.using(read_alias(user_id=user_id))
        .filter(user_id=user_id)
        .order_by("kind", "notification_id")
        .values_list("kind", "notification_id", "shown_at")
    )
    flags = UserFlags()
    for kind, notification_id, shown_at in rows:
        group = getattr(flags, _GROUP[kind])
        group.append(
            Flag(id=notification_id, name=catalogue.name_of(kind, notification_id), shown_at=shown_at)
        )
    return flags


def has_flag(*, user_id: int, kind: str, notification_id: int) -> bool:
    return UserNotification.objects.filter(
        user_id=user_id, kind=kind, notification_id=notification_id
    ).exists()


# --- for kvmigrate -------------------------------------------------------------------------------

_FLAGS = UserNotification._meta.db_table


def migrated_flags(*, user_ids: Sequence[int]) -> bulk.Pairs:
    """(user id, "kind:notification_id") of every flag these users have."""
    return bulk.Pairs(
        f"SELECT user_id, kind || ':' || notification_id FROM {_FLAGS} WHERE user_id = ANY(%s)",  # noqa: S608
        (list(user_ids),),
    )


def flags_of(*, user_ids: Sequence[int]) -> set[tuple[int, str, int]]:
    """(user id, kind, notification id) of every flag these users have, one query for all."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT user_id, kind, notification_id FROM {_FLAGS} WHERE user_id = ANY(%s)",  # noqa: S608
            [list(user_ids)],
        )
        return set(cursor.fetchall())


def flag_of_pair(text: str) -> tuple[str, int]:
    """(kind, notification id) from the "kind:notification_id" text of `migrated_flags`."""
    kind, _, number = text.partition(":")
    return kind, int(number)
