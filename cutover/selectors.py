from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from cutover.models import WriteFreeze


@dataclass(frozen=True)
class Freeze:
    domain: str
    reason: str
    retry_after: int


def freeze_for(domain: str) -> Freeze | None:
    """The freeze on `domain` from settings (WRITES_FROZEN) or the admin switch, else None.

    Read from the database on every write request (a tiny indexed table, deliberately not cached):
    a freeze must reach every process at once, which a per-process cache would not.
    """
    if domain in settings.WRITES_FROZEN:
        return Freeze(domain, "writes are frozen by configuration", settings.WRITES_FROZEN_RETRY_AFTER)
    row = (
        WriteFreeze.objects.filter(domain=domain, frozen=True).values("reason", "retry_after_seconds").first()
    )
    if row is None:
        return None
    return Freeze(domain, row["reason"] or "writes are frozen for a cutover", row["retry_after_seconds"])
