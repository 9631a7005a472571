"""Load: one batch of (key, raw value) pairs -> PostgreSQL, in one transaction, idempotently.

Per batch, whatever its size: one query for the fingerprints of its keys (an unchanged record is
counted and skipped before any decoding), one for the users its records belong to, one per
target table for the rows already there (who owns them), then one bulk statement per table.
A record that cannot move is quarantined (key, raw value, reason) in the same transaction, and
the run goes on. If the database still refuses the batch (a constraint nobody foresaw), the batch
is replayed one record at a time, each in its own savepoint, and the records it refuses are
quarantined with the database's message: one bad record never holds back the others.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from credits import services as credit_services
from fivedocks import changes
from fivedocks.domains import DOMAINS
from gmail import crypto

from . import transforms
from .codec import DecodeError, decode_value, parse_key
from .models import MigratedRecord, MigrationRun, QuarantinedRecord
from .report import Counts
from .transforms import FAMILIES, Reject, Transformed
from .transforms.base import may_hold_bad_text

logger = logging.getLogger(__name__)

ALL_DOMAINS = DOMAINS
# Which layout wins when both describe the same row: the platform's own.
PRECEDENCE = {"real": 2, "plan": 1}


@dataclass
class Context:
    only: frozenset[str] = frozenset(ALL_DOMAINS)
    run: MigrationRun | None = None

    @property
    def run_id(self) -> int | None:
        return self.run.pk if self.run is not None else None


@dataclass
class Rec:
    """One record of a known prefix on its way through the batch."""

    key: str
    raw: str
    prefix: str
    ident: str
    user_id: int | None
    wanted: tuple[str, ...]  # its family's domains that this run loads
    # prepared (no database needed): the value's fingerprint, and its rows or why it has none
    fp: str = ""
    out: Transformed | None = None
    bad: tuple[str, str] | None = None  # (code, detail) from decoding or the transform
    sealed: dict | None = None  # what the writes need, serialized / encrypted ahead of the batch
    # loaded (against the database)
    looked_up: bool = False
    prev: tuple | None = None  # (fingerprint, domains, parts) from the last run that moved it
    todo: tuple[str, ...] = ()  # domains to load now
    parts: list[str] = field(default_factory=list)  # domains with rows to write now
    rejected: dict[str, tuple[str, str]] = field(default_factory=dict)  # domain -> (code, detail)
    whole: tuple[str, str] | None = None  # the whole record is refused: (code, detail)

    @property
    def primary(self) -> str:
        """The domain a record refused as a whole, or skipped, is counted under."""
        return self.wanted[0] if self.wanted else FAMILIES[self.prefix][0]

    @property
    def layout(self) -> str:
        return transforms.LAYOUTS.get(self.prefix, "plan")


def fingerprint(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


_ENCODER = DjangoJSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _dumps(value) -> str:
    """Compact JSON (one encoder for every call: building one per call costs more than encoding)."""
    return value if isinstance(value, str) else _ENCODER.encode(value)


def classify(items: Iterable[tuple[str, str]], ctx: Context, counts: Counts) -> list[Rec]:
    """Records of known prefixes this run wants; other keys are counted as skipped."""
    recs = []
    for key, raw in items:
        parsed = parse_key(key)
        if parsed is None:
            counts.add("other", "read")
            counts.add("other", "skipped")
            continue
        family_domains = FAMILIES[parsed.prefix]
        wanted = tuple(d for d in family_domains if d in ctx.only)
        bad_key = ("\x00" in key) or (not key.isascii() and not _storable_key(key))
        if bad_key:  # PostgreSQL cannot hold this key: it goes on, escaped, to the quarantine
            key = storable(key)[0]
        rec = Rec(key, raw, parsed.prefix, parsed.ident, parsed.user_id, wanted)
        if bad_key:
            rec.bad = ("bad_key", "the key holds a NUL character or a lone surrogate (shown escaped)")
        if not wanted:
            counts.add(rec.primary, "read")
            counts.add(rec.primary, "skipped")
            continue
        recs.append(rec)
    return recs


@dataclass
class Prepared:
    """A batch made ready for loading: records classified, fingerprinted and (maybe) transformed."""

    recs: list[Rec]
    counts: Counts  # keys of other prefixes, records of domains not asked for


def prepare_batch(items: Iterable[tuple[str, str]], ctx: Context, *, look_up: bool = False) -> Prepared:
    """The work a batch needs before its transaction.

    With `look_up`, the fingerprints are fetched (on this thread's own connection) and the
    records that changed are decoded, transformed and serialized: `services` does this for
    batch n+1 in a second thread while batch n is written. Without, that happens in `load_prepared`.
    """
    counts = Counts()
    recs = classify(items, ctx, counts)
    for rec in recs:
        rec.fp = fingerprint(rec.raw)
    if look_up and recs:
        _look_up(recs)
        for rec in recs:
            if rec.todo:
                _transform(rec)
                _seal(rec)
    return Prepared(recs, counts)


def load_prepared(prepared: Prepared, ctx: Context) -> Counts:
    """Move one prepared batch in one transaction (a savepoint when the caller has one open).

    Exempt from the write freeze: the runbook's last delta run moves the store while frozen.
    """
    with changes.freeze_exempt():
        return _load_prepared(prepared, ctx)


def _load_prepared(prepared: Prepared, ctx: Context) -> Counts:
    counts = prepared.counts
    recs = prepared.recs
    if not recs:
        return counts
    try:
        with transaction.atomic():
            counts.merge(_process(recs, ctx))
        return counts
    except DatabaseError as exc:
        logger.warning("kvmigrate: a batch was refused (%s); replaying it one record at a time", exc)
    with transaction.atomic():
        for rec in recs:
            _reset(rec)
            try:
                with transaction.atomic():
                    counts.merge(_process([rec], ctx))
            except DatabaseError as exc:
                _reset(rec)
                # PostgreSQL's message may quote a value: never for a record that carries tokens.
                shown = type(exc).__name__ if holds_secrets(rec.prefix) else str(exc).strip()[:500]
                rec.whole = ("db_error", f"PostgreSQL refused the record: {shown}")
                single = Counts()
                _count_refused(rec, single)
                _write_quarantine([rec], ctx)
                counts.merge(single)
    return counts


def _reset(rec: Rec) -> None:
    """Forget what the failed transaction decided (what was prepared stays)."""
    rec.looked_up, rec.prev, rec.todo = False, None, ()
    rec.parts, rec.rejected, rec.whole = [], {}, None


# --- the batch --------------------------------------------------------------------------------


def _process(recs: list[Rec], ctx: Context) -> Counts:
    counts = Counts()
    stale = [r for r in recs if not r.looked_up]
    if stale:
        _look_up(stale)
    live = _count_unchanged(recs, counts)
    for rec in live:
        if rec.out is None and rec.bad is None:
            _transform(rec)
        rec.whole = rec.bad
        rec.parts = [d for d in rec.out.domains if d in rec.todo] if rec.out is not None else []
    state = _fetch_state(live)
    _check_users(live, state)
    _claim_rows(live, state)
    moving = [r for r in live if r.whole is None and r.parts]
    _write_accounts(moving)
    _write_credits(moving)
    _write_subscriptions(moving, set(state.owners["billing"]))
    _write_tokens(moving, set(state.owners["gmail"]))
    _write_flags(moving, state.flags)
    done = [r for r in live if r.whole is None]
    _write_migrated(done, ctx)
    refused = [r for r in live if r.whole is not None or r.rejected]
    _write_quarantine(refused, ctx)
    _resolve_quarantine([r for r in done if not r.rejected and r.key in state.quarantined])
    for rec in live:
        _count(rec, counts)
    return counts


def _look_up(recs: list[Rec]) -> None:
    """The fingerprint each key was last moved with, and so what is left to do for it."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT key, fingerprint, domains, parts FROM kvmigrate_records WHERE key = ANY(%s)",
            [[r.key for r in recs]],
        )
        prev = {key: (fp, tuple(domains), tuple(parts)) for key, fp, domains, parts in cursor.fetchall()}
    for rec in recs:
        rec.looked_up = True
        rec.prev = prev.get(rec.key)
        same = rec.prev is not None and rec.prev[0] == rec.fp
        rec.todo = tuple(d for d in rec.wanted if not same or d not in rec.prev[1])


