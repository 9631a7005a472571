"""The reads of a load, two round trips per batch: each record's last run, and the batch's `State`.

The state is one `UNION ALL` statement made of the owning apps' selectors (accounts' users and
Firebase uids, the KV key each credits/billing/gmail row was moved from, billing's Stripe
customers, notifications' flags) and kvmigrate's own tables (open quarantine rows, the ledger
entries fivedocks rendered itself): the apps own their SQL, the batch pays one round trip.
"""

from __future__ import annotations

from django.db import connection

from accounts import selectors as account_selectors
from billing import selectors as billing_selectors
from credits import selectors as credit_selectors
from fivedocks import bulk
from gmail import selectors as gmail_selectors
from notifications import selectors as notification_selectors

from .models import MigratedRecord, QuarantinedRecord, RenderedEntry
from .plan import State
from .records import Previous, Record, with_previous

_RECORDS = MigratedRecord._meta.db_table
_QUARANTINE = QuarantinedRecord._meta.db_table
_RENDERED = RenderedEntry._meta.db_table


def previous_runs(keys: list[str]) -> dict[str, Previous]:
    """The last run of each of these keys that moved it: its fingerprint, domains and parts."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT key, fingerprint, domains, parts FROM {_RECORDS} WHERE key = ANY(%s)",  # noqa: S608
            [keys],
        )
        return {
            key: Previous(fp, tuple(domains), tuple(parts)) for key, fp, domains, parts in cursor.fetchall()
        }


def look_up(records: list[Record]) -> list[Record]:
    """Each record with its key's last run, and so what is left to do (those with something to do
    transformed and sealed too, `records.with_previous`)."""
    previous = previous_runs([r.key for r in records])
    return [with_previous(r, previous.get(r.key)) for r in records]


def rendered_keys(user_ids: list[int], keys: list[str]) -> bulk.Pairs:
    """(user, digest) of these `kv:` idempotency keys that are entries fivedocks rendered itself."""
    return bulk.Pairs(
        f"SELECT user_id, digest FROM {_RENDERED} WHERE user_id = ANY(%s) AND digest = ANY(%s)",  # noqa: S608
        (user_ids, [key.removeprefix("kv:") for key in keys]),
    )


def rendered(user_ids: list[int], keys: list[str]) -> set[tuple[int, str]]:
    """Which of these (user, `kv:` idempotency key) are entries fivedocks rendered itself."""
    if not user_ids or not keys:
        return set()
    rows = bulk.fetch_pairs({"rendered": rendered_keys(user_ids, keys)})["rendered"]
    return {(user_id, f"kv:{digest}") for user_id, digest in rows}


def fetch_state(records: list[Record]) -> State:
    """What PostgreSQL holds for the records with something to do, in one round trip."""
    live = [r for r in records if r.todo]
    moving = [r.out for r in live if r.out is not None and r.refusal is None]
    ids = sorted({out.user_id for out in moving})
    uids = [out.firebase.uid for out in moving if out.firebase is not None]
    customers = sorted({out.subscription.stripe_customer_id for out in moving if out.subscription} - {None})
    flag_ids = sorted({out.user_id for out in moving if out.flags})
    accounts = [out.account for out in moving if out.account is not None]
    parts: dict[str, bulk.Pairs] = {
        "quarantined": bulk.Pairs(
            f"SELECT NULL::bigint, key FROM {_QUARANTINE} WHERE key = ANY(%s) AND resolved_at IS NULL",  # noqa: S608
            ([r.key for r in live],),
        )
    }
    if ids:
        parts["user"] = account_selectors.firebase_uids_by_id(user_ids=ids)
        parts["credits"] = credit_selectors.migrated_account_keys(user_ids=ids)
        parts["billing"] = billing_selectors.migrated_subscription_keys(user_ids=ids)
        parts["gmail"] = gmail_selectors.migrated_token_keys(user_ids=ids)
    if uids:
        parts["uid"] = account_selectors.users_holding_firebase_uids(firebase_uids=uids)
    if customers:
        parts["customer"] = billing_selectors.subscription_customers(customer_ids=customers)
    if flag_ids:
        parts["flag"] = notification_selectors.migrated_flags(user_ids=flag_ids)
    history_keys = [e.idempotency_key for a in accounts for e in a.history]
    if history_keys:
        parts["rendered"] = rendered_keys([a.user_id for a in accounts], history_keys)
    rows = bulk.fetch_pairs(parts)
    return State(
        users=dict(rows.get("user", ())),
        uid_holders={uid: user_id for user_id, uid in rows.get("uid", ())},
        owners={domain: dict(rows.get(domain, ())) for domain in ("credits", "billing", "gmail")},
        customers={customer: user_id for user_id, customer in rows.get("customer", ())},
        flags=frozenset(
            (user_id, *notification_selectors.flag_of_pair(text)) for user_id, text in rows.get("flag", ())
        ),
        quarantined=frozenset(key for _, key in rows["quarantined"]),
        rendered=frozenset((user_id, f"kv:{digest}") for user_id, digest in rows.get("rendered", ())),
    )
