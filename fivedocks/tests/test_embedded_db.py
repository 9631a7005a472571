"""The embedded PostgreSQL: started from scratch in a temporary folder, with pg_stat_statements."""

import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

from fivedocks import embedded_db
from fivedocks.dbstats import top_statements


@pytest.fixture(scope="module")
def embedded():
    folder = Path(tempfile.mkdtemp(prefix="fivedocks-embedded-"))
    folder.chmod(0o755)  # the server's system user must reach it; we never chmod parents
    data_dir = folder / "pgdata"
    try:
        yield embedded_db.ensure_running(data_dir)
    finally:
        embedded_db.stop(data_dir)
        shutil.rmtree(folder, ignore_errors=True)


def connect(database):
    return psycopg.connect(
        host=str(database.socket_dir), port=embedded_db.SOCKET_PORT, user="postgres",
        dbname=embedded_db.DATABASE_NAME, autocommit=True,
    )  # fmt: skip


def test_starts_and_is_idempotent(embedded):
    again = embedded_db.ensure_running(embedded.data_dir)
    assert again == embedded
    with connect(embedded) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    # Unix socket only: no TCP listener configured.
    conf = (embedded.data_dir / "postgresql.conf").read_text()
    assert "listen_addresses = ''" in conf


def test_pg_stat_statements_reports_top_statements(embedded):
    with connect(embedded) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS probe (n int)")
        for n in range(20):
            conn.execute("INSERT INTO probe VALUES (%s)", [n])
        statements = top_statements(conn.cursor(), limit=50)
    assert any("INSERT INTO probe" in s.query and s.calls >= 20 for s in statements)
