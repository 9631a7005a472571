"""The per-user balance cache entry.

One entry per user (never a table-wide invalidation), replaced with the committed values by
`transaction.on_commit`, so one user's deduction never evicts another user's balance and the
next read in the same process sees the new balance. The entry carries the id of the ledger row
it reflects: a slower commit callback never overwrites a newer entry. A TTL bounds staleness in
other processes when the cache is per-process local memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import cache

from fivedocks.metrics import CACHE_REQUESTS

_HIT = CACHE_REQUESTS.labels("default", "balance", "hit")
_MISS = CACHE_REQUESTS.labels("default", "balance", "miss")


@dataclass(frozen=True)
class BalanceSnapshot:
    balance: int
    total_purchased: int
    total_used: int
    is_blocked: bool
    last_updated: datetime | None
    version: int = 0  # id of the ledger row a write reflects; 0 when read from the database


def key_for(user_id: int) -> str:
    return f"credits:balance:{user_id}"


# The entry is a plain tuple in the dataclass's field order: cheaper to pickle, unpickle and
# rebuild than a dict (and `dataclasses.asdict` deep-copies every field on each write).
_VERSION = 5  # index of `version` in the tuple


def _payload(snapshot: BalanceSnapshot) -> tuple:
    return (
        snapshot.balance,
        snapshot.total_purchased,
        snapshot.total_used,
        snapshot.is_blocked,
        snapshot.last_updated,
        snapshot.version,
    )


def read(user_id: int) -> BalanceSnapshot | None:
    raw = cache.get(key_for(user_id))
    if raw is None:
        _MISS.inc()
        return None
    _HIT.inc()
    return BalanceSnapshot(*raw)


def store(user_id: int, snapshot: BalanceSnapshot) -> None:
    key = key_for(user_id)
    current = cache.get(key)
    if current is not None and current[_VERSION] > snapshot.version:
        return
    cache.set(key, _payload(snapshot), settings.CREDITS_BALANCE_CACHE_TTL)


def forget(user_id: int) -> None:
    cache.delete(key_for(user_id))


def forget_many(user_ids) -> None:
    cache.delete_many([key_for(user_id) for user_id in user_ids])
