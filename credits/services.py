"""The only code that changes a credit balance.

Every change is one transaction: a conditional `UPDATE ... RETURNING` (the database decides
whether there are enough credits, so concurrent requests can never spend the same credits) and
the ledger row carrying the resulting `balance_after`. A replayed idempotency key returns the
first result and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from credits import cache as balance_cache
from credits import paid_plans
from credits.models import CreditAccount, CreditHold, CreditTransaction, PendingCreditChange
from credits.selectors import OPEN_HOLDS_SQL, balance_from_database
from fivedocks import bulk, changes
from fivedocks.errors import Conflict, DomainError, NotFound, PermissionRequired
from fivedocks.metrics import CREDIT_HOLDS, CREDIT_OPERATIONS

Type = CreditTransaction.Type


class InsufficientCredits(DomainError):
    """Not enough credits for this operation."""

    status_code = 402
    code = "insufficient_credits"


class UnknownOperation(DomainError):
    """Unknown operation."""

    status_code = 400
    code = "unknown_operation"


class AmountOutOfRange(DomainError):
    """A single change may move at most MAX_CHANGE credits."""

    code = "amount_out_of_range"


class BalanceLimit(Conflict):
    """The balance would exceed MAX_BALANCE."""

    code = "balance_limit"


# Bounds far above any real use that keep every sum inside PostgreSQL's bigint: past them a
# request is refused with a domain error instead of failing in the database (found by fuzzing).
MAX_CHANGE = 1_000_000_000
MAX_BALANCE = 10**15


class SelfGrantRefused(PermissionRequired):
    """Staff cannot grant or adjust their own credits."""

    code = "self_grant_refused"


class ApprovalRequired(PermissionRequired):
    """A change this large needs a second staff member's approval."""

    code = "approval_required"


# The permission every staff path that moves money needs (checked here, not in the views).
GRANT_PERMISSION = "credits.grant_credits"
# Client-supplied idempotency keys live under this prefix, so a user can never take a key the
# system uses (`monthly-allowance:2026-12`, `easter-egg:...`, `stripe-invoice:...`).
USER_KEY_PREFIX = "user:"


# The ledger column holds 255 characters, the prefix included.
MAX_CLIENT_KEY_LENGTH = 255 - len(USER_KEY_PREFIX)


def user_idempotency_key(client_key: str) -> str:
    """The stored form of a key a user (or staff member) sent through the API."""
    if len(client_key) > MAX_CLIENT_KEY_LENGTH:
        raise DomainError(
            f"An idempotency key has at most {MAX_CLIENT_KEY_LENGTH} characters.",
            idempotency_key=[f"Ensure this field has no more than {MAX_CLIENT_KEY_LENGTH} characters."],
        )
    return f"{USER_KEY_PREFIX}{client_key}"


def approval_threshold() -> int:
    """Staff changes moving more than this many credits wait for a second staff member."""
    return settings.CREDITS_APPROVAL_THRESHOLD


def authorize_staff_change(*, actor, user, amount: int, approved: bool = False) -> None:
    """Raise unless `actor` may move `amount` credits on `user`'s account.

    Every staff path calls this through grant/refund/adjust (`created_by` is the actor): the
    permission, never one's own account, and the second-staff rule above the threshold.
    """
    if not (actor.is_active and actor.is_staff and actor.has_perm(GRANT_PERMISSION)):
        raise PermissionRequired("Granting or adjusting credits needs the credits.grant_credits permission.")
    if actor.pk == user.pk:
        raise SelfGrantRefused
    if abs(amount) > approval_threshold() and not approved:
        raise ApprovalRequired(
            f"Changes above {approval_threshold():,} credits need a second staff member's approval."
        )


class IdempotencyKeyReused(Conflict):
    """This idempotency key was already used for a different operation."""

    code = "idempotency_key_reused"


@dataclass(frozen=True)
class CreditResult:
    transaction: CreditTransaction
    replayed: bool

    @property
    def balance(self) -> int:
        return self.transaction.balance_after


def operation_cost(operation: str) -> int:
    try:
        return settings.CREDIT_OPERATION_COSTS[operation]
    except KeyError:
        known = ", ".join(sorted(settings.CREDIT_OPERATION_COSTS))
        raise UnknownOperation(f"Unknown operation {operation!r}; known: {known}.") from None


def grant(
    *,
    user,
    amount: int,
    kind: str = Type.BONUS,
    reason: str,
    idempotency_key: str | None = None,
    metadata: dict | None = None,
    created_by=None,
    client_key: str | None = None,
) -> CreditResult:
    """Add credits (purchase, bonus, allowance). Unblocks an account that returns to >= 0.

    `client_key`: a key a caller sent (stored as `user:<key>`; see `deduct`).
    """
    if amount <= 0:
        raise DomainError("A grant must be a positive number of credits.")
    if kind not in (Type.PURCHASE, Type.BONUS, Type.ALLOWANCE):
        raise DomainError(f"A grant cannot be of type {kind!r}.")
    if created_by is not None:
        authorize_staff_change(actor=created_by, user=user, amount=amount)
    return _apply(
        user=user,
        amount=amount,
        kind=kind,
        reason=reason,
        idempotency_key=user_idempotency_key(client_key) if client_key else idempotency_key,
        legacy_key=client_key,
        metadata=metadata,
        created_by=created_by,
    )


