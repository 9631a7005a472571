"""Users the platform registered after the migration, found in fivedocks or imported on first sight.

The platform owns registration: fivedocks never creates users or ids of its own. A user id (or a
verified email) fivedocks does not know yet is looked up in the platform's `users` table at
`PLATFORM_DATABASE_URL` and imported with its id kept (the mapping of `kvmigrate --users-from`,
kvmigrate.users.clean). With that setting unset, only users fivedocks already has are found.

An imported user gets the platform's welcome credits once: the insert and the grant commit in one
transaction, and the grant carries an idempotency key, so concurrent first requests (each trying
the import) end with one user and one welcome grant.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from psycopg import sql

from accounts import services as account_services
from accounts.models import User
from credits import selectors as credit_selectors
from credits import services as credit_services
from cutover.selectors import freeze_for
from fiveducks import platform_db
from kvmigrate import users as user_import

logger = logging.getLogger(__name__)

WELCOME_KEY = "platform:welcome-bonus"
WELCOME_REASON = "Welcome bonus - {amount} free credits"


def find_or_import_user(*, user_id: int) -> User | None:
    """The user with this platform id, imported from the platform's database on first sight.

    None when neither fivedocks nor the platform knows the id (or the platform cannot be read).
    """
    if not isinstance(user_id, int) or isinstance(user_id, bool) or user_id <= 0:
        return None
    user = User.objects.filter(pk=user_id).first()
    if user is not None or not platform_db.enabled():
        return user
    return _import_where(sql.SQL("{} = %s"), [user_id], column=0)


def find_or_import_user_by_email(*, email: str) -> User | None:
    """The user with this (verified) email, imported from the platform on first sight.

    Only call this with an email the identity provider verified: an email alone is not proof.
    Emails are compared lower-cased (as fivedocks stores them, and as the platform's own users
    typed them in any case). On the platform that is a scan of `users`, paid only for an email
    fivedocks does not know yet.
    """
    given = (email or "").strip()
    if not given or "@" not in given:
        return None
    user = User.objects.filter(email=given.lower()).first()
    if user is not None or not platform_db.enabled():
        return user
    return _import_where(sql.SQL("lower({}) = %s"), [given.lower()], column=1)


def _import_where(condition: sql.SQL, params: list, *, column: int) -> User | None:
    columns = settings.PLATFORM_USERS_COLUMNS
    query = sql.SQL("SELECT {} FROM {} WHERE {} LIMIT 2").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        sql.Identifier(*settings.PLATFORM_USERS_TABLE.split(".")),
        condition.format(sql.Identifier(columns[column])),
    )
    try:
        with platform_db.cursor() as cur:
            cur.execute(query, params)
            rows = cur.fetchall()
    except platform_db.PlatformUnavailable as exc:
        logger.warning("first-sight import unavailable: %s", exc)
        return None
    if len(rows) != 1:
        return None
    raw = dict(zip(user_import.DEFAULT_COLUMNS, rows[0], strict=True))
    row = user_import.clean(raw)
    if isinstance(row, user_import.BadRow):
        logger.warning("platform user %s cannot be imported: %s", raw.get("id"), row.reason)
        return None
    with transaction.atomic():
        inserted = account_services.insert_user_if_new(user=row)
        user = User.objects.filter(pk=row.id).first()
        if user is None:
            logger.warning("platform user %s not imported: another user has the email address", row.id)
            return None
        if inserted:
            _welcome(user)
            logger.info("imported platform user %s on first sight", row.id)
    return user


def _welcome(user: User) -> None:
    """The welcome grant, unless credit writes are frozen for a cutover: a login or a read then
    still works, and the welcome comes with the first credit read after the freeze
    (`ensure_welcome`: the user still has no account)."""
    amount = settings.PLATFORM_WELCOME_CREDITS
    if amount > 0 and freeze_for("credits") is None:
        credit_services.grant(
            user=user,
            amount=amount,
            kind=credit_services.Type.BONUS,
            reason=WELCOME_REASON.format(amount=amount),
            idempotency_key=WELCOME_KEY,
            metadata={"source": "platform-first-sight"},
        )


def ensure_welcome(*, user: User) -> None:
    """The platform's lazy creation: a user's first credit read opens their account with the
    welcome credits (once: the grant's idempotency key). Users with an account are untouched."""
    if credit_selectors.get_balance(user_id=user.pk).last_updated is None:
        _welcome(user)