def _count_unchanged(recs: list[Rec], counts: Counts) -> list[Rec]:
    """Counts what is unchanged; returns the records with something left to do."""
    live = []
    for rec in recs:
        if rec.prev is not None and rec.prev[0] == rec.fp:
            unchanged = [d for d in rec.wanted if d in rec.prev[1] and d in rec.prev[2]]
            for domain in unchanged:
                counts.add(domain, "read")
                counts.add(domain, "unchanged")
            if not unchanged and not rec.todo:  # it has nothing for the domains asked for
                counts.add(rec.primary, "read")
                counts.add(rec.primary, "skipped")
        if rec.todo:
            live.append(rec)
    return live


def _storable_key(key: str) -> bool:
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _transform(rec: Rec) -> None:
    if rec.bad is not None:  # refused before decoding (a key PostgreSQL cannot hold)
        return
    try:
        value = decode_value(rec.raw)
    except DecodeError as exc:
        rec.bad = ("bad_json", exc.reason)
        return
    try:
        rec.out = transforms.transform(
            rec.key, rec.prefix, rec.ident, rec.user_id, value, check_text=may_hold_bad_text(rec.raw)
        )
    except Reject as exc:
        rec.bad = (exc.code, exc.detail)
    except Exception as exc:  # a bug must not stop the run: loud in the quarantine instead
        logger.exception("kvmigrate: transform failed on %r", rec.key)
        shown = type(exc).__name__ if holds_secrets(rec.prefix) else f"{type(exc).__name__}: {exc}"
        rec.bad = ("transform_error", shown[:500])


