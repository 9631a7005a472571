"""Bulk statements for the domains' `load_migrated_*` services and kvmigrate's own tables.

The domains own their bulk writes (docs/architecture.md); this module owns only the mechanics
they share: COPY (psycopg's C dumpers, no SQL built or parsed per row), a multi-row upsert
through a temporary table, a text[] literal COPY accepts, one-round-trip reads composed of
several apps' selectors, and the cache invalidation a raw write needs. It imports no app:
table and column names are always the caller's constants, never input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cachalot.api import invalidate
from django.db import connection, transaction


def array_literal(items: Iterable[str]) -> str:
    """A text[] literal for COPY (psycopg's list dumper escapes element by element in Python)."""
    quoted = ('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"' for item in items)
    return "{" + ",".join(quoted) + "}"


def copy_rows(table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """COPY rows in (text format), in the caller's transaction."""
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


def upsert_rows(
    table: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    existing: Iterable[Any],
    keep: Sequence[str] = (),
) -> None:
    """Insert or update rows keyed by their first column (a unique one).

    Rows whose key is not in `existing` are copied in (COPY, the fastest path); the others go
    through a temporary table and one `INSERT ... ON CONFLICT DO UPDATE` (`keep`: columns left as
    they are). `existing` is what the caller read in the same transaction: a wrong guess fails
    with a unique violation (an IntegrityError), it never writes a row twice.
    """
    if not rows:
        return
    present = set(existing)
    fresh = [row for row in rows if row[0] not in present]
    again = [row for row in rows if row[0] in present]
    copy_rows(table, columns, fresh)
    if not again:
        return
    stage = f"bulk_stage_{table}"
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


def invalidate_on_commit(*tables: str) -> None:
    """Drop the cached queries of `tables` once the transaction commits.

    COPY and raw statements bypass the ORM, so cachalot cannot see them: a service writing that
    way says which tables it changed.
    """
    transaction.on_commit(lambda: invalidate(*tables))


@dataclass(frozen=True)
class Pairs:
    """A SELECT of two columns (a user id or NULL, a text) with its parameters.

    An app's selector builds it over its own tables; `fetch_pairs` runs several of them, from
    several apps, in one round trip.
    """

    sql: str
    params: tuple[Any, ...] = ()


def fetch_pairs(parts: Mapping[str, Pairs]) -> dict[str, list[tuple[Any, Any]]]:
    """Run the parts as one `UNION ALL` statement; the rows of each part under its name."""
    out: dict[str, list[tuple[Any, Any]]] = {name: [] for name in parts}
    if not parts:
        return out
    names = list(parts)
    statement = " UNION ALL ".join(
        f"(SELECT {index}, part.* FROM ({parts[name].sql}) AS part)"  # noqa: S608 - selectors' SQL
        for index, name in enumerate(names)
    )
    params = [value for name in names for value in parts[name].params]
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        for index, number, text in cursor.fetchall():
            out[names[index]].append((number, text))
    return out