def deduct(
    *,
    user,
    operation: str,
    idempotency_key: str | None = None,
    client_key: str | None = None,
    metadata: dict | None = None,
) -> CreditResult:
    """Charge an operation's cost from settings.CREDIT_OPERATION_COSTS; never below 0.

    `client_key` is a key the user sent: stored as `user:<key>` (its own namespace), and a key
    stored unprefixed before the namespace existed still replays.
    """
    cost = operation_cost(operation)
    return _apply(
        user=user,
        amount=-cost,
        kind=Type.DEDUCTION,
        reason=operation,
        idempotency_key=user_idempotency_key(client_key) if client_key else idempotency_key,
        legacy_key=client_key,
        metadata={"operation": operation, **(metadata or {})},
    )


def refund(
    *,
    user,
    amount: int,
    reason: str,
    idempotency_key: str | None = None,
    metadata: dict | None = None,
    created_by=None,
) -> CreditResult:
    """Give back used credits (lowers total_used)."""
    if amount <= 0:
        raise DomainError("A refund must be a positive number of credits.")
    if created_by is not None:
        authorize_staff_change(actor=created_by, user=user, amount=amount)
    return _apply(
        user=user,
        amount=amount,
        kind=Type.REFUND,
        reason=reason,
        idempotency_key=idempotency_key,
        metadata=metadata,
        created_by=created_by,
    )


def adjust(
    *,
    user,
    amount: int,
    reason: str,
    created_by=None,
    idempotency_key: str | None = None,
) -> CreditResult:
    """A staff correction, either sign; a reason is required and the balance stays >= 0."""
    if not reason or not reason.strip():
        raise DomainError("An adjustment needs a reason.", reason=["This field is required."])
    if amount == 0:
        raise DomainError("An adjustment of 0 credits changes nothing.")
    if created_by is not None:
        authorize_staff_change(actor=created_by, user=user, amount=amount)
    return _apply(
        user=user,
        amount=amount,
        kind=Type.ADJUSTMENT,
        reason=reason.strip(),
        idempotency_key=idempotency_key,
        metadata=None,
        created_by=created_by,
    )


def ensure_account(*, user_id: int) -> None:
    """Create the account row if missing; safe under concurrency (ON CONFLICT DO NOTHING)."""
    changes.guard_writes("credits")
    with transaction.atomic():
        _ensure_account(user_id=user_id)
        changes.user_data_changed(domain="credits", user_id=user_id)


def _ensure_account(*, user_id: int) -> None:
    now = timezone.now()
    CreditAccount.objects.bulk_create(
        [CreditAccount(user_id=user_id, last_updated=now, created_at=now)], ignore_conflicts=True
    )


_TABLE = CreditAccount._meta.db_table
_LEDGER_TABLE = CreditTransaction._meta.db_table
_LEDGER_FIELDS = CreditTransaction._meta.concrete_fields
_LEDGER_COLUMNS = ", ".join(str(f.column) for f in _LEDGER_FIELDS)
_LEDGER_ATTNAMES = [f.attname for f in _LEDGER_FIELDS]
_METADATA_FIELD = CreditTransaction._meta.get_field("metadata")

# Totals follow the ledger: purchases raise total_purchased, deductions raise total_used,
# refunds lower it; bonus, allowance, adjustment and migration rows leave both alone.
_UPDATE_SQL = f"""
    UPDATE {_TABLE}
       SET balance = balance + %(amount)s,
           total_purchased = total_purchased + %(purchased)s,
           total_used = total_used + %(used)s,
           is_blocked = CASE WHEN balance + %(amount)s >= 0 THEN FALSE ELSE is_blocked END,
           last_updated = %(now)s
     WHERE user_id = %(user_id)s
       AND (%(amount)s >= 0 OR balance + %(amount)s >= 0)
       AND (%(amount)s <= 0 OR balance + %(amount)s <= %(max_balance)s)
 RETURNING balance, total_purchased, total_used, is_blocked
"""  # noqa: S608 - the table name is ours, every value is a parameter

_INSERTED_FIELDS = [f for f in _LEDGER_FIELDS if f.attname != "id"]

# The ledger row, written only if the open holds leave room for a removal: the holds are summed
# here, after the UPDATE above took the account's row lock, so this statement's snapshot sees
# every hold committed by a transaction that held that lock before us (a hold is opened under
# the same lock). A key this user already used inserts nothing either. The statement always
# answers one row: the new id (NULL when nothing was inserted), the open-hold total and its
# earliest expiry (the cache entry carries both). A client's key (`user:<key>`) also inserts
# nothing when the key was stored unprefixed, by an operation of the same type, before client
# keys had their namespace: that first result is replayed.
_LEGACY_KEY_CHECK = f"""
           AND NOT EXISTS (SELECT 1 FROM {_LEDGER_TABLE} WHERE user_id = %(user_id)s
                              AND idempotency_key = %(legacy_key)s AND type = %(type)s)"""  # noqa: S608


def _insert_sql(*, legacy_check: bool) -> str:
    legacy = _LEGACY_KEY_CHECK if legacy_check else ""
    return f"""
    WITH h AS ({OPEN_HOLDS_SQL}),
    ins AS (
        INSERT INTO {_LEDGER_TABLE} ({", ".join(str(f.column) for f in _INSERTED_FIELDS)})
        SELECT {", ".join(f"%({f.attname})s::{f.db_type(connection)}" for f in _INSERTED_FIELDS)}
          FROM h WHERE (%(amount)s >= 0 OR %(balance_after)s >= h.held){legacy}
            ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
     RETURNING id
    )
    SELECT ins.id, h.held, h.held_until FROM h LEFT JOIN ins ON true
"""  # noqa: S608 - table and column names are ours, every value is a parameter