def _seal(rec: Rec) -> None:
    """Serialize (and encrypt) ahead of the transaction what the writes will need."""
    out = rec.out
    if out is None:
        return
    if out.account is not None:
        out.account.metadata = _dumps(out.account.metadata)
        for row in out.account.history:
            row.metadata = _dumps(row.metadata)
    if out.subscription is not None:
        out.subscription.metadata = _dumps(out.subscription.metadata)
    if out.token is not None:
        rec.sealed = _sealed_token(out.token)


@dataclass
class State:
    """What PostgreSQL holds for one batch's users, fetched in one round trip."""

    users: dict[int, str | None] = field(default_factory=dict)  # id -> firebase_uid
    uid_holders: dict[str, int] = field(default_factory=dict)  # firebase_uid -> id
    owners: dict[str, dict[int, str | None]] = field(default_factory=dict)  # domain -> user -> owner key
    customers: dict[str, int] = field(default_factory=dict)  # stripe customer -> user
    flags: set[tuple[int, str, int]] = field(default_factory=set)
    quarantined: set[str] = field(default_factory=set)  # keys with unresolved quarantine rows


_STATE_SQL = """
    SELECT 'user', id, firebase_uid FROM users WHERE id = ANY(%(ids)s)
    UNION ALL SELECT 'uid', id, firebase_uid FROM users WHERE firebase_uid = ANY(%(uids)s)
    UNION ALL SELECT 'credits', user_id, metadata #>> '{kv,key}' FROM user_credits
               WHERE user_id = ANY(%(ids)s)
    UNION ALL SELECT 'billing', user_id, metadata #>> '{kv,key}' FROM subscriptions
               WHERE user_id = ANY(%(ids)s)
    UNION ALL SELECT 'gmail', user_id, metadata #>> '{kv,key}' FROM gmail_tokens
               WHERE user_id = ANY(%(ids)s)
    UNION ALL SELECT 'customer', user_id, stripe_customer_id FROM subscriptions
               WHERE stripe_customer_id = ANY(%(customers)s)
    UNION ALL SELECT 'flag', user_id, kind || ':' || notification_id FROM user_notifications
               WHERE user_id = ANY(%(flag_ids)s)
    UNION ALL SELECT 'quarantined', NULL, key FROM kvmigrate_quarantine
               WHERE key = ANY(%(keys)s) AND resolved_at IS NULL
"""


