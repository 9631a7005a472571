"""The per-user balance cache entry.

One entry per user (never a table-wide invalidation), replaced with the committed values by
`transaction.on_commit`, so one user's deduction never evicts another user's balance and the
next read in the same process sees the new balance. The entry carries the id of the ledger row
it reflects: a slower commit callback never overwrites a newer entry. A TTL bounds staleness in
other processes when the cache is per-process local memory.

The entry also carries the user's open-hold total and the earliest expiry among those holds:
once that expiry passes the entry counts as a miss, so a hold that expires (which writes
nothing) never leaves a stale `available` behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

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
    held: int = 0  # credits reserved by open, unexpired holds
    held_until: datetime | None = None  # earliest expiry among those holds: a miss from then on

    @property
    def available(self) -> int:
        """What a new hold or deduction may use: the balance minus the open holds."""
        return self.balance - self.held


def key_for(user_id: int) -> str:
    return f"credits:balance:{user_id}"


# The entry is a plain tuple in the dataclass's field order: cheaper to pickle, unpickle and
# rebuild than a dict (and `dataclasses.asdict` deep-copies every field on each write).
_VERSION = 5  # index of `version` in the tuple
_HELD_UNTIL = 7  # index of `held_until`


def _payload(snapshot: BalanceSnapshot) -> tuple:
    return (
        snapshot.balance,
        snapshot.total_purchased,
        snapshot.total_used,
        snapshot.is_blocked,
        snapshot.last_updated,
        snapshot.version,
        snapshot.held,
        snapshot.held_until,
    )


def _expired(raw: tuple) -> bool:
    """An entry whose earliest hold has expired since (or one written before holds existed)."""
    if len(raw) <= _HELD_UNTIL:
        return True
    return raw[_HELD_UNTIL] is not None and raw[_HELD_UNTIL] <= timezone.now()


def read(user_id: int) -> BalanceSnapshot | None:
    raw = cache.get(key_for(user_id))
    if raw is None or _expired(raw):
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
