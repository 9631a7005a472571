"""cutover's side of `fivedocks.changes`: the write freeze and the KV mirror's outbox.

`guard` refuses a write to a frozen domain (the services call it, so the API, the legacy routes,
the service API, the admin and the commands are all frozen alike). `changed` adds one row to the
outbox inside the writing transaction: the KV key whose record the change touches, nothing else.
No rendering and no read happen in the writer (a deduction stays two statements plus this
insert); `manage.py kvmirror` renders the committed state when it drains (cutover.drain).
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection

from cutover.selectors import freeze_for
from fivedocks.errors import WritesFrozen

# Which KV record a domain's data lives in: credits, billing and notifications share one record.
FAMILY = {
    "credits": "user_credits",
    "billing": "user_credits",
    "notifications": "user_credits",
    "gmail": "user_tokens",
}
# What a record is rendered from.
FAMILY_DOMAINS = {
    "user_credits": frozenset({"credits", "billing", "notifications"}),
    "user_tokens": frozenset({"gmail"}),
}

_INSERT_SQL = """
    INSERT INTO cutover_kv_outbox (key, domain, user_id, created_at, attempts, last_error)
    VALUES (%s, %s, %s, clock_timestamp(), 0, '')
"""


def mirrored(domain: str) -> bool:
    return domain in settings.KV_MIRROR


def key_for(domain: str, user_id: int) -> str:
    return f"{FAMILY[domain]}:{user_id}"


class CutoverTracker:
    """Installed into fivedocks.changes by CutoverConfig.ready()."""

    def guard(self, domain: str) -> None:
        freeze = freeze_for(domain)
        if freeze is None:
            return
        error = WritesFrozen(
            f"Writes to {domain} are paused for a moment ({freeze.reason}); "
            f"retry in {freeze.retry_after} seconds. Reads keep working."
        )
        error.retry_after = freeze.retry_after
        error.domain = domain
        raise error

    def changed(self, domain: str, user_id: int) -> None:
        if domain not in settings.KV_MIRROR:
            return
        with connection.cursor() as cursor:
            cursor.execute(_INSERT_SQL, [key_for(domain, user_id), domain, user_id])