def _fetch_state(recs: list[Rec]) -> State:
    state = State(owners={"credits": {}, "billing": {}, "gmail": {}})
    moving = [r for r in recs if r.out is not None and r.whole is None]
    params = {
        "ids": sorted({r.out.user_id for r in moving}),
        "uids": [r.out.firebase.uid for r in moving if r.out.firebase is not None],
        "customers": sorted(
            {r.out.subscription.stripe_customer_id for r in moving if r.out.subscription is not None} - {None}
        ),
        "flag_ids": sorted({r.out.user_id for r in moving if r.out.flags}),
        "keys": [r.key for r in recs],
    }
    with connection.cursor() as cursor:
        cursor.execute(_STATE_SQL, params)
        for tag, number, text in cursor.fetchall():
            if tag == "user":
                state.users[number] = text
            elif tag == "uid":
                state.uid_holders[text] = number
            elif tag == "customer":
                state.customers[text] = number
            elif tag == "flag":
                kind, _, flag_id = text.partition(":")
                state.flags.add((number, kind, int(flag_id)))
            elif tag == "quarantined":
                state.quarantined.add(text)
            else:
                state.owners[tag][number] = text
    return state


def _check_users(recs: list[Rec], state: State) -> None:
    for rec in recs:
        if rec.out is not None and rec.whole is None and rec.out.user_id not in state.users:
            rec.whole = (
                "unknown_user",
                f"user {rec.out.user_id} is not in the users table (import it first)",
            )


def _refuse_part(rec: Rec, domain: str, code: str, detail: str) -> None:
    rec.rejected[domain] = (code, detail)
    if domain in rec.parts:
        rec.parts.remove(domain)


def _claim_rows(recs: list[Rec], state: State) -> None:
    """Decide, per target row, which record may write it (see PRECEDENCE and the docs)."""
    recs = [r for r in recs if r.whole is None and r.parts]
    _claim_firebase([r for r in recs if "accounts" in r.parts], state)
    for domain, app_rows_win in (("credits", False), ("billing", True), ("gmail", True)):
        claimants = [r for r in recs if domain in r.parts]
        if claimants:
            _claim_owned(claimants, domain, state.owners[domain], app_rows_win)
    billing = [r for r in recs if "billing" in r.parts and r.out.subscription.stripe_customer_id]
    if billing:
        _claim_customers(billing, state)


def _claim_owned(recs: list[Rec], domain: str, owners: dict[int, str | None], app_rows_win: bool) -> None:
    # In the batch: the record of the highest precedence per user claims the row.
    best: dict[int, Rec] = {}
    for rec in recs:
        other = best.get(rec.out.user_id)
        if other is None or PRECEDENCE[rec.layout] > PRECEDENCE[other.layout]:
            best[rec.out.user_id] = rec
    for rec in recs:
        user_id = rec.out.user_id
        winner = best[user_id]
        if winner is not rec:
            _refuse_part(rec, domain, "superseded", f"{domain}: {winner.key} describes the same row and wins")
            continue
        if user_id not in owners:
            continue
        owner = owners[user_id]
        if owner == rec.key:
            continue
        if owner is None:
            if app_rows_win:
                detail = f"{domain}: the application already holds this user's row (newer than the store)"
                _refuse_part(rec, domain, "superseded", detail)
            continue
        owner_prefix = owner.partition(":")[0]
        if PRECEDENCE[transforms.LAYOUTS.get(owner_prefix, "plan")] > PRECEDENCE[rec.layout]:
            _refuse_part(rec, domain, "superseded", f"{domain}: already moved from {owner}, which wins")
        else:  # this record takes the row over: the other key must be looked at again next run
            MigratedRecord.objects.filter(key=owner).delete()


