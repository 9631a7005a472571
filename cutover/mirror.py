"""The KV mirror: every committed change to a mirrored domain is written back to the KV store.

Inside the writing transaction the user's record is rendered in the platform's layout and
encoding (the same renderer as `kvmigrate --reverse`) and stored in the outbox; `manage.py
kvmirror` drains the outbox. A transaction-scoped advisory lock per KV key serialises the renders
of one key, so a later row in the outbox always holds the later state (credits, billing and
notifications all live in the one `user_credits:{id}` record).
"""

from __future__ import annotations

import zlib

from django.conf import settings
from django.db import connection
from django.db.models.signals import post_delete, post_save

from cutover.models import KvOutbox

# Which KV record (family) a domain's data lives in, and which domains that record renders.
_CREDITS_RECORD = ("user_credits", frozenset({"credits", "billing", "notifications"}))
_FAMILY = {
    "credits": _CREDITS_RECORD,
    "billing": _CREDITS_RECORD,
    "notifications": _CREDITS_RECORD,
    "gmail": ("user_tokens", frozenset({"gmail"})),
}


def mirrored(domain: str) -> bool:
    return domain in settings.KV_MIRROR


def record_change(*, user_id: int, domain: str) -> KvOutbox | None:
    """Render the user's record as it now stands in this transaction and queue it for the KV store."""
    if not mirrored(domain):
        return None
    from kvmigrate.reverse import render_batch

    family, domains = _FAMILY[domain]
    key = f"{family}:{user_id}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [0x6B76, zlib.crc32(key.encode()) - 2**31])
    rendered = dict(render_batch([(user_id, None)], domains))
    return KvOutbox.objects.create(key=key, value=rendered.get(key), domain=domain)


def _on_user_data_changed(sender, *, user_id: int, domain: str, **kwargs) -> None:
    record_change(user_id=user_id, domain=domain)


def _on_model_saved(domain: str):
    def receiver(sender, instance, **kwargs) -> None:
        record_change(user_id=instance.user_id, domain=domain)

    return receiver


_RECEIVERS = {"billing": _on_model_saved("billing"), "gmail": _on_model_saved("gmail")}


def connect() -> None:
    """Called from CutoverConfig.ready(): the domain services stay unaware of the mirror."""
    from billing.models import Subscription
    from fivedocks.signals import user_data_changed
    from gmail.models import GmailToken

    user_data_changed.connect(_on_user_data_changed, dispatch_uid="kv-mirror")
    for model, domain in ((Subscription, "billing"), (GmailToken, "gmail")):
        post_save.connect(_RECEIVERS[domain], sender=model, dispatch_uid=f"kv-mirror-save-{domain}")
        post_delete.connect(_RECEIVERS[domain], sender=model, dispatch_uid=f"kv-mirror-delete-{domain}")
