"""A run killed part-way (SIGKILL) leaves whole batches; the next run ends where a clean run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from kvmigrate.kvgen import GenOptions, generate
from kvmigrate.models import MigrationRun

from .helpers import kvmigrate, rows, snapshot

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(settings.BASE_DIR)


def _wipe_migrated_data() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE credit_pending_changes, credit_transactions, user_credits, subscriptions, "
            "gmail_tokens, user_notifications, kvmigrate_records, kvmigrate_quarantine"
        )
        cursor.execute("UPDATE users SET firebase_uid = NULL")


def _database_url() -> str:
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def _migrated() -> int:
    return rows("SELECT count(*) FROM kvmigrate_records")[0][0]


def test_a_killed_run_then_a_rerun_ends_identical_to_a_clean_run(tmp_path):
    store = tmp_path / "store.jsonl"
    users_csv = tmp_path / "users.csv"
    stats = generate(GenOptions(users=400, seed=11, malformed_share=0.0), store, users_out=users_csv)
    records = stats.records

    code, out = kvmigrate("--source", str(store), "--users-from", str(users_csv))
    assert code == 0, out
    clean = snapshot()
    assert _migrated() == records

    _wipe_migrated_data()
    env = {**os.environ, "DATABASE_URL": _database_url(), "DB_POOL": "0"}
    child = subprocess.Popen(
        [sys.executable, "manage.py", "kvmigrate", "--source", str(store), "--batch-size", "5"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while _migrated() < 60:
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "the run never got going"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    left = _migrated()
    assert 60 <= left < records, "killed part-way"
    # whole batches only: every record marked migrated has its rows (and no row lacks its mark)
    assert (
        rows(
            """SELECT count(*) FROM kvmigrate_records r
            WHERE r.family = 'user_credits'
              AND NOT EXISTS (SELECT 1 FROM user_credits a WHERE a.user_id = r.user_id)"""
        )[0][0]
        == 0
    )
    assert (
        rows(
            """SELECT count(*) FROM user_credits a WHERE NOT EXISTS
           (SELECT 1 FROM kvmigrate_records r WHERE r.user_id = a.user_id AND r.family = 'user_credits')"""
        )[0][0]
        == 0
    )

    code, out = kvmigrate("--source", str(store))
    assert code == 0, out  # moved and verified
    assert snapshot() == clean
    assert MigrationRun.objects.filter(status="interrupted").count() == 1  # the killed one, found later
    code, out = kvmigrate("--source", str(store), "--verify-only")
    assert code == 0 and "everything moved and verified" in out