def _claim_firebase(recs: list[Rec], state: State) -> None:
    holder, current = state.uid_holders, state.users
    taken: dict[int, str] = {}
    for rec in sorted(recs, key=lambda r: r.key):
        uid, user_id = rec.out.firebase.uid, rec.out.user_id
        if holder.get(uid, user_id) != user_id:
            detail = f"Firebase uid already belongs to user {holder[uid]}"
        elif current.get(user_id) not in (None, uid):
            detail = f"user {user_id} already has another Firebase uid ({current[user_id]})"
        elif taken.get(user_id, uid) != uid:
            detail = f"user {user_id} gets Firebase uid {taken[user_id]} from another key of this batch"
        else:
            taken[user_id] = uid
            continue
        _refuse_part(rec, "accounts", "conflict", detail)


def _claim_customers(recs: list[Rec], state: State) -> None:
    """A Stripe customer belongs to one user (a unique column)."""
    holder = dict(state.customers)
    for rec in sorted(recs, key=lambda r: r.key):
        customer, user_id = rec.out.subscription.stripe_customer_id, rec.out.user_id
        if holder.setdefault(customer, user_id) != user_id:
            _refuse_part(
                rec, "billing", "conflict", f"Stripe customer {customer} belongs to user {holder[customer]}"
            )


# --- writes -----------------------------------------------------------------------------------


def _write_accounts(recs: list[Rec]) -> None:
    rows = [(r.out.user_id, r.out.firebase.uid) for r in recs if "accounts" in r.parts]
    if not rows:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE users SET firebase_uid = v.uid
                 FROM unnest(%s::bigint[], %s::text[]) AS v(id, uid)
                WHERE users.id = v.id AND users.firebase_uid IS DISTINCT FROM v.uid""",
            [[u for u, _ in rows], [uid for _, uid in rows]],
        )
    _invalidate("users")


def _write_credits(recs: list[Rec]) -> None:
    accounts = []
    for rec in recs:
        if "credits" not in rec.parts:
            continue
        account = rec.out.account
        account.migration_key = f"kv-migration:{rec.key}:{rec.fp[:16]}"
        account.migration_metadata = {"source": "kv", "key": rec.key, "fingerprint": rec.fp}
        accounts.append(account)
    if accounts:
        _forget_rendered(accounts)
        credit_services.load_migrated_accounts(records=accounts)


def rendered_keys(user_ids: list[int], keys: list[str]) -> set[tuple[int, str]]:
    """Which of these (user, `kv:` idempotency key) are entries fivedocks rendered itself."""
    if not user_ids or not keys:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT user_id, digest FROM kvmigrate_rendered_entries
                WHERE user_id = ANY(%s) AND digest = ANY(%s)""",
            [user_ids, [key.removeprefix("kv:") for key in keys]],
        )
        return {(user_id, f"kv:{digest}") for user_id, digest in cursor.fetchall()}


def _forget_rendered(accounts: list) -> None:
    """Leave out of each history the entries fivedocks rendered itself (RenderedEntry).

    They stand for ledger rows the app wrote: after a rollback, only what the old code added is
    news. One query for the batch.
    """
    known = rendered_keys(
        [a.user_id for a in accounts], [e.idempotency_key for a in accounts for e in a.history]
    )
    if known:
        for account in accounts:
            user_id = account.user_id
            account.history = [e for e in account.history if (user_id, e.idempotency_key) not in known]


_SUBSCRIPTION_COLUMNS = (
    "user_id", "stripe_customer_id", "stripe_subscription_id", "status", "plan_type", "current_period_start",
    "current_period_end", "cancel_at_period_end", "metadata", "created_at", "updated_at",
)  # fmt: skip


def _write_subscriptions(recs: list[Rec], existing: set[int]) -> None:
    now = timezone.now()
    rows = [
        (s.user_id, s.stripe_customer_id, s.stripe_subscription_id, s.status, s.plan_type,
         s.current_period_start, s.current_period_end, s.cancel_at_period_end, _dumps(s.metadata), now, now)
        for s in (r.out.subscription for r in recs if "billing" in r.parts)
    ]  # fmt: skip
    _upsert("subscriptions", _SUBSCRIPTION_COLUMNS, rows, existing, keep=("created_at",))
    if rows:
        _invalidate("subscriptions")


