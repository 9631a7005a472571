"""Import the platform's users (ids kept) before their KV records: `--users-from URL|PATH`.

Sources: the platform's PostgreSQL (`postgres://...`: the table and its columns are options,
read with a server-side cursor in id order), a CSV export with a header, or JSON Lines (one
object per line). Every source yields the same four values: id, email, username, created_at.
A second import updates what changed (email, username, created_at) and never duplicates; the
id sequence is then moved past the largest id so users created later never collide.

Emails are stored lower-cased (as the app's own sign-up does). A row that cannot be imported
(no usable id, no email, an email another user already has) is quarantined as `users:{id}`
with its values and the reason, like a bad KV record.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from .load import copy_rows
from .models import QuarantinedRecord
from .report import Counts
from .sources import SourceError, mask_url
from .transforms.base import Reject, parse_int, parse_ts

DEFAULT_TABLE = "users"
DEFAULT_COLUMNS = ("id", "email", "username", "created_at")
EMAIL_MAX = 254
USERNAME_MAX = 150
# An unusable password (Django's "!" prefix): imported users sign in through Firebase.
UNUSABLE_PASSWORD = "!kvmigrate-imported"


@dataclass(slots=True)
class UserRow:
    id: int
    email: str
    username: str
    created_at: datetime | None


@dataclass(slots=True)
class BadRow:
    key: str
    raw: str
    code: str
    reason: str


def is_database_url(spec: str) -> bool:
    return spec.startswith(("postgres://", "postgresql://"))


def describe(spec: str) -> str:
    return mask_url(spec) if is_database_url(spec) else spec


def iter_batches(
    spec: str, *, table: str = DEFAULT_TABLE, columns=DEFAULT_COLUMNS, batch_size: int = 1000
) -> Iterator[list[dict[str, Any]]]:
    """Raw rows ({"id", "email", "username", "created_at"}) in batches, streaming."""
    if len(columns) != 4:
        raise SourceError("--users-columns takes four names: id,email,username,created_at")
    if is_database_url(spec):
        yield from _from_database(spec, table, columns, batch_size)
        return
    path = Path(spec.removeprefix("file://"))
    if not path.is_file():
        raise SourceError(f"users export {spec} does not exist or is not a file")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        head = fh.read(4096)
        fh.seek(0)
        is_jsonl = path.suffix.lower() in (".jsonl", ".ndjson", ".json") or head.lstrip().startswith("{")
        rows = _from_jsonl(fh, columns) if is_jsonl else _from_csv(fh, columns, spec)
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch


def _rename(row: dict, columns) -> dict[str, Any]:
    return {name: row.get(column) for name, column in zip(DEFAULT_COLUMNS, columns, strict=True)}


def _from_csv(fh: io.TextIOBase, columns, spec: str) -> Iterator[dict[str, Any]]:
    reader = csv.DictReader(fh)
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise SourceError(f"users export {spec}: the CSV header has no column {', '.join(missing)}")
    for row in reader:
        yield _rename(row, columns)


def _from_jsonl(fh: io.TextIOBase, columns) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield {"id": f"line {number}", "_error": f"not JSON: {exc.msg}", "_raw": line.rstrip("\n")}
            continue
        if not isinstance(row, dict):
            yield {"id": f"line {number}", "_error": "not a JSON object", "_raw": line.rstrip("\n")}
            continue
        yield _rename(row, columns)


def _from_database(url: str, table: str, columns, batch_size: int) -> Iterator[list[dict[str, Any]]]:
    import psycopg
    from psycopg import sql

    try:
        conn = psycopg.connect(url, connect_timeout=10)
    except psycopg.Error as exc:
        raise SourceError(f"cannot connect to {mask_url(url)}: {_first_line(exc)}") from None
    query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        sql.Identifier(*table.split(".")),
        sql.Identifier(columns[0]),
    )
    try:
        conn.read_only = True
        with conn.transaction(), conn.cursor(name="kvmigrate_users") as cursor:
            cursor.itersize = batch_size
            try:
                cursor.execute(query)
            except psycopg.Error as exc:
                raise SourceError(f"cannot read users from {mask_url(url)}: {_first_line(exc)}") from None
            while rows := cursor.fetchmany(batch_size):
                yield [dict(zip(DEFAULT_COLUMNS, row, strict=True)) for row in rows]
    finally:
        conn.close()


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or ["error"])[0]


def _shown(raw: dict[str, Any]) -> str:
    return json.dumps(raw, default=str, ensure_ascii=False)


def clean(raw: dict[str, Any]) -> UserRow | BadRow:
    """One raw row -> a user to import, or the reason it cannot be."""
    if "_error" in raw:
        return BadRow(f"users:{raw['id']}", raw["_raw"], "bad_json", raw["_error"])
    key = f"users:{raw.get('id')}"
    try:
        user_id = parse_int(raw.get("id"), "id", lo=1)
        email = raw.get("email")
        if not isinstance(email, str) or not email.strip():
            raise Reject("missing:email", "the user has no email address")
        email = email.strip().lower()
        if len(email) > EMAIL_MAX or "@" not in email:
            raise Reject("bad_value:email", f"{email[:60]!r} is not an email address that fits")
        username = raw.get("username") or ""
        if not isinstance(username, str):
            username = str(username)
        username = username.strip()[:USERNAME_MAX]
        created = raw.get("created_at")
        if isinstance(created, datetime):  # from a database: a naive one is UTC (Django's zone)
            created_at = created if created.tzinfo else created.replace(tzinfo=UTC)
        elif created in (None, ""):
            created_at = None
        else:
            created_at = parse_ts(created, "created_at")
    except Reject as exc:
        return BadRow(key, _shown(raw), exc.code, exc.detail)
    if "\x00" in email + username:
        return BadRow(key, _shown(raw), "bad_text", "the email or username holds a NUL character")
    return UserRow(user_id, email, username, created_at)


_UPSERT_SQL = """
    INSERT INTO users (id, email, username, date_joined, password, is_superuser, is_staff, is_active)
    SELECT i, e, n, COALESCE(d, now()), %s, false, false, true
      FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::timestamptz[]) AS x(i, e, n, d)
    ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email, username = EXCLUDED.username{joined}
