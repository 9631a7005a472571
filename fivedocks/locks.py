"""PostgreSQL session-level advisory locks: "one at a time per database" for long jobs.

kvmigrate (one run at a time) and the KV mirror's drainer (one drainer, so the outbox's order is
the order of writes) hold one for their whole run, on their own connection. The ids live here,
in one place, so two jobs never pick the same number by accident.

A session lock needs a session: on the direct connection to the primary (DATABASE_DIRECT_URL,
settings.DIRECT_DATABASE_ALIAS) when the default one goes through PgBouncer in transaction mode,
where a session is not kept.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connections

KVMIGRATE_RUN = 0x6B766D67  # "kvmg": one kvmigrate run at a time
KV_MIRROR_DRAIN = 0x6B766D69  # "kvmi": one KV mirror drainer at a time


def try_advisory_lock(lock_id: int) -> bool:
    """Take the lock for this connection's session without waiting; False when another holds it."""
    with connections[settings.DIRECT_DATABASE_ALIAS].cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock_id])
        return bool(cursor.fetchone()[0])


def advisory_unlock(lock_id: int) -> None:
    """Release a lock taken by `try_advisory_lock` on this connection."""
    with connections[settings.DIRECT_DATABASE_ALIAS].cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s)", [lock_id])
