"""Decide: what one batch writes, from its records and what PostgreSQL holds. Pure: no database.

`decide(records, state)` sees every record of the batch (looked up and, when there is something
to do, transformed) and the batch's `State` (read in one round trip, `lookup.py`); it returns a
`Plan`: the rows each domain's load service writes, the fingerprints and quarantine rows of
kvmigrate's own tables, the keys whose earlier claim on a row is forgotten, and the counts.
`apply.py` carries a plan out. Who may write a row (app-written rows win over migrated ones, the
platform's own layout over the plan's) is decided here, see PRECEDENCE and docs/kvmigrate.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from credits.services import MigratedAccount
from gmail import services as gmail_services
from gmail.public import seal_secret
from gmail.services import SealedToken
from notifications.services import MigratedFlag

from . import transforms
from .records import Record, Refusal, flags_metadata, holds_secrets, storable
from .report import Counts
from .transforms.base import AccountRow, SubscriptionRow

# Which layout wins when both describe the same row: the platform's own.
PRECEDENCE = {"real": 2, "plan": 1}


@dataclass(frozen=True)
class State:
    """What PostgreSQL holds for one batch's users (read in one round trip, `lookup.fetch_state`)."""

    users: dict[int, str | None] = field(default_factory=dict)  # id -> firebase_uid
    uid_holders: dict[str, int] = field(default_factory=dict)  # firebase_uid -> id
    owners: dict[str, dict[int, str | None]] = field(default_factory=dict)  # domain -> user -> owner key
    customers: dict[str, int] = field(default_factory=dict)  # stripe customer -> user
    flags: frozenset[tuple[int, str, int]] = frozenset()
    quarantined: frozenset[str] = frozenset()  # keys with unresolved quarantine rows
    rendered: frozenset[tuple[int, str]] = frozenset()  # (user, `kv:` key) fivedocks rendered itself


class MigratedRow(NamedTuple):
    """A key's row in `kvmigrate_records`: its fingerprint and what was done for it (one per
    record moved: a named tuple, the cheapest immutable record Python builds)."""

    key: str
    family: str
    fingerprint: str
    domains: tuple[str, ...]
    parts: tuple[str, ...]
    user_id: int
    exists: bool  # the key has a row already (upserted, not copied)


@dataclass(frozen=True)
class QuarantineEntry:
    """A record (or parts of it) that cannot move: kept with its raw value and the reason."""

    key: str
    raw_value: str  # encrypted when the record carries tokens
    raw_encrypted: bool
    escaped: bool
    fingerprint: str
    reason_code: str
    reason: str


@dataclass(frozen=True)
class Plan:
    """Everything one batch writes, per owner; `apply.apply` carries it out."""

    forget_keys: tuple[str, ...] = ()  # keys whose row another record takes over: moved again next run
    firebase_uids: dict[int, str] = field(default_factory=dict)  # accounts: user -> uid
    accounts: tuple[MigratedAccount, ...] = ()  # credits
    subscriptions: tuple[SubscriptionRow, ...] = ()  # billing
    subscription_users: frozenset[int] = frozenset()  # users with a subscription row already
    tokens: tuple[SealedToken, ...] = ()  # gmail
    token_users: frozenset[int] = frozenset()  # users with a Gmail row already
    flags: tuple[MigratedFlag, ...] = ()  # notifications
    existing_flags: frozenset[tuple[int, str, int]] = frozenset()
    migrated: tuple[MigratedRow, ...] = ()
    quarantine: tuple[QuarantineEntry, ...] = ()
    resolve_keys: tuple[str, ...] = ()  # quarantined before, moved whole now
    counts: Counts = field(default_factory=Counts)


@dataclass(slots=True)
class _Verdict:
    """What the decision says of one record while it is being made (then frozen into the plan)."""

    record: Record
    whole: Refusal | None  # the whole record is refused
    parts: list[str]  # domains with rows to write now
    rejected: dict[str, Refusal] = field(default_factory=dict)  # domain -> why not

    def refuse_part(self, domain: str, code: str, detail: str) -> None:
        self.rejected[domain] = Refusal(code, detail)
        if domain in self.parts:
            self.parts.remove(domain)


def decide(records: list[Record], state: State, *, now: datetime) -> Plan:
    """The plan of one batch (`records`: looked up; those with something to do, transformed)."""
    counts = Counts()
    live = _count_unchanged(records, counts)
    verdicts = [
        _Verdict(r, r.refusal, [d for d in r.out.domains if d in r.todo] if r.out is not None else [])
        for r in live
    ]
    _check_users(verdicts, state)
    forget = _claim_rows(verdicts, state)
    moving = [v for v in verdicts if v.whole is None and v.parts]
    done = [v for v in verdicts if v.whole is None]
    refused = [v for v in verdicts if v.whole is not None or v.rejected]
    for verdict in verdicts:
        _count(verdict, counts)
    return Plan(
        forget_keys=tuple(forget),
        firebase_uids={v.record.out.user_id: v.record.out.firebase.uid for v in _with(moving, "accounts")},
        accounts=tuple(_accounts(_with(moving, "credits"), state.rendered)),
        subscriptions=tuple(v.record.out.subscription for v in _with(moving, "billing")),
        subscription_users=frozenset(state.owners.get("billing", {})),
        tokens=tuple(_token(v.record) for v in _with(moving, "gmail")),
        token_users=frozenset(state.owners.get("gmail", {})),
        flags=tuple(_flags(_with(moving, "notifications"), now)),
        existing_flags=state.flags,
        migrated=tuple(_migrated(done)),
        quarantine=tuple(quarantine_entry(v.record, _shown_refusal(v)) for v in refused),
        resolve_keys=tuple(
            v.record.key for v in done if not v.rejected and v.record.key in state.quarantined
        ),
        counts=counts,
    )


