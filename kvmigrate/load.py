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
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from credits import services as credit_services

from . import transforms
from .codec import DecodeError, decode_value, parse_key
from .models import MigratedRecord, MigrationRun, QuarantinedRecord
from .report import Counts
from .transforms import FAMILIES, Reject, Transformed
from .transforms.base import may_hold_bad_text

logger = logging.getLogger(__name__)

ALL_DOMAINS = ("accounts", "credits", "billing", "gmail", "notifications")
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
    fp: str = ""
    prev: tuple | None = None  # (fingerprint, domains, parts) from the last run that moved it
    todo: tuple[str, ...] = ()  # domains to load now
    out: Transformed | None = None
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


def _dumps(value) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False, separators=(",", ":"))


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
        rec = Rec(key, raw, parsed.prefix, parsed.ident, parsed.user_id, wanted)
        if not wanted:
            counts.add(rec.primary, "read")
            counts.add(rec.primary, "skipped")
            continue
        recs.append(rec)
    return recs


def load_batch(items: Iterable[tuple[str, str]], ctx: Context) -> Counts:
    """Move one batch; returns its counts. The caller decides the transaction's outer scope."""
    counts = Counts()
    recs = classify(items, ctx, counts)
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
                rec.whole = ("db_error", f"PostgreSQL refused the record: {str(exc).strip()[:500]}")
                single = Counts()
                _count_refused(rec, single)
                _write_quarantine([rec], ctx)
                counts.merge(single)
    return counts


def _reset(rec: Rec) -> None:
    rec.fp, rec.prev, rec.todo, rec.out = "", None, (), None
    rec.parts, rec.rejected, rec.whole = [], {}, None


# --- the batch --------------------------------------------------------------------------------


def _process(recs: list[Rec], ctx: Context) -> Counts:
    counts = Counts()
    live = _skip_unchanged(recs, counts)
    live = _transform(live)
    _check_users(live)
    _claim_rows(live)
    moving = [r for r in live if r.whole is None and r.parts]
    _write_accounts(moving)
    _write_credits(moving)
    _write_subscriptions(moving)
    _write_tokens(moving)
    _write_flags(moving)
    done = [r for r in live if r.whole is None]
    _write_migrated(done, ctx)
    refused = [r for r in live if r.whole is not None or r.rejected]
    _write_quarantine(refused, ctx)
    _resolve_quarantine([r for r in done if not r.rejected])
    for rec in live:
        _count(rec, counts)
    return counts


def _skip_unchanged(recs: list[Rec], counts: Counts) -> list[Rec]:
    rows = MigratedRecord.objects.filter(key__in=[r.key for r in recs]).values_list(
        "key", "fingerprint", "domains", "parts"
    )
    prev = {key: (fp, tuple(domains), tuple(parts)) for key, fp, domains, parts in rows}
    live = []
    for rec in recs:
        rec.fp = fingerprint(rec.raw)
        rec.prev = prev.get(rec.key)
        same = rec.prev is not None and rec.prev[0] == rec.fp
        rec.todo = tuple(d for d in rec.wanted if not same or d not in rec.prev[1])
        if same:
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


def _transform(recs: list[Rec]) -> list[Rec]:
    for rec in recs:
        try:
            value = decode_value(rec.raw)
        except DecodeError as exc:
            rec.whole = ("bad_json", exc.reason)
            continue
        try:
            rec.out = transforms.transform(
                rec.key, rec.prefix, rec.ident, rec.user_id, value, check_text=may_hold_bad_text(rec.raw)
            )
        except Reject as exc:
            rec.whole = (exc.code, exc.detail)
            continue
        except Exception as exc:  # a bug must not stop the run: loud in the quarantine instead
            logger.exception("kvmigrate: transform failed on %r", rec.key)
            rec.whole = ("transform_error", f"{type(exc).__name__}: {exc}"[:500])
            continue
        rec.parts = [d for d in rec.out.domains if d in rec.todo]
    return recs


def _check_users(recs: list[Rec]) -> None:
    ids = sorted({r.out.user_id for r in recs if r.out is not None and r.whole is None})
    if not ids:
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM users WHERE id = ANY(%s)", [ids])
        known = {row[0] for row in cursor.fetchall()}
    for rec in recs:
        if rec.out is not None and rec.whole is None and rec.out.user_id not in known:
            rec.whole = (
                "unknown_user",
                f"user {rec.out.user_id} is not in the users table (import it first)",
            )


def _refuse_part(rec: Rec, domain: str, code: str, detail: str) -> None:
    rec.rejected[domain] = (code, detail)
    if domain in rec.parts:
        rec.parts.remove(domain)