_INSERT_SQL = _insert_sql(legacy_check=False)
_INSERT_CLIENT_KEY_SQL = _insert_sql(legacy_check=True)

# At most one row (unique per user and key). `.raw()` still applies the fields' converters.
_REPLAY_SQL = f"""
    SELECT {_LEDGER_COLUMNS} FROM {_LEDGER_TABLE} WHERE user_id = %s AND idempotency_key = %s
"""  # noqa: S608 - table and column names are ours, every value is a parameter


class _KeyAlreadyUsed(Exception):
    """Raised inside the transaction to roll it back when the ledger already holds the key."""


def _totals_delta(kind: str, amount: int) -> tuple[int, int]:
    if kind == Type.PURCHASE:
        return amount, 0
    if kind == Type.DEDUCTION:
        return 0, -amount
    if kind == Type.REFUND:
        return 0, -amount
    return 0, 0


def _apply(**kwargs) -> CreditResult:
    """Count every operation by type and result for /metrics."""
    kind = kwargs["kind"]
    try:
        result = _apply_once(**kwargs)
    except InsufficientCredits:
        CREDIT_OPERATIONS.labels(kind, "insufficient").inc()
        raise
    except Exception:
        CREDIT_OPERATIONS.labels(kind, "error").inc()
        raise
    CREDIT_OPERATIONS.labels(kind, "replayed" if result.replayed else "ok").inc()
    return result


def _apply_once(
    *,
    user,
    amount: int,
    kind: str,
    reason: str,
    idempotency_key: str | None,
    metadata: dict | None,
    created_by=None,
    legacy_key: str | None = None,
) -> CreditResult:
    """One transaction: the conditional UPDATE, then the ledger row with its balance_after.

    The hot path is two statements. A replayed key is not looked up first: the unique key makes
    the ledger INSERT insert nothing, the transaction rolls back (changing nothing) and the first
    result is returned. An account is created only when the UPDATE finds none.
    """
    user_id = user.pk
    changes.guard_writes("credits")
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            entry = _write_change(
                cursor,
                user_id=user_id,
                amount=amount,
                kind=kind,
                reason=reason,
                idempotency_key=idempotency_key,
                metadata=metadata,
                created_by=created_by,
                legacy_key=legacy_key,
            )
    except (_KeyAlreadyUsed, InsufficientCredits, BalanceLimit, IntegrityError) as exc:
        # Rolled back, nothing changed. A key used before (perhaps by a concurrent request that
        # committed first) answers with its first result, even when the balance is now too low.
        if idempotency_key:
            previous = _replay(user_id=user_id, idempotency_key=idempotency_key, kind=kind, amount=amount)
            if previous is None and legacy_key:
                previous = _replay(
                    user_id=user_id, idempotency_key=legacy_key, kind=kind, amount=amount, same_type=True
                )
            if previous is not None:
                return previous
        if isinstance(exc, _KeyAlreadyUsed):
            raise Conflict("The idempotency key is in use; retry.") from None
        raise
    if created_by is not None:
        entry.created_by = created_by
    return CreditResult(transaction=entry, replayed=False)


def _write_change(
    cursor,
    *,
    user_id: int,
    amount: int,
    kind: str,
    reason: str,
    idempotency_key: str | None,
    metadata: dict | None,
    created_by=None,
    legacy_key: str | None = None,
) -> CreditTransaction:
    """The balance UPDATE and the ledger INSERT, inside the caller's transaction.

    Raises InsufficientCredits (the balance, or the balance minus the open holds, is short),
    BalanceLimit or _KeyAlreadyUsed; the caller rolls back. The cache entry is replaced when
    the caller's transaction commits.
    """
    if abs(amount) > MAX_CHANGE:
        raise AmountOutOfRange(f"At most {MAX_CHANGE:,} credits can change in one operation.")
    purchased, used = _totals_delta(kind, amount)
    now = timezone.now()
    account = {
        "amount": amount,
        "purchased": purchased,
        "used": used,
        "now": now,
        "user_id": user_id,
        "max_balance": MAX_BALANCE,
    }
    cursor.execute(_UPDATE_SQL, account)
    row = cursor.fetchone()
    if row is None:
        # Not enough credits, or no account yet (a missing account reads as 0).
        _ensure_account(user_id=user_id)
        cursor.execute(_UPDATE_SQL, account)
        row = cursor.fetchone()
    if row is None and amount > 0:
        raise BalanceLimit(f"A balance cannot exceed {MAX_BALANCE:,} credits.")
    if row is None:
        raise InsufficientCredits(f"This needs {-amount} credits; the balance is lower.", required=-amount)
    balance, total_purchased, total_used, is_blocked = row
    values = {
        "amount": amount,
        "type": kind,
        "reason": reason,
        "balance_after": balance,
        "metadata": metadata or {},
        "idempotency_key": idempotency_key or None,
        "created_at": now,
        "created_by_id": created_by.pk if created_by is not None else None,
        "user_id": user_id,
    }
    cursor.execute(
        _INSERT_CLIENT_KEY_SQL if legacy_key else _INSERT_SQL,
        {
            **values,
            "metadata": _METADATA_FIELD.get_db_prep_save(values["metadata"], connection),
            "now": now,
            "legacy_key": legacy_key,
        },
    )
    inserted, held, held_until = cursor.fetchone()
    if inserted is None:
        if amount < 0 and balance < held:
            raise InsufficientCredits(
                f"This needs {-amount} credits; {balance - amount - held} are available "
                f"({held} held for actions in progress).",
                required=-amount,
                available=balance - amount - held,
            )
        raise _KeyAlreadyUsed
    values["id"] = inserted
    entry = CreditTransaction.from_db(
        connection.alias, _LEDGER_ATTNAMES, [values[name] for name in _LEDGER_ATTNAMES]
    )
    snapshot = balance_cache.BalanceSnapshot(
        balance=balance,
        total_purchased=total_purchased,
        total_used=total_used,
        is_blocked=is_blocked,
        last_updated=now,
        version=entry.pk,
        held=held,
        held_until=held_until,
    )
    balance_cache.changing([user_id])  # every process drops its entry at commit
    transaction.on_commit(lambda: balance_cache.store(user_id, snapshot))
    changes.user_data_changed(domain="credits", user_id=user_id)
    return entry


