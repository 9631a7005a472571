"""Top statements by total execution time, from pg_stat_statements."""

from __future__ import annotations

from dataclasses import dataclass

ENABLE_HINT = (
    "pg_stat_statements is not enabled on this server. Enable it with "
    "shared_preload_libraries = 'pg_stat_statements' in postgresql.conf (a managed database: its "
    "parameter group / flags), restart, then run CREATE EXTENSION pg_stat_statements; in this database. "
    "The embedded database enables it when its binaries ship it."
)

TOP_STATEMENTS_SQL = """
SELECT calls, total_exec_time, mean_exec_time, rows, query
  FROM pg_stat_statements
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
 ORDER BY total_exec_time DESC
 LIMIT %s
"""


class StatsUnavailable(Exception):
    pass


@dataclass(frozen=True)
class Statement:
    calls: int
    total_ms: float
    mean_ms: float
    rows: int
    query: str


def top_statements(cursor, limit: int = 10) -> list[Statement]:
    cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'")
    if cursor.fetchone() is None:
        raise StatsUnavailable(ENABLE_HINT)
    try:
        cursor.execute(TOP_STATEMENTS_SQL, [limit])
    except Exception as exc:  # installed but not preloaded: the view raises
        raise StatsUnavailable(ENABLE_HINT) from exc
    return [
        Statement(int(c), float(t), float(m), int(r), " ".join(q.split()))
        for c, t, m, r, q in cursor.fetchall()
    ]
