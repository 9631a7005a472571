"""The per-user balance cache entry.

One entry per user (never a table-wide invalidation), replaced with the committed values by
`transaction.on_commit`, so one user's deduction never evicts another user's balance and the
next read in the same process sees the new balance. The entry carries the id of the ledger row
it reflects and is replaced atomically only by a newer one (`set_if_newer`: compared under the
local cache's lock, or WATCH/MULTI in Redis), so of two commit callbacks that interleave the
newer always wins. A value read from the database fills the entry only when there is none
(`add`) and no eviction happened during the read (`fivedocks.coherence.fill`).

Other processes and hosts: the writing transaction registers the key with
`fivedocks.coherence.evict_on_commit` (`changing`), so every process's listener drops its local
entry when the change commits. While a process's listener is down it reads the database. A
cache that fails (Redis down) is read as a miss and a failed write after commit is logged and
counted.

The entry also carries the user's open-hold total and the earliest expiry among those holds:
once that expiry passes the entry counts as a miss, so a hold that expires (which writes
nothing) never leaves a stale `available` behind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from fivedocks import coherence
from fivedocks.metrics import CACHE_ERRORS, CACHE_REQUESTS

logger = logging.getLogger(__name__)

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
    """The cached entry, or None: a miss, an entry whose earliest hold has expired, a cache that
    fails, or a local cache that may be stale (its process's listener is down)."""
    if not coherence.usable():
        return None
    try:
        raw = cache.get(key_for(user_id))
        if raw is not None and _expired(raw):
            cache.delete(key_for(user_id))  # so that the database's answer can fill it (`add`)
            raw = None
    except Exception:
        _failed("read")
        return None
    if raw is None:
        _MISS.inc()
        return None
    _HIT.inc()
    return BalanceSnapshot(*raw)


def fill_token(user_id: int):
    """Taken before reading the database; `fill` uses it to refuse a value an eviction outdated."""
    return coherence.fill_token(key_for(user_id))


def fill(user_id: int, snapshot: BalanceSnapshot, token) -> None:
    """Cache a snapshot read from the database (version 0): only where no entry is (`add`)."""
    coherence.fill(key_for(user_id), _payload(snapshot), settings.CREDITS_BALANCE_CACHE_TTL, token)


def changing(user_ids) -> None:
    """Inside the writing transaction: every process drops these entries when it commits."""
    coherence.evict_on_commit(*(key_for(user_id) for user_id in user_ids))


def store(user_id: int, snapshot: BalanceSnapshot) -> None:
    """After commit: replace the entry unless it holds a newer version. Never raises."""
    try:
        setter = getattr(cache, "set_if_newer", None)
        if setter is None:  # a backend without compare-and-set: delete, the next read refills
            cache.delete(key_for(user_id))
        else:
            ttl = settings.CREDITS_BALANCE_CACHE_TTL
            setter(key_for(user_id), _payload(snapshot), ttl, version_index=_VERSION)
    except Exception:  # the write committed; the cache must not turn it into a 500
        _failed("store")


def forget(user_id: int) -> None:
    forget_many([user_id])


def forget_many(user_ids) -> None:
    try:
        cache.delete_many([key_for(user_id) for user_id in user_ids])
    except Exception:
        _failed("forget")


def _failed(operation: str) -> None:
    CACHE_ERRORS.labels("default", f"balance_{operation}").inc()
    logger.warning("balance cache %s failed; answered from the database", operation, exc_info=True)