def _replay(
    *, user_id: int, idempotency_key: str, kind: str, amount: int, same_type: bool = False
) -> CreditResult | None:
    """The first result of a key; `same_type`: only a row of this type counts (legacy client keys)."""
    previous = next(iter(CreditTransaction.objects.raw(_REPLAY_SQL, [user_id, idempotency_key])), None)
    if previous is None or (same_type and previous.type != kind):
        return None
    if previous.type != kind or previous.amount != amount:
        raise IdempotencyKeyReused(
            f"Idempotency key {idempotency_key!r} was used for a {previous.type} of "
            f"{previous.amount:+d} credits."
        )
    return CreditResult(transaction=previous, replayed=True)


def monthly_top_up(*, user, month: date | None = None) -> CreditResult | None:
    """Grant the free tier's monthly allowance once per calendar month.

    Paid plans get their monthly credits from Stripe's paid invoice (billing's invoice.paid
    handler, keyed by the invoice id), so an account with an active or trialing subscription is
    skipped here and None is returned. An account's own `monthly_allowance` (carried over from
    the KV store) overrides the free tier's amount. A balance that returns to 0 or more unblocks.
    """
    changes.guard_writes("credits")
    month = month or timezone.now().date()
    if paid_plans.has_paid_plan(user_id=user.pk):
        return None
    override = (
        CreditAccount.objects.filter(user_id=user.pk).values_list("monthly_allowance", flat=True).first()
    )
    amount = override if override is not None else settings.FREE_TIER_MONTHLY_CREDITS
    if amount <= 0:
        return None
    with transaction.atomic():
        result = grant(
            user=user,
            amount=amount,
            kind=Type.ALLOWANCE,
            reason=f"Monthly allowance {month:%Y-%m}",
            idempotency_key=f"monthly-allowance:{month:%Y-%m}",
        )
        if not result.replayed:
            CreditAccount.objects.filter(user_id=user.pk).update(last_top_up=result.transaction.created_at)
    return result


# --- holds: reserve, capture, release ----------------------------------------------------------


class HoldNotFound(NotFound):
    """No such hold."""

    code = "hold_not_found"


class HoldExpired(Conflict):
    """The hold expired before it was settled; its credits are available again."""

    code = "hold_expired"


class HoldReleased(Conflict):
    """The hold was released; it cannot be captured."""

    code = "hold_released"


class HoldCaptured(Conflict):
    """The hold was captured; it cannot be released or captured for another amount."""

    code = "hold_captured"


class CaptureExceedsHold(DomainError):
    """A capture may take at most the held amount."""

    code = "capture_exceeds_hold"


@dataclass(frozen=True)
class HoldResult:
    hold: CreditHold
    balance: int
    available: int
    replayed: bool


@dataclass(frozen=True)
class CaptureResult:
    hold: CreditHold
    transaction: CreditTransaction
    replayed: bool

    @property
    def balance(self) -> int:
        return self.transaction.balance_after


_HOLDS_TABLE = CreditHold._meta.db_table
_LOCK_ACCOUNT_SQL = f"SELECT balance FROM {_TABLE} WHERE user_id = %s FOR UPDATE"  # noqa: S608

# Opened under the account's row lock (taken by the statement before), with the open holds
# summed in this later statement: its snapshot sees every hold and deduction committed by whoever
# held the lock before, so concurrent holds can never reserve the same credits twice.
_OPEN_HOLD_SQL = f"""
    WITH h AS ({OPEN_HOLDS_SQL}),
    ins AS (
        INSERT INTO {_HOLDS_TABLE}
               (user_id, amount, operation, status, owner, idempotency_key, expires_at, metadata, created_at)
        SELECT %(user_id)s, %(amount)s, %(operation)s, 'open', %(owner)s, %(key)s, %(expires_at)s,
               %(metadata)s::jsonb, %(now)s
          FROM h WHERE %(balance)s - h.held >= %(amount)s
            ON CONFLICT (user_id, idempotency_key) DO NOTHING
     RETURNING id
    )
    SELECT ins.id, h.held FROM h LEFT JOIN ins ON true
"""  # noqa: S608 - table names are ours, every value is a parameter

# Settle an open, unexpired hold; a hold already settled or expired matches nothing and the
# caller finds out why. Concurrent captures queue on the hold's row lock: the first wins, the
# others re-check `status = 'open'` on the committed row and match nothing.
_CAPTURE_SQL = f"""
    UPDATE {_HOLDS_TABLE}
       SET status = 'captured', captured_amount = COALESCE(%(amount)s, amount), settled_at = %(now)s
     WHERE id = %(id)s AND owner = %(owner)s AND status = 'open' AND expires_at > %(now)s
       AND amount >= COALESCE(%(amount)s, amount)
 RETURNING user_id, amount, operation, idempotency_key, expires_at, metadata, created_at, captured_amount
"""  # noqa: S608
_RELEASE_SQL = f"""
    UPDATE {_HOLDS_TABLE} SET status = 'released', settled_at = %(now)s
     WHERE id = %(id)s AND owner = %(owner)s AND status = 'open' AND expires_at > %(now)s
 RETURNING user_id
"""  # noqa: S608