def _claim_rows(recs: list[Rec]) -> None:
    """Decide, per target row, which record may write it (see PRECEDENCE and the docs)."""
    recs = [r for r in recs if r.whole is None and r.parts]
    _claim_firebase([r for r in recs if "accounts" in r.parts])
    for domain, table, app_rows_win in (
        ("credits", "user_credits", False),
        ("billing", "subscriptions", True),
        ("gmail", "gmail_tokens", True),
    ):
        claimants = [r for r in recs if domain in r.parts]
        if claimants:
            _claim_owned(claimants, domain, table, app_rows_win)
    billing = [r for r in recs if "billing" in r.parts and r.out.subscription.stripe_customer_id]
    if billing:
        _claim_customers(billing)


def _claim_owned(recs: list[Rec], domain: str, table: str, app_rows_win: bool) -> None:
    ids = sorted({r.out.user_id for r in recs})
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT user_id, metadata #>> '{{kv,key}}' FROM {table} WHERE user_id = ANY(%s)",  # noqa: S608
            [ids],
        )
        owners = dict(cursor.fetchall())
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


def _claim_firebase(recs: list[Rec]) -> None:
    if not recs:
        return
    uids = [r.out.firebase.uid for r in recs]
    ids = sorted({r.out.user_id for r in recs})
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, firebase_uid FROM users WHERE firebase_uid = ANY(%s) OR id = ANY(%s)", [uids, ids]
        )
        rows = cursor.fetchall()
    holder = {uid: user_id for user_id, uid in rows if uid is not None}
    current = {user_id: uid for user_id, uid in rows}
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


def _claim_customers(recs: list[Rec]) -> None:
    """A Stripe customer belongs to one user (a unique column)."""
    customers = sorted({r.out.subscription.stripe_customer_id for r in recs})
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT stripe_customer_id, user_id FROM subscriptions WHERE stripe_customer_id = ANY(%s)",
            [customers],
        )
        holder = dict(cursor.fetchall())
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
        credit_services.load_migrated_accounts(records=accounts)


_SUBSCRIPTIONS_SQL = """
    INSERT INTO subscriptions (user_id, stripe_customer_id, stripe_subscription_id, status, plan_type,
                               current_period_start, current_period_end, cancel_at_period_end, metadata,
                               created_at, updated_at)
    SELECT u, c, s, st, p, ps, pe, ca, m::jsonb, now(), now()
      FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[],
                  %s::timestamptz[], %s::boolean[], %s::text[]) AS x(u, c, s, st, p, ps, pe, ca, m)
    ON CONFLICT (user_id) DO UPDATE SET
        stripe_customer_id = EXCLUDED.stripe_customer_id,
        stripe_subscription_id = EXCLUDED.stripe_subscription_id, status = EXCLUDED.status,
        plan_type = EXCLUDED.plan_type, current_period_start = EXCLUDED.current_period_start,
        current_period_end = EXCLUDED.current_period_end,
        cancel_at_period_end = EXCLUDED.cancel_at_period_end, metadata = EXCLUDED.metadata,
        updated_at = now()
"""


def _write_subscriptions(recs: list[Rec]) -> None:
    subs = [r.out.subscription for r in recs if "billing" in r.parts]
    if not subs:
        return
    columns = [
        [s.user_id for s in subs],
        [s.stripe_customer_id for s in subs],
        [s.stripe_subscription_id for s in subs],
        [s.status for s in subs],
        [s.plan_type for s in subs],
        [s.current_period_start for s in subs],
        [s.current_period_end for s in subs],
        [s.cancel_at_period_end for s in subs],
        [_dumps(s.metadata) for s in subs],
    ]
    with connection.cursor() as cursor:
        cursor.execute(_SUBSCRIPTIONS_SQL, columns)
    _invalidate("subscriptions")


_TOKENS_SQL = """
    INSERT INTO gmail_tokens (user_id, access_token, refresh_token, expires_at, email, display_name,
                              scopes, status, metadata, created_at, updated_at)
    SELECT u, a, r, e, em, dn, ARRAY(SELECT jsonb_array_elements_text(sc::jsonb)), 'active', m::jsonb, c, up
      FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::timestamptz[], %s::text[], %s::text[], %s::text[],
                  %s::text[], %s::timestamptz[], %s::timestamptz[]) AS x(u, a, r, e, em, dn, sc, m, c, up)
    ON CONFLICT (user_id) DO UPDATE SET
        access_token = EXCLUDED.access_token, refresh_token = EXCLUDED.refresh_token,
        expires_at = EXCLUDED.expires_at, email = EXCLUDED.email, display_name = EXCLUDED.display_name,
        scopes = EXCLUDED.scopes, status = 'active', metadata = EXCLUDED.metadata,
        created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at
"""


