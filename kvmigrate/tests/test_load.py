"""Load internals against the real database: COPY literals, the prepare thread, progress output."""

from __future__ import annotations

import pytest
from django.db import connection

from fivedocks.bulk import array_literal, copy_rows
from kvmigrate import services
from kvmigrate.models import MigrationRun

from .helpers import rows, write_dump
from .kvrecords import REAL_TOKENS, real_credits

pytestmark = pytest.mark.django_db


def test_array_literals_survive_copy_whatever_the_elements_hold():
    values = ['a"b', "c\\d", "e,f", "", "g h", "{i}", "NULL", "ünï 🦆", "tab\there"]
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE literal_check (id int, items text[])")
    copy_rows("literal_check", ("id", "items"), [(1, array_literal(values)), (2, array_literal([]))])
    assert rows("SELECT items FROM literal_check ORDER BY id") == [(values,), ([],)]


def test_ahead_keeps_order_and_raises_the_threads_error():
    assert list(services.ahead(lambda x: x * 2, iter(range(50)))) == [x * 2 for x in range(50)]

    def boom(x):
        if x == 3:
            raise ValueError("bad batch")
        return x

    got = []
    with pytest.raises(ValueError, match="bad batch"):
        for value in services.ahead(boom, iter(range(10))):
            got.append(value)
    assert got == [0, 1, 2]


def test_leaving_early_stops_the_thread():
    produced = []

    def slow(x):
        produced.append(x)
        return x

    for value in services.ahead(slow, iter(range(10_000)), depth=2):
        if value == 5:
            break
    assert len(produced) < 20


def test_progress_bars_on_a_terminal(tmp_path, django_user_model, capsys):
    django_user_model.objects.create(id=7, email="u7@example.com")
    path = write_dump(tmp_path / "s.jsonl", {"user_credits:7": real_credits(), "user_tokens:7": REAL_TOKENS})
    result = services.execute(services.Options(source=str(path), progress=True))
    assert result.exit_code == 0
    err = capsys.readouterr().err
    assert "load credits" in err and "verify" in err
    assert result.report["seconds"]["load"] >= 0


def test_a_dry_run_reverse_writes_nothing(tmp_path, django_user_model):
    django_user_model.objects.create(id=7, email="u7@example.com")
    services.execute(
        services.Options(source=str(write_dump(tmp_path / "s.jsonl", {"user_credits:7": real_credits()})))
    )
    target = tmp_path / "back.jsonl"
    result = services.execute(services.Options(reverse=True, target=str(target), dry_run=True))
    assert result.exit_code == 0 and not target.exists()
    assert result.counts.get("credits", "read") == 1
    assert MigrationRun.objects.count() == 1  # the migration's; the dry run left none