def token_metadata(metadata: dict) -> dict:
    """Unknown fields of a token record may be secrets too: they are stored encrypted."""
    kv = dict(metadata.get("kv", {}))
    if "extra" in kv:
        kv["extra_encrypted"] = crypto.encrypt(_dumps(kv.pop("extra")))
    return {**metadata, "kv": kv}


_TOKEN_COLUMNS = (
    "user_id", "access_token", "refresh_token", "expires_at", "email", "display_name", "scopes", "status",
    "metadata", "created_at", "updated_at",
)  # fmt: skip


def _sealed_token(token) -> dict:
    return {
        "access_token": None if token.access_token is None else crypto.encrypt(token.access_token),
        "refresh_token": None if token.refresh_token is None else crypto.encrypt(token.refresh_token),
        "scopes": array_literal(token.scopes),
        "metadata": _dumps(token_metadata(token.metadata)),
    }


def _write_tokens(recs: list[Rec], existing: set[int]) -> None:
    now = timezone.now()
    rows = []
    for rec in recs:
        if "gmail" not in rec.parts:
            continue
        token = rec.out.token
        sealed = rec.sealed or _sealed_token(token)
        created = token.created_at or token.updated_at or now
        rows.append(
            (
                token.user_id,
                sealed["access_token"],
                sealed["refresh_token"],
                token.expires_at,
                token.email,
                token.display_name,
                sealed["scopes"],
                "active",
                sealed["metadata"],
                created,
                token.updated_at or created,
            )
        )
    _upsert("gmail_tokens", _TOKEN_COLUMNS, rows, existing)


def _write_flags(recs: list[Rec], have: set[tuple[int, str, int]]) -> None:
    """Flags are a union: those the user already has stay, the new ones are copied in."""
    now = timezone.now()
    wanted: dict[tuple[int, str, int], tuple] = {}
    for rec in recs:
        if "notifications" not in rec.parts:
            continue
        meta = {"source": "kv", "key": rec.key}
        if rec.out.flags_extra:
            meta["extra"] = rec.out.flags_extra
        meta_json = _dumps(meta)
        shown_at = rec.out.flags_at or now
        for flag in rec.out.flags:
            wanted.setdefault((rec.out.user_id, flag.kind, flag.notification_id), (shown_at, meta_json))
    if not wanted:
        return
    rows = [(*flag, *rest) for flag, rest in wanted.items() if flag not in have]
    copy_rows("user_notifications", ("user_id", "kind", "notification_id", "shown_at", "metadata"), rows)
    if rows:
        _invalidate("user_notifications")


_MIGRATED_COLUMNS = ("key", "family", "fingerprint", "domains", "parts", "user_id", "run_id", "updated_at")


def _write_migrated(recs: list[Rec], ctx: Context) -> None:
    now = timezone.now()
    rows, existing = [], set()
    for rec in recs:
        handled = [d for d in rec.todo if d not in rec.rejected]
        if not handled:
            continue
        moved = [d for d in rec.out.domains if d in handled]
        if rec.prev is not None and rec.prev[0] == rec.fp:  # same value: add to what was handled
            handled = sorted(set(handled) | set(rec.prev[1]))
            moved = sorted(set(moved) | set(rec.prev[2]))
        if rec.prev is not None:
            existing.add(rec.key)
        rows.append(
            (
                rec.key,
                rec.prefix,
                rec.fp,
                array_literal(handled),
                array_literal(moved),
                rec.out.user_id,
                ctx.run_id,
                now,
            )
        )
    _upsert("kvmigrate_records", _MIGRATED_COLUMNS, rows, existing)


# --- bulk helpers -----------------------------------------------------------------------------


def array_literal(items: list[str]) -> str:
    """A text[] literal for COPY (psycopg's list dumper escapes element by element in Python)."""
    quoted = ('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"' for item in items)
    return "{" + ",".join(quoted) + "}"


def copy_rows(table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """COPY rows in (text format: psycopg's C dumpers, no SQL to build or parse per row)."""
    if not rows:
        return
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    # The raw psycopg cursor raises psycopg's errors: wrapped, they are Django's DatabaseError.
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.cursor.copy(statement) as copy,
    ):
        for row in rows:
            copy.write_row(row)


