from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from cutover.models import WriteFreeze
from fivedocks import coherence

# A bound on how long a remembered answer may live even if an eviction were lost.
FREEZE_CACHE_SECONDS = 60
_UNKNOWN = object()


@dataclass(frozen=True)
class Freeze:
    domain: str
    reason: str
    retry_after: int


def freeze_cache_key(domain: str) -> str:
    return f"cutover:freeze:{domain}"


def freeze_for(domain: str) -> Freeze | None:
    """The freeze on `domain` from settings (WRITES_FROZEN) or the admin switch, else None.

    Every write asks this. A serving process whose listener is connected keeps the answer in its
    local cache: `set_freeze` evicts it in every process when the freeze commits (the same NOTIFY
    as the balances, about a millisecond), and while the listener is down, or in a process that
    has none (a management command), the table is read on every call. Reading it on every write
    was one more round trip before each deduction's transaction.
    """
    if domain in settings.WRITES_FROZEN:
        return Freeze(domain, "writes are frozen by configuration", settings.WRITES_FROZEN_RETRY_AFTER)
    key = freeze_cache_key(domain)
    token = None
    if coherence.listening():
        cached = coherence.local_cache().get(key, _UNKNOWN)
        if cached is not _UNKNOWN:
            return _freeze(domain, cached)
        token = coherence.fill_token(key)
    row = (
        WriteFreeze.objects.filter(domain=domain, frozen=True)
        .values_list("reason", "retry_after_seconds")
        .first()
    )
    if token is not None:
        coherence.fill(key, row, FREEZE_CACHE_SECONDS, token)
    return _freeze(domain, row)


def _freeze(domain: str, row: tuple[str, int] | None) -> Freeze | None:
    if row is None:
        return None
    reason, retry_after = row
    return Freeze(domain, reason or "writes are frozen for a cutover", retry_after)