def hold_ttl(ttl_seconds: int | None) -> timedelta:
    ttl = settings.CREDIT_HOLD_TTL_SECONDS if ttl_seconds is None else ttl_seconds
    if not 1 <= ttl <= settings.CREDIT_HOLD_MAX_TTL_SECONDS:
        raise DomainError(
            f"ttl_seconds must be between 1 and {settings.CREDIT_HOLD_MAX_TTL_SECONDS}.",
            ttl_seconds=[f"Between 1 and {settings.CREDIT_HOLD_MAX_TTL_SECONDS}."],
        )
    return timedelta(seconds=ttl)


def open_hold(
    *,
    user,
    idempotency_key: str,
    amount: int | None = None,
    operation: str | None = None,
    ttl_seconds: int | None = None,
    owner: str = "",
    metadata: dict | None = None,
) -> HoldResult:
    """Reserve credits for an action: an operation's cost or an amount, refused (402) when the
    available credits (balance minus open holds) are short. A replayed key returns the first
    hold, whatever its state now."""
    changes.guard_writes("credits")
    if (amount is None) == (operation is None):
        raise DomainError("Give either an operation or an amount.")
    if operation is not None:
        amount = operation_cost(operation)
    assert amount is not None  # exactly one of amount and operation was given (checked above)
    if not 1 <= amount <= MAX_CHANGE:
        raise AmountOutOfRange(f"A hold is 1 to {MAX_CHANGE:,} credits.")
    if not idempotency_key:
        raise DomainError("An idempotency key is required.", idempotency_key=["This field is required."])
    ttl = hold_ttl(ttl_seconds)
    now = timezone.now()
    params = {
        "user_id": user.pk,
        "amount": amount,
        "operation": operation or "",
        "owner": owner,
        "key": idempotency_key,
        "expires_at": now + ttl,
        "metadata": _dumps(metadata or {}),
        "now": now,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_LOCK_ACCOUNT_SQL, [user.pk])
        locked = cursor.fetchone()
        balance = params["balance"] = locked[0] if locked else 0
        cursor.execute(_OPEN_HOLD_SQL, params)
        hold_id, held = cursor.fetchone()
        if hold_id is not None:
            balance_cache.changing([user.pk])  # every process drops its entry at commit
            hold = CreditHold(
                id=hold_id,
                user_id=user.pk,
                amount=amount,
                operation=params["operation"],
                status=CreditHold.Status.OPEN,
                owner=owner,
                idempotency_key=idempotency_key,
                expires_at=params["expires_at"],
                metadata=metadata or {},
                created_at=now,
            )
            CREDIT_HOLDS.labels("opened").inc()
            return HoldResult(hold=hold, balance=balance, available=balance - held - amount, replayed=False)
        previous = CreditHold.objects.filter(user_id=user.pk, idempotency_key=idempotency_key).first()
    if previous is not None:
        if previous.amount != amount or previous.operation != params["operation"]:
            raise IdempotencyKeyReused(
                f"Idempotency key {idempotency_key!r} was used for a hold of {previous.amount} credits."
            )
        CREDIT_HOLDS.labels("replayed").inc()
        return HoldResult(hold=previous, balance=balance, available=balance - held, replayed=True)
    CREDIT_HOLDS.labels("refused").inc()
    raise InsufficientCredits(
        f"This needs {amount} credits; {balance - held} are available"
        + (f" ({held} held for actions in progress)." if held else "."),
        required=amount,
        available=balance - held,
    )


def capture_hold(*, hold_id: int, owner: str = "", amount: int | None = None) -> CaptureResult:
    """Charge a hold: one deduction ledger row of `amount` (all of the hold by default, at most
    all of it) carrying the hold id; what is not captured is available again. Idempotent: a
    repeat returns the first capture's ledger row."""
    changes.guard_writes("credits")
    if amount is not None and not 1 <= amount <= MAX_CHANGE:
        raise AmountOutOfRange("A capture is at least 1 credit and at most the held amount.")
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_CAPTURE_SQL, {"id": hold_id, "owner": owner, "amount": amount, "now": now})
        row = cursor.fetchone()
        if row is not None:
            user_id, held_amount, operation, key, expires_at, raw_metadata, created_at, captured = row
            entry = _write_change(
                cursor,
                user_id=user_id,
                amount=-captured,
                kind=Type.DEDUCTION,
                reason=operation or "hold capture",
                idempotency_key=f"hold-capture:{hold_id}",
                metadata={"hold_id": hold_id, **({"operation": operation} if operation else {})},
            )
            hold = CreditHold(
                id=hold_id,
                user_id=user_id,
                amount=held_amount,
                operation=operation,
                status=CreditHold.Status.CAPTURED,
                owner=owner,
                idempotency_key=key,
                expires_at=expires_at,
                captured_amount=captured,
                metadata=json.loads(raw_metadata) if isinstance(raw_metadata, str) else raw_metadata,
                created_at=created_at,
                settled_at=now,
            )
            CREDIT_HOLDS.labels("captured").inc()
            return CaptureResult(hold=hold, transaction=entry, replayed=False)
    hold = _unsettled_reason(hold_id=hold_id, owner=owner, action="capture", amount=amount, now=now)
    entry = CreditTransaction.objects.get(user_id=hold.user_id, idempotency_key=f"hold-capture:{hold_id}")
    return CaptureResult(hold=hold, transaction=entry, replayed=True)