def _upsert(
    table: str, columns: tuple[str, ...], rows: list[tuple], existing: set, keep: tuple[str, ...] = ()
) -> None:
    """New rows (conflict key, the first column, not in `existing`) are copied in; the others
    go through a temporary table and one `INSERT ... ON CONFLICT DO UPDATE` (`keep`: untouched).
    """
    if not rows:
        return
    fresh = [row for row in rows if row[0] not in existing]
    again = [row for row in rows if row[0] in existing]
    copy_rows(table, columns, fresh)
    if not again:
        return
    stage = f"kvmigrate_stage_{table}"
    cols = ", ".join(columns)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns[1:] if c not in keep)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} AS SELECT {cols} FROM {table} WITH NO DATA")  # noqa: S608
        cursor.execute(f"TRUNCATE {stage}")
    copy_rows(stage, columns, again)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} "  # noqa: S608 - names are ours
            f"ON CONFLICT ({columns[0]}) DO UPDATE SET {updates}"
        )


def storable(text: str) -> tuple[str, bool]:
    """`text` as PostgreSQL can store it (NUL and lone surrogates backslash-escaped), and whether it was."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        escaped = True
    else:
        escaped = False
    if "\x00" in text:
        return text.replace("\x00", "\\x00"), True
    return text, escaped


def holds_secrets(prefix: str) -> bool:
    """Records of this family carry OAuth tokens: stored encrypted even when quarantined."""
    return "gmail" in FAMILIES.get(prefix, ())


def _write_quarantine(recs: list[Rec], ctx: Context) -> None:
    rows = []
    now = timezone.now()
    for rec in recs:
        if rec.whole is not None:
            code, detail = rec.whole
        else:
            code = next(iter(rec.rejected.values()))[0]
            detail = "; ".join(d for _, d in rec.rejected.values())
        key, key_escaped = storable(rec.key)
        raw, raw_escaped = storable(rec.raw)
        secret = holds_secrets(rec.prefix)
        rows.append(
            QuarantinedRecord(
                run_id=ctx.run_id,
                key=key,
                raw_value=crypto.encrypt(raw) if secret else raw,
                raw_encrypted=secret,
                escaped=key_escaped or raw_escaped or code == "bad_key",  # bad keys: escaped in classify
                fingerprint=rec.fp or fingerprint(rec.raw),
                reason_code=code[:100],
                reason=storable(detail)[0],
                created_at=now,
            )
        )
    if rows:
        QuarantinedRecord.objects.bulk_create(rows, ignore_conflicts=True)


def _resolve_quarantine(recs: list[Rec]) -> None:
    keys = [r.key for r in recs]
    if keys:
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE kvmigrate_quarantine SET resolved_at = now() "
                "WHERE key = ANY(%s) AND resolved_at IS NULL",
                [keys],
            )


def _invalidate(table: str) -> None:
    from cachalot.api import invalidate

    transaction.on_commit(lambda: invalidate(table))


# --- counting ---------------------------------------------------------------------------------


def _count_refused(rec: Rec, counts: Counts) -> None:
    counts.add(rec.primary, "read")
    counts.add(rec.primary, "quarantined")
    counts.quarantined.append(
        {"key": rec.key, "domain": rec.primary, "code": rec.whole[0], "reason": rec.whole[1]}
    )


def _count(rec: Rec, counts: Counts) -> None:
    if rec.whole is not None:
        _count_refused(rec, counts)
        return
    had = rec.prev[2] if rec.prev is not None else ()
    relevant = [d for d in rec.todo if d in rec.out.domains]
    if not relevant:  # the record has nothing for the domains asked for
        counts.add(rec.primary, "read")
        counts.add(rec.primary, "skipped")
    for domain in relevant:
        counts.add(domain, "read")
        if domain in rec.rejected:
            counts.add(domain, "quarantined")
            code, detail = rec.rejected[domain]
            counts.quarantined.append({"key": rec.key, "domain": domain, "code": code, "reason": detail})
        else:
            counts.add(domain, "updated" if domain in had else "created")
