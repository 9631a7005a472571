"""A load refreshes the planner's statistics before verify reads its rows back; a run that moved
nothing (a delta run over an unchanged store) does not: it writes nothing, not even statistics."""

from __future__ import annotations

import pytest

from .helpers import kvmigrate, rows, write_dump, write_users_csv
from .kvrecords import REAL_TOKENS, real_credits

pytestmark = pytest.mark.django_db


def _analyze_count(table: str) -> int:
    rows("SELECT pg_stat_clear_snapshot()")  # the stats views are cached per transaction
    return rows("SELECT pg_stat_get_analyze_count(%s::regclass)", [table])[0][0]


def test_load_analyzes_its_tables_and_an_unchanged_rerun_does_not(tmp_path):
    users = write_users_csv(tmp_path / "users.csv", [1, 2])
    dump = write_dump(
        tmp_path / "store.jsonl",
        {
            "user_credits:1": real_credits(),
            "user_tokens:1": REAL_TOKENS,
            "user_credits:2": real_credits(stripeCustomerId="cus_2", stripeSubscriptionId="sub_2"),
        },
    )
    before = _analyze_count("credit_transactions")
    code, out = kvmigrate("--source", str(dump), "--users-from", str(users))
    assert code == 0, out
    assert _analyze_count("credit_transactions") == before + 1
    assert rows("SELECT count(*) FROM pg_stats WHERE tablename = 'credit_transactions'")[0][0] > 0

    code, out = kvmigrate("--source", str(dump))
    assert code == 0, out
    assert _analyze_count("credit_transactions") == before + 1