def release_hold(*, hold_id: int, owner: str = "") -> HoldResult:
    """Give a hold's credits back without charging. Idempotent."""
    changes.guard_writes("credits")
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_RELEASE_SQL, {"id": hold_id, "owner": owner, "now": now})
        row = cursor.fetchone()
        if row is not None:
            (user_id,) = row
            balance_cache.changing([user_id])  # every process drops its entry at commit
            CREDIT_HOLDS.labels("released").inc()
            replayed = False
    if row is None:
        _unsettled_reason(hold_id=hold_id, owner=owner, action="release", amount=None, now=now)
        replayed = True
    hold = CreditHold.objects.get(pk=hold_id)
    snapshot = balance_from_database(user_id=hold.user_id)
    return HoldResult(hold=hold, balance=snapshot.balance, available=snapshot.available, replayed=replayed)


def _unsettled_reason(*, hold_id: int, owner: str, action: str, amount: int | None, now) -> CreditHold:
    """Why a capture or release matched nothing: returns the hold for an idempotent repeat,
    raises for everything else."""
    hold = CreditHold.objects.filter(pk=hold_id, owner=owner).first()
    if hold is None:
        raise HoldNotFound(f"No hold {hold_id}.")
    if hold.status == CreditHold.Status.CAPTURED:
        if action == "capture" and amount in (None, hold.captured_amount):
            return hold
        raise HoldCaptured(f"Hold {hold_id} was already captured ({hold.captured_amount} credits).")
    if hold.status == CreditHold.Status.RELEASED:
        if action == "release":
            return hold
        raise HoldReleased(f"Hold {hold_id} was released; it cannot be captured.")
    if hold.expires_at <= now:
        raise HoldExpired(f"Hold {hold_id} expired at {hold.expires_at.isoformat()}; it was not charged.")
    if amount is not None and amount > hold.amount:
        raise CaptureExceedsHold(f"Hold {hold_id} holds {hold.amount} credits; {amount} cannot be captured.")
    raise Conflict(f"Hold {hold_id} changed while settling it; retry.")


def purge_holds(*, older_than: timedelta, ids: Sequence[int] | None = None) -> int:
    """Delete holds settled or expired more than `older_than` ago, among `ids` when given
    (captures stay in the ledger, which carries the hold id). Returns how many were deleted."""
    changes.guard_writes("credits")
    cutoff = timezone.now() - older_than
    holds = CreditHold.objects.all() if ids is None else CreditHold.objects.filter(pk__in=ids)
    with transaction.atomic():
        settled = holds.exclude(status=CreditHold.Status.OPEN).filter(settled_at__lt=cutoff)
        expired = holds.filter(status=CreditHold.Status.OPEN, expires_at__lt=cutoff)
        deleted = settled.delete()[0] + expired.delete()[0]
    return deleted


# --- bulk load of migrated accounts (kvmigrate) ----------------------------------------------


class MigratedEntry(Protocol):
    """A history entry from the legacy store (kvmigrate.transforms.LedgerRow has this shape)."""

    amount: int
    type: str
    reason: str
    created_at: datetime
    idempotency_key: str
    metadata: dict


class MigratedAccount(Protocol):
    """An account from the legacy store (kvmigrate.transforms.AccountRow has this shape)."""

    user_id: int
    balance: int
    total_used: int
    total_purchased: int | None  # None: the ledger's purchases
    is_blocked: bool
    monthly_allowance: int | None
    last_top_up: datetime | None
    created_at: datetime | None
    last_updated: datetime | None
    metadata: dict
    history: Sequence[MigratedEntry]
    migration_key: str  # idempotency key of the row that balances the ledger
    migration_metadata: dict


@dataclass(frozen=True)
class MigratedAccountsResult:
    created: frozenset[int]  # users whose account row is new
    ledger_rows: int  # ledger rows inserted


_LEDGER = CreditTransaction._meta.db_table
# One round trip: lock the batch's existing accounts and sum their ledgers. A user without an
# account has no ledger rows (every write path creates the account first), so fresh users, the
# whole of a first migration, cost one primary-key probe each.
_LOCK_AND_SUM_SQL = f"""
    SELECT a.user_id, COALESCE(s.total, 0), COALESCE(s.purchased, 0), COALESCE(s.used, 0), s.n > 0
      FROM {_TABLE} a
      LEFT JOIN LATERAL (
            SELECT SUM(amount)::bigint AS total,
                   COALESCE(SUM(amount) FILTER (WHERE type = 'purchase'), 0)::bigint AS purchased,
                   COALESCE(-SUM(amount) FILTER (WHERE type IN ('deduction', 'refund')), 0)::bigint AS used,
                   count(*) AS n
              FROM {_LEDGER} t WHERE t.user_id = a.user_id) s ON true
     WHERE a.user_id = ANY(%s)
     ORDER BY a.user_id
       FOR UPDATE OF a
"""  # noqa: S608
_KEYS_SQL = f"""
    SELECT user_id, idempotency_key FROM {_LEDGER}
     WHERE user_id = ANY(%s) AND idempotency_key = ANY(%s)
"""  # noqa: S608
_LOAD_LEDGER_COLUMNS = (
    "user_id", "amount", "type", "reason", "balance_after", "metadata", "idempotency_key", "created_at",
)  # fmt: skip
_ACCOUNT_COLUMNS = (
    "user_id", "balance", "total_purchased", "total_used", "opening_total_purchased", "opening_total_used",
    "is_blocked", "monthly_allowance", "last_top_up", "metadata", "last_updated", "created_at",
)  # fmt: skip
_UPSERT_ACCOUNTS_SQL = f"""
    INSERT INTO {_TABLE} (user_id, balance, total_purchased, total_used, opening_total_purchased,
                          opening_total_used, is_blocked, monthly_allowance, last_top_up, metadata,
                          last_updated, created_at)
    SELECT u, b, tp, tu, otp, otu, blk, ma, ltu, m::jsonb, lu, c
      FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[],
                  %s::boolean[], %s::integer[], %s::timestamptz[], %s::text[], %s::timestamptz[],
                  %s::timestamptz[]) AS x(u, b, tp, tu, otp, otu, blk, ma, ltu, m, lu, c)
    ON CONFLICT (user_id) DO UPDATE SET
        balance = EXCLUDED.balance, total_purchased = EXCLUDED.total_purchased,
        total_used = EXCLUDED.total_used, opening_total_purchased = EXCLUDED.opening_total_purchased,
        opening_total_used = EXCLUDED.opening_total_used, is_blocked = EXCLUDED.is_blocked,
        monthly_allowance = EXCLUDED.monthly_allowance, last_top_up = EXCLUDED.last_top_up,
        metadata = EXCLUDED.metadata, last_updated = EXCLUDED.last_updated, created_at = EXCLUDED.created_at
"""  # noqa: S608


