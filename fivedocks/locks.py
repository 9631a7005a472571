"""PostgreSQL session-level advisory locks: "one at a time per database" for long jobs.

kvmigrate (one run at a time) and the KV mirror's drainer (one drainer, so the outbox's order is
the order of writes) hold one for their whole run, on their own connection. The ids live here,
in one place, so two jobs never pick the same number by accident.
"""

from __future__ import annotations

from django.db import connection

KVMIGRATE_RUN = 0x6B766D67  # "kvmg": one kvmigrate run at a time
KV_MIRROR_DRAIN = 0x6B766D69  # "kvmi": one KV mirror drainer at a time


def try_advisory_lock(lock_id: int) -> bool:
    """Take the lock for this connection's session without waiting; False when another holds it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock_id])
        return bool(cursor.fetchone()[0])


def advisory_unlock(lock_id: int) -> None:
    """Release a lock taken by `try_advisory_lock` on this connection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s)", [lock_id])