def token_metadata(metadata: dict) -> dict:
    """Unknown fields of a token record may be secrets too: they are stored encrypted."""
    from gmail import crypto

    kv = dict(metadata.get("kv", {}))
    if "extra" in kv:
        kv["extra_encrypted"] = crypto.encrypt(_dumps(kv.pop("extra")))
    return {**metadata, "kv": kv}


def _write_tokens(recs: list[Rec]) -> None:
    from gmail import crypto

    tokens = [r.out.token for r in recs if "gmail" in r.parts]
    if not tokens:
        return
    now = timezone.now()

    def enc(value: str | None) -> str | None:
        return None if value is None else crypto.encrypt(value)

    created = [t.created_at or t.updated_at or now for t in tokens]
    columns = [
        [t.user_id for t in tokens],
        [enc(t.access_token) for t in tokens],
        [enc(t.refresh_token) for t in tokens],
        [t.expires_at for t in tokens],
        [t.email for t in tokens],
        [t.display_name for t in tokens],
        [_dumps(t.scopes) for t in tokens],
        [_dumps(token_metadata(t.metadata)) for t in tokens],
        created,
        [t.updated_at or c for t, c in zip(tokens, created, strict=True)],
    ]
    with connection.cursor() as cursor:
        cursor.execute(_TOKENS_SQL, columns)


_FLAGS_SQL = """
    INSERT INTO user_notifications (user_id, kind, notification_id, shown_at, metadata)
    SELECT u, k, n, s, m::jsonb
      FROM unnest(%s::bigint[], %s::text[], %s::integer[], %s::timestamptz[], %s::text[]) AS x(u, k, n, s, m)
    ON CONFLICT (user_id, kind, notification_id) DO NOTHING
"""


def _write_flags(recs: list[Rec]) -> None:
    now = timezone.now()
    columns: tuple[list, ...] = ([], [], [], [], [])
    for rec in recs:
        if "notifications" not in rec.parts:
            continue
        meta = {"source": "kv", "key": rec.key}
        if rec.out.flags_extra:
            meta["extra"] = rec.out.flags_extra
        meta_json = _dumps(meta)
        for flag in rec.out.flags:
            for col, value in zip(
                columns,
                (rec.out.user_id, flag.kind, flag.notification_id, rec.out.flags_at or now, meta_json),
                strict=True,
            ):
                col.append(value)
    if columns[0]:
        with connection.cursor() as cursor:
            cursor.execute(_FLAGS_SQL, list(columns))
        _invalidate("user_notifications")


_MIGRATED_SQL = """
    INSERT INTO kvmigrate_records (key, family, fingerprint, domains, parts, user_id, run_id, updated_at)
    SELECT k, f, fp, string_to_array(d, ','), string_to_array(p, ','), u, %s, now()
      FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[])
           AS x(k, f, fp, d, p, u)
    ON CONFLICT (key) DO UPDATE SET
        family = EXCLUDED.family, fingerprint = EXCLUDED.fingerprint, domains = EXCLUDED.domains,
        parts = EXCLUDED.parts, user_id = EXCLUDED.user_id, run_id = EXCLUDED.run_id, updated_at = now()
"""


def _write_migrated(recs: list[Rec], ctx: Context) -> None:
    rows = []
    for rec in recs:
        handled = [d for d in rec.todo if d not in rec.rejected]
        if not handled:
            continue
        moved = [d for d in rec.out.domains if d in handled]
        if rec.prev is not None and rec.prev[0] == rec.fp:  # same value: add to what was handled
            handled = sorted(set(handled) | set(rec.prev[1]))
            moved = sorted(set(moved) | set(rec.prev[2]))
        rows.append((rec.key, rec.prefix, rec.fp, ",".join(handled), ",".join(moved), rec.out.user_id))
    if not rows:
        return
    with connection.cursor() as cursor:
        cursor.execute(_MIGRATED_SQL, [ctx.run_id, *(list(col) for col in zip(*rows, strict=True))])


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
        rows.append(
            QuarantinedRecord(
                run_id=ctx.run_id,
                key=key,
                raw_value=raw,
                escaped=key_escaped or raw_escaped,
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
        QuarantinedRecord.objects.filter(key__in=keys, resolved_at__isnull=True).update(
            resolved_at=timezone.now()
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