_ENCODER = DjangoJSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _dumps(value: dict | str) -> str:
    """Compact JSON; a str is taken as JSON already (a caller may serialize ahead of the batch)."""
    return value if isinstance(value, str) else _ENCODER.encode(value)


def load_migrated_accounts(*, records: Sequence[MigratedAccount]) -> MigratedAccountsResult:
    """Write migrated accounts and their history in the caller's transaction (one batch).

    For every account: its history entries not yet in the ledger (by idempotency key) are
    appended, plus one `migration` row for whatever the history does not explain, so the ledger
    sums to the migrated balance exactly (the discrepancy is in that row's metadata). On a fresh
    account the migration row opens the ledger (it comes first); on an account that already has
    rows (a re-run of a record that changed in the store, or rows the app wrote) the new entries
    follow the existing ones and the migration row closes the gap. The account's totals are the
    store's; what the ledger does not explain becomes the opening totals credits_reconcile
    counts from. One statement per step for the whole batch; existing accounts are locked first.
    The balance cache entries are forgotten once the transaction commits.

    The KV mirror is deliberately not told: the store is the source here. Frozen like every
    write; kvmigrate calls it inside `fivedocks.changes.freeze_exempt()`.
    """
    changes.guard_writes("credits")
    if not records:
        return MigratedAccountsResult(frozenset(), 0)
    by_user = {record.user_id: record for record in records}
    if len(by_user) != len(records):
        raise DomainError("Each user may appear once per batch of migrated accounts.")
    user_ids = sorted(by_user)
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_LOCK_AND_SUM_SQL, [user_ids])
        existing: set[int] = set()
        sums: dict[int, tuple[int, int, int]] = {}  # users whose ledger has rows
        for uid, total, purchased, used, has_rows in cursor.fetchall():
            existing.add(uid)
            if has_rows:
                sums[uid] = (total, purchased, used)
        known: set[tuple[int, str]] = set()
        with_rows = [uid for uid in user_ids if uid in sums]
        if with_rows:
            keys = [e.idempotency_key for uid in with_rows for e in by_user[uid].history]
            keys += [by_user[uid].migration_key for uid in with_rows]
            cursor.execute(_KEYS_SQL, [with_rows, keys])
            known = {(row[0], row[1]) for row in cursor.fetchall()}

        ledger_rows: list[tuple] = []
        fresh_accounts: list[tuple] = []
        existing_accounts: list[tuple] = []
        for uid in user_ids:
            record = by_user[uid]
            total, purchased, used = sums.get(uid, (0, 0, 0))
            new = [e for e in record.history if (uid, e.idempotency_key) not in known]
            new.sort(key=lambda e: e.created_at)  # stable: equal times keep the store's order
            gap = record.balance - total - sum(e.amount for e in new)
            created_at = record.created_at or min((e.created_at for e in record.history), default=None)
            created_at = created_at or record.last_updated or now
            last_updated = record.last_updated or created_at
            rows: list[tuple] = []
            migration = None
            if gap:
                meta = {**record.migration_metadata, "discrepancy": gap, "balance": record.balance}
                key = record.migration_key
                if (uid, key) in known:  # same store value, but the ledger moved since: a new row
                    key = f"{key}@{now.isoformat()}"
                migration = (gap, Type.MIGRATION, "Balance carried over from the legacy store", meta, key)
            if migration and uid not in sums:  # opening row of a fresh ledger
                first = min((e.created_at for e in new), default=created_at)
                rows.append((*migration, min(first, created_at)))
                migration = None
            rows.extend(
                (e.amount, e.type, e.reason, e.metadata, e.idempotency_key, e.created_at) for e in new
            )
            if migration:  # closing row after what the ledger already had
                rows.append((*migration, max([last_updated, *(e.created_at for e in new)])))
            running = total
            for amount, kind, reason, meta, key, at in rows:
                running += amount
                ledger_rows.append((uid, amount, kind, reason, running, _dumps(meta), key, at))
                if kind == Type.PURCHASE:
                    purchased += amount
                elif kind in (Type.DEDUCTION, Type.REFUND):
                    used -= amount
            total_purchased = purchased if record.total_purchased is None else record.total_purchased
            values = (
                uid, record.balance, total_purchased, record.total_used, total_purchased - purchased,
                record.total_used - used, record.is_blocked, record.monthly_allowance, record.last_top_up,
                _dumps(record.metadata), last_updated, created_at,
            )  # fmt: skip
            (existing_accounts if uid in existing else fresh_accounts).append(values)
        # New rows go in with COPY (the fastest path PostgreSQL has); existing accounts are upserted.
        bulk.copy_rows(_LEDGER, _LOAD_LEDGER_COLUMNS, ledger_rows)
        bulk.copy_rows(_TABLE, _ACCOUNT_COLUMNS, fresh_accounts)
        if existing_accounts:
            cursor.execute(_UPSERT_ACCOUNTS_SQL, [list(col) for col in zip(*existing_accounts, strict=True)])
        balance_cache.changing(user_ids)  # every process drops these entries at commit
    return MigratedAccountsResult(frozenset(set(user_ids) - existing), len(ledger_rows))


