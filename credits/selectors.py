"""Reads of balances and the ledger. Balance reads come from the per-user cache entry."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.db import connection
from django.db.models import Q, QuerySet
from django.utils import timezone

from credits import cache as balance_cache
from credits.models import CreditAccount, CreditHold, CreditTransaction
from fivedocks import bulk
from fivedocks.replicas import read_alias


def get_balance(*, user_id: int) -> balance_cache.BalanceSnapshot:
    """Balance, totals and `available` (the balance minus open holds); a user with no account
    reads as zero (created on first write). The entry stops being served once its earliest
    hold expires, so `available` is never stale because a hold expired."""
    cached = balance_cache.read(user_id)
    if cached is not None:
        return cached
    token = balance_cache.fill_token(user_id)
    snapshot = balance_from_database(user_id=user_id)
    balance_cache.fill(user_id, snapshot, token)
    return snapshot


_HOLDS = CreditHold._meta.db_table

# The open, unexpired holds of one user: the expiry is decided here, in the query, so an expired
# hold stops counting with no job running. Served by the partial index credit_holds_open_idx.
OPEN_HOLDS_SQL = f"""
    SELECT COALESCE(SUM(amount), 0)::bigint AS held, MIN(expires_at) AS held_until
      FROM {_HOLDS} WHERE user_id = %(user_id)s AND status = 'open' AND expires_at > %(now)s
"""  # noqa: S608 - the table name is ours, every value is a parameter

_BALANCE_SQL = f"""
    SELECT a.balance, a.total_purchased, a.total_used, a.is_blocked, a.last_updated, 0,
           h.held, h.held_until
      FROM {CreditAccount._meta.db_table} a, ({OPEN_HOLDS_SQL}) h
     WHERE a.user_id = %(user_id)s
"""  # noqa: S608 - the table name is ours, the value is a parameter


def balance_from_database(*, user_id: int) -> balance_cache.BalanceSnapshot:
    # Always the primary: this refills the cache, and a value read from a late replica would
    # stay there for the entry's whole life.
    # A primary-key lookup on every cache miss: raw SQL, since the ORM's compiler (run twice
    # under cachalot, which computes a cache key before finding the table uncachable) and
    # `.first()`'s ORDER BY cost several times the query itself.
    with connection.cursor() as cursor:
        cursor.execute(_BALANCE_SQL, {"user_id": user_id, "now": timezone.now()})
        row = cursor.fetchone()
    if row is None:
        return balance_cache.BalanceSnapshot(0, 0, 0, False, None)
    # Version 0: a snapshot read here never replaces one that a committed write stored.
    return balance_cache.BalanceSnapshot(*row)


def holds(*, user_id: int | None = None, state: str | None = None) -> QuerySet[CreditHold]:
    """Holds, newest first; `state` is a status or `expired` (open but past its expiry), and
    `open` means open and unexpired."""
    qs = CreditHold.objects.select_related("user")
    if user_id is not None:
        qs = qs.filter(user_id=user_id)
    now = timezone.now()
    if state == "expired":
        qs = qs.filter(status=CreditHold.Status.OPEN, expires_at__lte=now)
    elif state == CreditHold.Status.OPEN:
        qs = qs.filter(Q(status=state) & Q(expires_at__gt=now))
    elif state:
        qs = qs.filter(status=state)
    return qs.order_by("-created_at", "-id")


def transaction_history(
    *,
    user_id: int,
    types: list[str] | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> QuerySet[CreditTransaction]:
    """Newest first; from a replica unless the user just wrote (fivedocks/replicas.py)."""
    qs = CreditTransaction.objects.using(read_alias(user_id=user_id)).filter(user_id=user_id)
    if types:
        qs = qs.filter(type__in=types)
    if created_from:
        qs = qs.filter(created_at__gte=created_from)
    if created_to:
        qs = qs.filter(created_at__lt=created_to)
    return qs.order_by("-created_at", "-id")


def account_details(*, user_id: int) -> CreditAccount | None:
    """The account row (last top-up, the allowance override), or None before its first write."""
    return (
        CreditAccount.objects.filter(user_id=user_id)
        .only("user_id", "last_top_up", "monthly_allowance", "created_at", "is_blocked")
        .first()
    )


def usage_since(*, user_id: int, since: datetime) -> tuple[int, dict[str, int]]:
    """(credits deducted since `since`, number of charges per `searchType` ever).

    The search type is the `searchType` the charge recorded in its metadata (the platform's
    field, kept by kvmigrate for migrated history); charges without one are not counted by type.
    """
    from django.db.models import Count, Q, Sum
    from django.db.models.fields.json import KT

    charges = CreditTransaction.objects.filter(user_id=user_id, type=CreditTransaction.Type.DEDUCTION)
    used = charges.aggregate(total=Sum("amount", filter=Q(created_at__gte=since)))["total"] or 0
    counts = (
        charges.annotate(search_type=KT("metadata__searchType"))
        .filter(search_type__isnull=False)
        .values("search_type")
        .annotate(n=Count("id"))
        .order_by()
    )
    return -used, {row["search_type"]: row["n"] for row in counts}


_ACCOUNTS = CreditAccount._meta.db_table


def migrated_account_keys(*, user_ids: Sequence[int]) -> bulk.Pairs:
    """(user id, the KV key the account was migrated from; NULL: the app wrote it): for kvmigrate,
    part of its one read per batch."""
    return bulk.Pairs(
        f"SELECT user_id, metadata #>> '{{kv,key}}' FROM {_ACCOUNTS} WHERE user_id = ANY(%s)",  # noqa: S608
        (list(user_ids),),
    )