"""


def import_batch(raw_rows: list[dict[str, Any]], *, run_id: int | None) -> Counts:
    """Upsert one batch of users in one transaction; returns the `users` counts.

    If PostgreSQL refuses the batch (two imported users swapping emails, ...), it is replayed
    one row at a time, each in its own savepoint; rows it still refuses are quarantined.
    """
    try:
        with transaction.atomic():
            return _import_batch(raw_rows, run_id=run_id)
    except DatabaseError:
        pass
    counts = Counts()
    with transaction.atomic():
        for raw in raw_rows:
            try:
                with transaction.atomic():
                    counts.merge(_import_batch([raw], run_id=run_id))
            except DatabaseError as exc:
                shown = json.dumps(raw, default=str, ensure_ascii=False)
                bad = BadRow(f"users:{raw.get('id')}", shown, "db_error", str(exc).strip()[:500])
                _quarantine([bad], run_id)
                counts.add("users", "read")
                counts.add("users", "quarantined")
                counts.quarantined.append(
                    {"key": bad.key, "domain": "users", "code": bad.code, "reason": bad.reason}
                )
    return counts


def _quarantine(bad: list[BadRow], run_id: int | None) -> None:
    QuarantinedRecord.objects.bulk_create(
        [
            QuarantinedRecord(
                run_id=run_id,
                key=b.key[:500].replace("\x00", "\\x00"),
                raw_value=b.raw.replace("\x00", "\\x00"),
                fingerprint=_fingerprint(b.raw),
                reason_code=b.code,
                reason=b.reason,
            )
            for b in bad
        ],
        ignore_conflicts=True,
    )


def _import_batch(raw_rows: list[dict[str, Any]], *, run_id: int | None) -> Counts:
    counts = Counts()
    good: dict[int, UserRow] = {}
    bad: list[BadRow] = []
    for raw in raw_rows:
        row = clean(raw)
        if isinstance(row, BadRow):
            bad.append(row)
        elif row.id in good:
            bad.append(
                BadRow(f"users:{row.id}", json.dumps(raw, default=str), "duplicate", "id listed twice")
            )
        else:
            good[row.id] = row
    with connection.cursor() as cursor:
        if good:
            emails = [r.email for r in good.values()]
            cursor.execute(  # two index scans (an OR of both would scan the table)
                "SELECT id, email, username, date_joined FROM users WHERE id = ANY(%s) "
                "UNION SELECT id, email, username, date_joined FROM users WHERE email = ANY(%s)",
                [list(good), emails],
            )
            existing = {}
            email_owner = {}
            for user_id, email, username, joined in cursor.fetchall():
                existing[user_id] = (email, username, joined)
                email_owner[email] = user_id
            seen: dict[str, int] = {}
            for row in list(good.values()):
                owner = email_owner.get(row.email, row.id)
                first = seen.setdefault(row.email, row.id)
                if owner != row.id or first != row.id:
                    other = owner if owner != row.id else first
                    bad.append(
                        BadRow(
                            f"users:{row.id}",
                            json.dumps({"id": row.id, "email": row.email, "username": row.username}),
                            "email_conflict",
                            f"user {other} already has the email address {row.email}",
                        )
                    )
                    del good[row.id]
            changed = []
            for row in good.values():
                before = existing.get(row.id)
                same_time = before is not None and (row.created_at is None or row.created_at == before[2])
                if before is not None and before[:2] == (row.email, row.username) and same_time:
                    counts.add("users", "unchanged")
                else:
                    changed.append(row)
            fresh = [row for row in changed if row.id not in existing]
            again = [row for row in changed if row.id in existing]
            copy_rows("users", _USER_COLUMNS, [_user_values(row) for row in fresh])
            if again:
                _upsert(cursor, again)
            counts.add("users", "created", len(fresh))
            counts.add("users", "updated", len(again))
        if bad:
            _quarantine(bad, run_id)
            for b in bad:
                counts.add("users", "quarantined")
                counts.quarantined.append(
                    {"key": b.key, "domain": "users", "code": b.code, "reason": b.reason}
                )
        if good or bad:
            from cachalot.api import invalidate

            transaction.on_commit(lambda: invalidate("users"))
    counts.add("users", "read", len(raw_rows))
    return counts


_USER_COLUMNS = (
    "id",
    "email",
    "username",
    "date_joined",
    "password",
    "is_superuser",
    "is_staff",
    "is_active",
)


def _user_values(row: UserRow) -> tuple:
    return (
        row.id,
        row.email,
        row.username,
        row.created_at or timezone.now(),
        UNUSABLE_PASSWORD,
        False,
        False,
        True,
    )


def _upsert(cursor, rows: list[UserRow]) -> None:
    """Rows without a created_at keep the date_joined they have (a new one gets now)."""
    for dated in (True, False):
        part = [r for r in rows if (r.created_at is not None) is dated]
        if part:
            sql = _UPSERT_SQL.format(joined=", date_joined = EXCLUDED.date_joined" if dated else "")
            columns = [[r.id for r in part], [r.email for r in part], [r.username for r in part]]
            cursor.execute(sql, [UNUSABLE_PASSWORD, *columns, [r.created_at for r in part]])


def _fingerprint(raw: str) -> str:
    import hashlib

    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def move_sequence() -> int | None:
    """Move the users id sequence past the largest id; returns the new position.

    Never below the sequence's start: ids fivedocks creates itself begin far above the
    platform's (accounts migration 0002), so an import never pulls them back into its range.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence('users', 'id')")
        (sequence,) = cursor.fetchone()
        if sequence is None:
            return None
        cursor.execute(
            """SELECT setval(%s::regclass, GREATEST(
                   (SELECT COALESCE(MAX(id), 1) FROM users),
                   COALESCE(pg_sequence_last_value(%s::regclass), 1),
                   (SELECT seqstart - 1 FROM pg_sequence WHERE seqrelid = %s::regclass)))""",
            [sequence, sequence, sequence],
        )
        return cursor.fetchone()[0]


_INSERT_ONE_SQL = f"""
    INSERT INTO users ({", ".join(_USER_COLUMNS)}) VALUES ({", ".join(["%s"] * len(_USER_COLUMNS))})
    ON CONFLICT DO NOTHING
    RETURNING id
"""  # noqa: S608 - the columns are ours, every value is a parameter


def insert_new(row: UserRow) -> bool:
    """Insert one cleaned user (id kept) unless its id or email exists; True when inserted.

    The first-sight import (fiveducks.first_sight) uses this: the same mapping as `--users-from`,
    but it never updates a user fivedocks already has. Under concurrent inserts of the same user
    one inserts and the others wait on the unique index, then insert nothing.
    """
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_ONE_SQL, list(_user_values(row)))
        inserted = cursor.fetchone() is not None
    if inserted:
        from cachalot.api import invalidate

        transaction.on_commit(lambda: invalidate("users"))
    return inserted
