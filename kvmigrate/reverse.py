"""Reverse (rollback): PostgreSQL -> the platform's KV layout and encoding, in batches of users.

Per batch of users (keyset pagination on the id), one query per table; each user becomes
`user_credits:{id}` (account, history, subscription, flags), `user_tokens:{id}` (Gmail) and
`firebase_uid:{uid}` (the id), rendered by `render` and encoded as the platform stored them
(`codec.encode_value`: JSON twice). Records that came from the real layout come back value for
value; the rest in the platform's canonical shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from django.db import connection, reset_queries

from accounts import selectors as account_selectors
from billing import selectors as billing_selectors
from gmail import selectors as gmail_selectors
from notifications import selectors as notification_selectors

from .codec import encode_value
from .render import render_user_credits, render_user_tokens
from .report import Counts
from .sources import Writer
from .transforms.base import AccountRow, FlagRow, LedgerRow, SubscriptionRow, TokenRow
from .verify import jsonb

CREDITS_DOMAINS = frozenset({"credits", "billing", "notifications"})


def _rows(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def user_batches(batch_size: int) -> Iterator[list[tuple[int, str | None]]]:
    last = 0
    while True:
        rows = account_selectors.user_page(after=last, size=batch_size)
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def render_batch(
    users: list[tuple[int, str | None]],
    only: frozenset[str],
    *,
    changed_at: dict[int, datetime] | None = None,
) -> list[tuple[str, str]]:
    """The (key, raw value) pairs of a batch of users.

    The digests of the history entries rendered from rows the app wrote are remembered
    (`RenderedEntry`), so a delta run that meets them in the store knows them for rows the
    ledger already has. `changed_at` (user id -> latest change, from the mirror) moves updatedAt.
    """
    ids = [user_id for user_id, _ in users]
    items: list[tuple[str, str]] = []
    rendered: list[tuple[int, str, int]] = []
    if only & CREDITS_DOMAINS:
        accounts = _accounts(ids) if "credits" in only else {}
        ledger = _ledger(ids) if "credits" in only else {}
        subs = _subscriptions(ids) if "billing" in only else {}
        flags = _flags(ids) if "notifications" in only else {}
        for user_id in ids:
            if user_id in accounts or user_id in subs or user_id in flags:
                history: list = []
                record = render_user_credits(
                    account=accounts.get(user_id),
                    ledger=ledger.get(user_id, []),
                    subscription=subs.get(user_id),
                    flags=flags.get(user_id, []),
                    changed_at=(changed_at or {}).get(user_id),
                    history_out=history,
                )
                rendered.extend(
                    (user_id, digest, row.pk)
                    for row, _, digest in history
                    if row.idempotency_key != f"kv:{digest}"
                )
                items.append((f"user_credits:{user_id}", encode_value(record)))
    if "gmail" in only:
        for user_id, token in _tokens(ids).items():
            items.append((f"user_tokens:{user_id}", encode_value(render_user_tokens(token))))
    if "accounts" in only:
        items.extend((f"firebase_uid:{uid}", encode_value(user_id)) for user_id, uid in users if uid)
    remember_entries(rendered)
    return items


_REMEMBER_SQL = """
    INSERT INTO kvmigrate_rendered_entries (user_id, digest, transaction_id)
    SELECT * FROM unnest(%s::bigint[], %s::text[], %s::bigint[])
    ON CONFLICT (user_id, digest) DO NOTHING
"""


def remember_entries(rendered: list[tuple[int, str, int]]) -> None:
    """Remember (user, digest) -> ledger row for entries rendered from rows the app wrote."""
    if not rendered:
        return
    users, digests, rows = zip(*rendered, strict=True)
    with connection.cursor() as cursor:
        cursor.execute(_REMEMBER_SQL, [list(users), list(digests), list(rows)])


def reverse(
    writer: Writer, *, only: frozenset[str], batch_size: int, progress: Callable[[Counts], None]
) -> Counts:
    counts = Counts()
    for users in user_batches(batch_size):
        items = render_batch(users, only)
        writer.set_many(items)
        batch = Counts()
        for key, _ in items:
            domain = {"user_credits": "credits", "user_tokens": "gmail", "firebase_uid": "accounts"}[
                key.partition(":")[0]
            ]
            batch.add(domain, "read")
            batch.add(domain, "created")
        progress(batch)
        counts.merge(batch)
        reset_queries()  # with DEBUG on, Django keeps every query's SQL: not for a whole store
    return counts


# --- rows -> plain dataclasses ----------------------------------------------------------------


def _accounts(ids: list[int]) -> dict[int, AccountRow]:
    rows = _rows(
        """SELECT user_id, balance, total_used, total_purchased, is_blocked, monthly_allowance, last_top_up,
                  created_at, last_updated, metadata
             FROM user_credits WHERE user_id = ANY(%s)""",
        [ids],
    )
    return {row[0]: AccountRow(*row[:-1], jsonb(row[-1])) for row in rows}


def _ledger(ids: list[int]) -> dict[int, list[LedgerRow]]:
    rows = _rows(
        """SELECT user_id, amount, type, reason, created_at, idempotency_key, metadata, id
             FROM credit_transactions WHERE user_id = ANY(%s) ORDER BY user_id, created_at, id""",
        [ids],
    )
    out: dict[int, list[LedgerRow]] = {}
    for user_id, *values, pk in rows:
        out.setdefault(user_id, []).append(LedgerRow(*values[:-1], jsonb(values[-1]), pk))
    return out


def _subscriptions(ids: list[int]) -> dict[int, SubscriptionRow]:
    return {
        user_id: SubscriptionRow(user_id, *row)
        for user_id, row in billing_selectors.subscription_rows(user_ids=ids).items()
    }


def _flags(ids: list[int]) -> dict[int, list[FlagRow]]:
    out: dict[int, list[FlagRow]] = {}
    for user_id, kind, flag_id in sorted(notification_selectors.flags_of(user_ids=ids)):
        out.setdefault(user_id, []).append(FlagRow(kind, flag_id))
    return out


def _tokens(ids: list[int]) -> dict[int, TokenRow]:
    out = {}
    for t in gmail_selectors.tokens_of(user_ids=ids).values():
        out[t.user_id] = TokenRow(
            user_id=t.user_id,
            access_token=t.access_token,
            refresh_token=t.refresh_token,
            expires_at=t.expires_at,
            email=t.email,
            display_name=t.display_name,
            scopes=list(t.scopes),
            created_at=t.created_at,
            updated_at=t.updated_at,
            metadata=gmail_selectors.readable_metadata(t.metadata or {}),
        )
    return out
