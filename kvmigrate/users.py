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

from django.db import DatabaseError, transaction

from accounts import selectors as account_selectors
from accounts import services as account_services
from accounts.services import MigratedUser

from .models import QuarantinedRecord
from .records import fingerprint
from .report import Counts
from .sources import SourceError, mask_url
from .transforms.base import Reject, parse_int, parse_ts

DEFAULT_TABLE = "users"
DEFAULT_COLUMNS = ("id", "email", "username", "created_at")
EMAIL_MAX = 254
USERNAME_MAX = 150


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


def clean(raw: dict[str, Any]) -> MigratedUser | BadRow:
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
    return MigratedUser(user_id, email, username, created_at)


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
                bad = BadRow(f"users:{raw.get('id')}", _shown(raw), "db_error", str(exc).strip()[:500])
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
                fingerprint=fingerprint(b.raw),
                reason_code=b.code,
                reason=b.reason,
            )
            for b in bad
        ],
        ignore_conflicts=True,
    )


def _import_batch(raw_rows: list[dict[str, Any]], *, run_id: int | None) -> Counts:
    counts = Counts()
    good: dict[int, MigratedUser] = {}
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
    if good:
        existing = account_selectors.users_for_import(ids=list(good), emails=[r.email for r in good.values()])
        email_owner = {state.email: user_id for user_id, state in existing.items()}
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
            same_time = before is not None and (
                row.created_at is None or row.created_at == before.date_joined
            )
            if (
                before is not None
                and (before.email, before.username) == (row.email, row.username)
                and same_time
            ):
                counts.add("users", "unchanged")
            else:
                changed.append(row)
        account_services.load_migrated_users(users=changed, existing=existing.keys())
        again = sum(1 for row in changed if row.id in existing)
        counts.add("users", "created", len(changed) - again)
        counts.add("users", "updated", again)
    if bad:
        _quarantine(bad, run_id)
        for b in bad:
            counts.add("users", "quarantined")
            counts.quarantined.append({"key": b.key, "domain": "users", "code": b.code, "reason": b.reason})
    counts.add("users", "read", len(raw_rows))
    return counts
