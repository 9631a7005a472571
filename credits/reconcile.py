"""Check every account against its ledger: balance == sum(amounts), totals == opening + ledger."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from django.db import connection

from credits.models import CreditAccount, CreditTransaction

_ACCOUNTS = CreditAccount._meta.db_table
_LEDGER = CreditTransaction._meta.db_table

# One pass over the ledger, grouped per user, joined to the accounts (users with only one side too).
_SQL = f"""
WITH ledger AS (
    SELECT user_id,
           COALESCE(SUM(amount), 0) AS balance,
           COALESCE(SUM(amount) FILTER (WHERE type = 'purchase'), 0) AS purchased,
           COALESCE(-SUM(amount) FILTER (WHERE type IN ('deduction', 'refund')), 0) AS used
      FROM {_LEDGER}
     GROUP BY user_id
)
SELECT COALESCE(a.user_id, l.user_id),
       a.balance, a.total_purchased, a.total_used,
       a.opening_total_purchased, a.opening_total_used,
       COALESCE(l.balance, 0), COALESCE(l.purchased, 0), COALESCE(l.used, 0)
  FROM {_ACCOUNTS} a
  FULL OUTER JOIN ledger l ON l.user_id = a.user_id
 ORDER BY 1
"""  # noqa: S608 - table names are ours


@dataclass(frozen=True)
class Mismatch:
    user_id: int
    field: str
    stored: int | None
    expected: int

    def __str__(self) -> str:
        return f"user {self.user_id}: {self.field} is {self.stored}, the ledger says {self.expected}"


def find_mismatches() -> Iterator[Mismatch]:
    with connection.cursor() as cursor:
        cursor.execute(_SQL)
        for row in cursor:
            user_id, balance, purchased, used, open_purchased, open_used, l_balance, l_purchased, l_used = row
            if balance is None:
                yield Mismatch(user_id, "account", None, l_balance)
                continue
            if balance != l_balance:
                yield Mismatch(user_id, "balance", balance, l_balance)
            if purchased != open_purchased + l_purchased:
                yield Mismatch(user_id, "total_purchased", purchased, open_purchased + l_purchased)
            if used != open_used + l_used:
                yield Mismatch(user_id, "total_used", used, open_used + l_used)