# --- staff changes: permission, no self-grants, a second staff member above the threshold -----


@dataclass(frozen=True)
class StaffChangeResult:
    """Either the applied change or, above the approval threshold, the pending request."""

    result: CreditResult | None = None
    pending: PendingCreditChange | None = None


_GRANT_KINDS = (Type.PURCHASE, Type.BONUS, Type.ALLOWANCE)


def request_staff_change(
    *,
    actor,
    user,
    kind: str,
    amount: int,
    reason: str,
    client_key: str | None = None,
    metadata: dict | None = None,
) -> StaffChangeResult:
    """The one entry point for a staff grant or adjustment (API, admin, any later path).

    At or below CREDITS_APPROVAL_THRESHOLD it is applied now; above it a pending change is
    recorded for a second staff member to approve (`approve_pending_change`).
    """
    changes.guard_writes("credits")
    if kind != Type.ADJUSTMENT and kind not in _GRANT_KINDS:
        raise DomainError(f"A staff change cannot be of type {kind!r}.")
    if abs(amount) > MAX_CHANGE:
        raise AmountOutOfRange(f"At most {MAX_CHANGE:,} credits can change in one operation.")
    if abs(amount) > approval_threshold():
        authorize_staff_change(actor=actor, user=user, amount=amount, approved=True)
        if kind != Type.ADJUSTMENT and amount <= 0:
            raise DomainError("A grant must be a positive number of credits.")
        if not reason or not reason.strip():
            raise DomainError("A change needs a reason.", reason=["This field is required."])
        pending = PendingCreditChange.objects.create(
            user=user, amount=amount, kind=kind, reason=reason.strip(), requested_by=actor
        )
        return StaffChangeResult(pending=pending)
    if kind == Type.ADJUSTMENT:
        key = user_idempotency_key(client_key) if client_key else None
        result = adjust(user=user, amount=amount, reason=reason, created_by=actor, idempotency_key=key)
    else:
        result = grant(
            user=user,
            amount=amount,
            kind=kind,
            reason=reason,
            client_key=client_key,
            metadata=metadata,
            created_by=actor,
        )
    return StaffChangeResult(result=result)


class PendingChangeDecided(Conflict):
    """This change was already approved or rejected."""

    code = "already_decided"


class SecondApproverRequired(PermissionRequired):
    """The staff member who asked for a change cannot approve it."""

    code = "second_approver_required"


def _lock_pending(*, pending_id: int, actor) -> PendingCreditChange:
    pending = (
        PendingCreditChange.objects.select_for_update().select_related("user").filter(pk=pending_id).first()
    )
    if pending is None:
        raise DomainError(f"No pending change {pending_id}.")
    if pending.status != PendingCreditChange.Status.PENDING:
        raise PendingChangeDecided(f"This change was already {pending.status}.")
    if actor.pk == pending.requested_by_id:
        raise SecondApproverRequired
    return pending


def approve_pending_change(*, pending_id: int, approver) -> CreditResult:
    """A second staff member (with the permission, not the requester, not the account's owner)
    applies a pending change; the row lock and its status make it happen once."""
    changes.guard_writes("credits")
    with transaction.atomic():
        pending = _lock_pending(pending_id=pending_id, actor=approver)
        authorize_staff_change(actor=approver, user=pending.user, amount=pending.amount, approved=True)
        result = _apply(
            user=pending.user,
            amount=pending.amount,
            kind=pending.kind,
            reason=pending.reason,
            idempotency_key=f"pending-change:{pending.pk}",
            metadata={"requested_by": pending.requested_by_id, "approved_by": approver.pk},
            created_by=approver,
        )
        pending.status = PendingCreditChange.Status.APPROVED
        pending.decided_by = approver
        pending.decided_at = timezone.now()
        pending.transaction = result.transaction
        pending.save(update_fields=["status", "decided_by", "decided_at", "transaction"])
    return result


def reject_pending_change(*, pending_id: int, actor) -> PendingCreditChange:
    """Another staff member with the permission turns a pending change down; nothing moves."""
    changes.guard_writes("credits")
    with transaction.atomic():
        pending = _lock_pending(pending_id=pending_id, actor=actor)
        authorize_staff_change(actor=actor, user=pending.user, amount=pending.amount, approved=True)
        pending.status = PendingCreditChange.Status.REJECTED
        pending.decided_by = actor
        pending.decided_at = timezone.now()
        pending.save(update_fields=["status", "decided_by", "decided_at"])
    return pending
