"""Reads of balances and the ledger. Balance reads come from the per-user cache entry."""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.db.models import QuerySet

from credits import cache as balance_cache
from credits.models import CreditAccount, CreditTransaction
from fivedocks.replicas import read_alias


def get_balance(*, user_id: int) -> balance_cache.BalanceSnapshot:
    """Balance and totals; a user with no account reads as zero (created on first write)."""
    cached = balance_cache.read(user_id)
    if cached is not None:
        return cached
    snapshot = balance_from_database(user_id=user_id)
    balance_cache.store(user_id, snapshot)
    return snapshot


_BALANCE_SQL = f"""
    SELECT balance, total_purchased, total_used, is_blocked, last_updated
      FROM {CreditAccount._meta.db_table} WHERE user_id = %s
"""  # noqa: S608 - the table name is ours, the value is a parameter


def balance_from_database(*, user_id: int) -> balance_cache.BalanceSnapshot:
    # Always the primary: this refills the cache, and a value read from a late replica would
    # stay there for the entry's whole life.
    # A primary-key lookup on every cache miss: raw SQL, since the ORM's compiler (run twice
    # under cachalot, which computes a cache key before finding the table uncachable) and
    # `.first()`'s ORDER BY cost several times the query itself.
    with connection.cursor() as cursor:
        cursor.execute(_BALANCE_SQL, [user_id])
        row = cursor.fetchone()
    if row is None:
        return balance_cache.BalanceSnapshot(0, 0, 0, False, None)
    # Version 0: a snapshot read here never replaces one that a committed write stored.
    return balance_cache.BalanceSnapshot(*row)


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