def refuse_whole(record: Record, refusal: Refusal) -> Plan:
    """The plan for a record refused as a whole after the fact (PostgreSQL refused its rows)."""
    counts = Counts()
    _count_refused(record, refusal, counts)
    return Plan(quarantine=(quarantine_entry(record, refusal),), counts=counts)


def _with(verdicts: list[_Verdict], domain: str) -> list[_Verdict]:
    return [v for v in verdicts if domain in v.parts]


def _count_unchanged(records: list[Record], counts: Counts) -> list[Record]:
    """Counts what is unchanged; returns the records with something left to do."""
    live = []
    for record in records:
        if record.unchanged:
            unchanged = [
                d for d in record.wanted if d in record.previous.domains and d in record.previous.parts
            ]
            for domain in unchanged:
                counts.add(domain, "read")
                counts.add(domain, "unchanged")
            if not unchanged and not record.todo:  # it has nothing for the domains asked for
                counts.add(record.primary, "read")
                counts.add(record.primary, "skipped")
        if record.todo:
            live.append(record)
    return live


def _check_users(verdicts: list[_Verdict], state: State) -> None:
    for verdict in verdicts:
        out = verdict.record.out
        if out is not None and verdict.whole is None and out.user_id not in state.users:
            verdict.whole = Refusal(
                "unknown_user", f"user {out.user_id} is not in the users table (import it first)"
            )


def _claim_rows(verdicts: list[_Verdict], state: State) -> list[str]:
    """Decide, per target row, which record may write it; returns the keys that lose a row."""
    verdicts = [v for v in verdicts if v.whole is None and v.parts]
    forget: list[str] = []
    _claim_firebase(_with(verdicts, "accounts"), state)
    for domain, app_rows_win in (("credits", False), ("billing", True), ("gmail", True)):
        claimants = _with(verdicts, domain)
        if claimants:
            forget += _claim_owned(claimants, domain, state.owners.get(domain, {}), app_rows_win)
    billing = [v for v in _with(verdicts, "billing") if v.record.out.subscription.stripe_customer_id]
    if billing:
        _claim_customers(billing, state)
    return forget


def _claim_owned(
    verdicts: list[_Verdict], domain: str, owners: dict[int, str | None], app_rows_win: bool
) -> list[str]:
    # In the batch: the record of the highest precedence per user claims the row.
    best: dict[int, _Verdict] = {}
    for verdict in verdicts:
        other = best.get(verdict.record.out.user_id)
        if other is None or PRECEDENCE[verdict.record.layout] > PRECEDENCE[other.record.layout]:
            best[verdict.record.out.user_id] = verdict
    forget = []
    for verdict in verdicts:
        record = verdict.record
        user_id = record.out.user_id
        winner = best[user_id]
        if winner is not verdict:
            verdict.refuse_part(
                domain, "superseded", f"{domain}: {winner.record.key} describes the same row and wins"
            )
            continue
        if user_id not in owners:
            continue
        owner = owners[user_id]
        if owner == record.key:
            continue
        if owner is None:
            if app_rows_win:
                detail = f"{domain}: the application already holds this user's row (newer than the store)"
                verdict.refuse_part(domain, "superseded", detail)
            continue
        owner_prefix = owner.partition(":")[0]
        if PRECEDENCE[transforms.LAYOUTS.get(owner_prefix, "plan")] > PRECEDENCE[record.layout]:
            verdict.refuse_part(domain, "superseded", f"{domain}: already moved from {owner}, which wins")
        else:  # this record takes the row over: the other key must be looked at again next run
            forget.append(owner)
    return forget


def _claim_firebase(verdicts: list[_Verdict], state: State) -> None:
    holder, current = state.uid_holders, state.users
    taken: dict[int, str] = {}
    for verdict in sorted(verdicts, key=lambda v: v.record.key):
        uid, user_id = verdict.record.out.firebase.uid, verdict.record.out.user_id
        if holder.get(uid, user_id) != user_id:
            detail = f"Firebase uid already belongs to user {holder[uid]}"
        elif current.get(user_id) not in (None, uid):
            detail = f"user {user_id} already has another Firebase uid ({current[user_id]})"
        elif taken.get(user_id, uid) != uid:
            detail = f"user {user_id} gets Firebase uid {taken[user_id]} from another key of this batch"
        else:
            taken[user_id] = uid
            continue
        verdict.refuse_part("accounts", "conflict", detail)


