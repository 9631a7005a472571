"""The embedded PostgreSQL: started from scratch in a temporary folder, with pg_stat_statements."""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

from fivedocks import embedded_db
from fivedocks.dbstats import top_statements

ROOT = Path(__file__).resolve().parents[2]


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


def _run_with_db(data_dir: Path, *, stop_after: bool) -> subprocess.CompletedProcess:
    """`python -m fivedocks.embedded_db run` as make calls it, with nothing configured."""
    env = {"PATH": "/usr/bin:/bin", "ENV_FILE": "/nonexistent", "EMBEDDED_PGDATA": str(data_dir)}
    probe = "import os, psycopg; url = os.environ['DATABASE_URL']; psycopg.connect(url).close(); print(url)"
    flags = ["--stop-after"] if stop_after else []
    return subprocess.run(
        [sys.executable, "-m", "fivedocks.embedded_db", "run", *flags, "--", sys.executable, "-c", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_exports_database_url_and_stops_only_a_server_it_started(embedded):
    # Already running (as after `make run`): the command gets its URL and the server stays up.
    result = _run_with_db(embedded.data_dir, stop_after=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == embedded.url()
    assert embedded_db.is_running(embedded.data_dir)
    # Not running (a fresh clone's `make test`): started for the command, stopped afterwards.
    embedded_db.stop(embedded.data_dir)
    try:
        result = _run_with_db(embedded.data_dir, stop_after=True)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == embedded.url()
        assert not embedded_db.is_running(embedded.data_dir)
        # Without --stop-after (`make run`) it stays up.
        assert _run_with_db(embedded.data_dir, stop_after=False).returncode == 0
        assert embedded_db.is_running(embedded.data_dir)
    finally:
        embedded_db.ensure_running(embedded.data_dir)


def test_run_passes_the_command_exit_code_and_uses_a_configured_url(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "ENV_FILE": "/nonexistent", "EMBEDDED_PGDATA": str(tmp_path / "never")}
    env["DATABASE_URL"] = "postgres://postgres@db.example:5432/x"
    result = subprocess.run(
        [sys.executable, "-m", "fivedocks.embedded_db", "run", "--stop-after", "--",
         sys.executable, "-c", "import os, sys; print(os.environ['DATABASE_URL']); sys.exit(3)"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 3
    assert result.stdout.strip() == "postgres://postgres@db.example:5432/x"
    assert not (tmp_path / "never").exists()
