"""Verify: re-read the store and compare every record with PostgreSQL, field by field.

For each record the (pure) transform says what PostgreSQL should hold; one query per table per
batch fetches what it does hold. Outcomes per (record, domain): `verified`; `mismatched` with
the differing fields, or missing from PostgreSQL (listed apart, counted as mismatched);
`quarantined` when the record (that exact value) is in the quarantine; keys of other prefixes
and domains not asked for are `skipped`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.db import connection

from accounts import selectors as account_selectors
from billing import selectors as billing_selectors
from fivedocks import bulk
from gmail import selectors as gmail_selectors
from notifications import selectors as notification_selectors

from .load import Context, Prepared
from .lookup import rendered
from .records import Record, classify
from .report import Counts
from .transforms import Transformed


def prepare_verify(items: Iterable[tuple[str, str]], ctx: Context) -> Prepared:
    """Classify, fingerprint, decode and transform a batch: pure work, done in a second thread."""
    counts = Counts()
    return Prepared(classify(items, ctx.only, counts, transformed=True), counts)


def verify_prepared(prepared: Prepared, ctx: Context) -> Counts:
    counts, recs = prepared.counts, prepared.recs
    if not recs:
        return counts
    quarantined = _quarantined(recs)
    good: list[Record] = []
    for rec in recs:
        if rec.refusal is None:
            good.append(rec)
        elif (rec.key, rec.fingerprint) in quarantined:
            _add(counts, rec.primary, "quarantined")
        else:
            _add(counts, rec.primary, "mismatched")
            counts.missing.append(
                {
                    "key": rec.key,
                    "domain": rec.primary,
                    "reason": f"not quarantined: {': '.join(rec.refusal)}",
                }
            )
    if not good:
        return counts
    ids = sorted({r.out.user_id for r in good})
    users = account_selectors.firebase_uids(user_ids=ids)
    state = _State(good, ids)
    for rec in good:
        if rec.out.user_id not in users:
            if (rec.key, rec.fingerprint) in quarantined:
                _add(counts, rec.primary, "quarantined")
            else:
                _add(counts, rec.primary, "mismatched")
                counts.missing.append(
                    {"key": rec.key, "domain": rec.primary, "reason": "unknown user, not quarantined"}
                )
            continue
        relevant = [d for d in rec.wanted if d in rec.out.domains]
        if not relevant:
            _add(counts, rec.primary, "skipped")
        for domain in relevant:
            diffs = state.compare(domain, rec, users)
            if not diffs:
                _add(counts, domain, "verified")
            elif (rec.key, rec.fingerprint) in quarantined:
                _add(counts, domain, "quarantined")  # this part was refused (superseded, conflict)
            elif diffs == ["missing"]:
                _add(counts, domain, "mismatched")
                counts.missing.append({"key": rec.key, "domain": domain, "reason": "not in PostgreSQL"})
            else:
                _add(counts, domain, "mismatched")
                counts.mismatched.append({"key": rec.key, "domain": domain, "fields": diffs})
    return counts


def _add(counts: Counts, domain: str, name: str) -> None:
    counts.add(domain, "read")
    counts.add(domain, name)


def _rows(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _quarantined(recs: list[Record]) -> set[tuple[str, str]]:
    rows = _rows(
        "SELECT key, fingerprint FROM kvmigrate_quarantine WHERE key = ANY(%s) AND resolved_at IS NULL",
        [[r.key for r in recs]],
    )
    return {(key, fp) for key, fp in rows}


def _same_json(a: Any, b: Any) -> bool:
    """Equal once both went through JSON (jsonb gives back what json.loads would)."""
    return a == b or json.loads(json.dumps(a, default=str)) == json.loads(json.dumps(b, default=str))


class _State:
    """What PostgreSQL holds for the users of one batch, fetched lazily, one query per table."""

    def __init__(self, recs: list[Record], ids: list[int]):
        self.recs = recs
        self.ids = ids
        self._cache: dict[str, Any] = {}

    def _get(self, name: str):
        if name not in self._cache:
            self._cache[name] = getattr(self, f"_load_{name}")()
        return self._cache[name]

    def _load_accounts(self) -> dict[int, tuple]:
        rows = _rows(
            """SELECT user_id, balance, total_purchased, total_used, is_blocked, monthly_allowance,
                      last_top_up, created_at, last_updated, metadata
                 FROM user_credits WHERE user_id = ANY(%s)""",
            [self.ids],
        )
        return {row[0]: (*row[1:-1], jsonb(row[-1])) for row in rows}

    def _load_sums(self) -> dict[int, int]:
        sql = (
            "SELECT user_id, SUM(amount)::bigint FROM credit_transactions WHERE user_id = ANY(%s) GROUP BY 1"
        )
        return dict(_rows(sql, [self.ids]))

    def _load_entries(self) -> set[tuple[int, str]]:
        """The history entries PostgreSQL lacks or holds differently, compared in one join.

        The expected rows are copied into a temporary table: the comparison runs in the
        database, and only the entries that differ come back.
        """
        accounts = [r.out.account for r in self.recs if r.out.account]
        # Entries fivedocks rendered from its own ledger rows (the mirror, --reverse) are in the
        # ledger under the app's keys: they are not compared by their `kv:` digest.
        known = rendered(
            [a.user_id for a in accounts], [e.idempotency_key for a in accounts for e in a.history]
        )
        expected = [
            (a.user_id, e.idempotency_key, e.amount, e.type, e.created_at, e.reason)
            for a in accounts
            for e in a.history
            if (a.user_id, e.idempotency_key) not in known
        ]
        if not expected:
            return set()
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS kvmigrate_verify_entries (user_id bigint, "
                "idempotency_key text, amount bigint, type text, created_at timestamptz, reason text)"
            )
            cursor.execute("TRUNCATE kvmigrate_verify_entries")
        bulk.copy_rows(
            "kvmigrate_verify_entries",
            ("user_id", "idempotency_key", "amount", "type", "created_at", "reason"),
            expected,
        )
        # One unique-index lookup per expected entry (the LATERAL ... LIMIT 1 cannot be turned into
        # a hash join): the temporary table has no statistics, and with the ledger's the planner
        # chose to hash the whole ledger for every batch (1.4 million rows at 250,000 users).
        rows = _rows(
            """SELECT e.user_id, e.idempotency_key FROM kvmigrate_verify_entries e
                 LEFT JOIN LATERAL (
                     SELECT t.id, t.amount, t.type, t.created_at, t.reason FROM credit_transactions t
                      WHERE t.user_id = e.user_id AND t.idempotency_key = e.idempotency_key LIMIT 1
                 ) t ON true
                WHERE t.id IS NULL OR t.amount <> e.amount OR t.type <> e.type OR t.created_at <> e.created_at
                   OR t.reason <> e.reason""",
            [],
        )
        return set(rows)

    def _load_subscriptions(self) -> dict[int, tuple]:
        return billing_selectors.subscription_rows(user_ids=self.ids)

    def _load_tokens(self) -> dict[int, Any]:
        return gmail_selectors.tokens_of(user_ids=self.ids)

    def _load_flags(self) -> set[tuple[int, str, int]]:
        return notification_selectors.flags_of(user_ids=self.ids)

    # --- comparisons: the list of differing fields ([] when equal, ["missing"] when absent) ----

    def compare(self, domain: str, rec: Record, users: dict[int, str | None]) -> list[str]:
        out: Transformed = rec.out
        if domain == "accounts":
            return [] if users.get(out.user_id) == out.firebase.uid else ["firebase_uid"]
        if domain == "credits":
            return self._credits(rec)
        if domain == "billing":
            return self._billing(rec)
        if domain == "gmail":
            return self._gmail(rec)
        if domain == "notifications":
            flags = self._get("flags")
            return [
                f"{flag.kind}:{flag.notification_id}"
                for flag in out.flags
                if (out.user_id, flag.kind, flag.notification_id) not in flags
            ]
        raise ValueError(domain)

    def _credits(self, rec: Record) -> list[str]:
        account = rec.out.account
        row = self._get("accounts").get(account.user_id)
        if row is None:
            return ["missing"]
        balance, purchased, used, blocked, allowance, top_up, created, updated, metadata = row
        owner = (metadata or {}).get("kv", {}).get("key")
        if owner != rec.key:
            return [f"owner: moved from {owner or 'the application'}"]
        diffs = []
        expected = {
            "balance": (account.balance, balance),
            "total_used": (account.total_used, used),
            "is_blocked": (account.is_blocked, blocked),
            "monthly_allowance": (account.monthly_allowance, allowance),
            "last_top_up": (account.last_top_up, top_up),
        }
        if account.total_purchased is not None:
            expected["total_purchased"] = (account.total_purchased, purchased)
        if account.created_at is not None:
            expected["created_at"] = (account.created_at, created)
        diffs = [name for name, (want, have) in expected.items() if want != have]
        # The record's updatedAt also moves with its flags and subscription (the mirror renders
        # it so): a store that is later than the account's own last change is not behind.
        if account.last_updated is not None and (updated is None or account.last_updated < updated):
            diffs.append("last_updated")
        if not _same_json(account.metadata, metadata):
            diffs.append("metadata")
        if self._get("sums").get(account.user_id, 0) != balance:
            diffs.append("ledger: does not sum to the balance")
        differ = self._get("entries")
        if differ:
            for index, entry in enumerate(account.history):
                if (account.user_id, entry.idempotency_key) in differ:
                    diffs.append(f"transactions[{index}]")
        return diffs

    def _billing(self, rec: Record) -> list[str]:
        sub = rec.out.subscription
        row = self._get("subscriptions").get(sub.user_id)
        if row is None:
            return ["missing"]
        customer, sub_id, status, plan, start, end, cancel, metadata = row
        if (metadata or {}).get("kv", {}).get("key") != rec.key:
            return [f"owner: moved from {(metadata or {}).get('kv', {}).get('key') or 'the application'}"]
        pairs = {
            "stripe_customer_id": (sub.stripe_customer_id, customer),
            "stripe_subscription_id": (sub.stripe_subscription_id, sub_id),
            "status": (sub.status, status),
            "plan_type": (sub.plan_type, plan),
            "current_period_start": (sub.current_period_start, start),
            "current_period_end": (sub.current_period_end, end),
            "cancel_at_period_end": (sub.cancel_at_period_end, cancel),
        }
        diffs = [name for name, (want, have) in pairs.items() if want != have]
        if not _same_json(sub.metadata, metadata):
            diffs.append("metadata")
        return diffs

    def _gmail(self, rec: Record) -> list[str]:
        token = rec.out.token
        row = self._get("tokens").get(token.user_id)
        if row is None:
            return ["missing"]
        if (row.metadata or {}).get("kv", {}).get("key") != rec.key:
            return ["owner: moved from another key or the application"]
        pairs = {
            "access_token": (token.access_token, row.access_token),
            "refresh_token": (token.refresh_token, row.refresh_token),
            "expires_at": (token.expires_at, row.expires_at),
            "email": (token.email, row.email),
            "display_name": (token.display_name, row.display_name),
            "scopes": (token.scopes, list(row.scopes)),
            "status": ("active", row.status),
        }
        if token.created_at is not None:
            pairs["created_at"] = (token.created_at, row.created_at)
        if token.updated_at is not None:
            pairs["updated_at"] = (token.updated_at, row.updated_at)
        diffs = [name for name, (want, have) in pairs.items() if want != have]
        if not _same_json(token.metadata, gmail_selectors.readable_metadata(row.metadata or {})):
            diffs.append("metadata")
        return diffs


def jsonb(value: Any) -> Any:
    """A jsonb column read with a raw cursor comes back as text (Django's psycopg setup)."""
    return json.loads(value) if isinstance(value, str) else value