def _claim_customers(verdicts: list[_Verdict], state: State) -> None:
    """A Stripe customer belongs to one user (a unique column)."""
    holder = dict(state.customers)
    for verdict in sorted(verdicts, key=lambda v: v.record.key):
        customer, user_id = verdict.record.out.subscription.stripe_customer_id, verdict.record.out.user_id
        if holder.setdefault(customer, user_id) != user_id:
            verdict.refuse_part(
                "billing", "conflict", f"Stripe customer {customer} belongs to user {holder[customer]}"
            )


# --- the rows of each domain ------------------------------------------------------------------


def _accounts(verdicts: list[_Verdict], rendered: frozenset[tuple[int, str]]) -> list[MigratedAccount]:
    """Each account with the key of its balancing row, its history without the entries fivedocks
    rendered itself (RenderedEntry: they stand for ledger rows the app wrote; after a rollback,
    only what the old code added is news)."""
    accounts = []
    for verdict in verdicts:
        record, account = verdict.record, verdict.record.out.account
        history = account.history
        if rendered:
            history = [e for e in history if (account.user_id, e.idempotency_key) not in rendered]
        accounts.append(  # a new row, not the record's own changed: decide changes nothing it is given
            AccountRow(
                account.user_id, account.balance, account.total_used, account.total_purchased,
                account.is_blocked, account.monthly_allowance, account.last_top_up, account.created_at,
                account.last_updated, account.metadata, history,
                migration_key=f"kv-migration:{record.key}:{record.fingerprint[:16]}",
                migration_metadata={"source": "kv", "key": record.key, "fingerprint": record.fingerprint},
            )
        )  # fmt: skip
    return accounts


def _token(record: Record) -> SealedToken:
    return record.sealed_token or gmail_services.seal_migrated_token(record.out.token)


def _flags(verdicts: list[_Verdict], now: datetime) -> list[MigratedFlag]:
    """Flags are a union: the notifications service keeps those the user already has."""
    flags = []
    for verdict in verdicts:
        record, out = verdict.record, verdict.record.out
        meta_json = record.flags_metadata or flags_metadata(out)
        shown_at = out.flags_at or now
        flags.extend(
            MigratedFlag(out.user_id, flag.kind, flag.notification_id, shown_at, meta_json)
            for flag in out.flags
        )
    return flags


def _migrated(verdicts: list[_Verdict]) -> list[MigratedRow]:
    rows = []
    for verdict in verdicts:
        record = verdict.record
        handled = [d for d in record.todo if d not in verdict.rejected]
        if not handled:
            continue
        moved = [d for d in record.out.domains if d in handled]
        if record.unchanged:  # same value: add to what was handled
            handled = sorted(set(handled) | set(record.previous.domains))
            moved = sorted(set(moved) | set(record.previous.parts))
        rows.append(
            MigratedRow(
                record.key,
                record.prefix,
                record.fingerprint,
                tuple(handled),
                tuple(moved),
                record.out.user_id,
                record.previous is not None,
            )
        )
    return rows


def _shown_refusal(verdict: _Verdict) -> Refusal:
    if verdict.whole is not None:
        return verdict.whole
    code = next(iter(verdict.rejected.values())).code
    return Refusal(code, "; ".join(r.detail for r in verdict.rejected.values()))


def quarantine_entry(record: Record, refusal: Refusal) -> QuarantineEntry:
    key, key_escaped = storable(record.key)
    raw, raw_escaped = storable(record.raw)
    secret = holds_secrets(record.prefix)
    return QuarantineEntry(
        key=key,
        raw_value=seal_secret(raw) if secret else raw,
        raw_encrypted=secret,
        escaped=key_escaped or raw_escaped or refusal.code == "bad_key",  # bad keys: escaped in classify
        fingerprint=record.fingerprint,
        reason_code=refusal.code[:100],
        reason=storable(refusal.detail)[0],
    )


# --- counting ---------------------------------------------------------------------------------


def _count_refused(record: Record, refusal: Refusal, counts: Counts) -> None:
    counts.add(record.primary, "read")
    counts.add(record.primary, "quarantined")
    counts.quarantined.append(
        {"key": record.key, "domain": record.primary, "code": refusal.code, "reason": refusal.detail}
    )


def _count(verdict: _Verdict, counts: Counts) -> None:
    record = verdict.record
    if verdict.whole is not None:
        _count_refused(record, verdict.whole, counts)
        return
    had = record.previous.parts if record.previous is not None else ()
    relevant = [d for d in record.todo if d in record.out.domains]
    if not relevant:  # the record has nothing for the domains asked for
        counts.add(record.primary, "read")
        counts.add(record.primary, "skipped")
    for domain in relevant:
        counts.add(domain, "read")
        if domain in verdict.rejected:
            counts.add(domain, "quarantined")
            code, detail = verdict.rejected[domain]
            counts.quarantined.append({"key": record.key, "domain": domain, "code": code, "reason": detail})
        else:
            counts.add(domain, "updated" if domain in had else "created")
