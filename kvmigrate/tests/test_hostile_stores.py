"""Hostile stores: odd keys, absurd nesting, duplicate keys, secrets in reasons. Each is
quarantined or reported with its line, and the run finishes (exit 3), never with a traceback."""

from __future__ import annotations

import json

import pytest

from credits.models import CreditAccount
from kvmigrate.models import MigrationRun, QuarantinedRecord

from .helpers import kvmigrate, write_dump
from .kvrecords import REAL_TOKENS, real_credits

pytestmark = pytest.mark.django_db

DEEP = 200_000


def _users(tmp_path, ids=(1, 2, 3)):
    from .helpers import write_users_csv

    return str(write_users_csv(tmp_path / "users.csv", ids))


def _run(tmp_path, dump, *extra) -> tuple[int, str, dict]:
    report = tmp_path / "report.json"
    code, out = kvmigrate(
        "--source", str(dump), "--users-from", _users(tmp_path), "--report", str(report), *extra
    )
    data = json.loads(report.read_text()) if report.exists() else {}
    return code, out, data


def test_nul_and_lone_surrogate_keys_are_quarantined(tmp_path):
    dump = write_dump(tmp_path / "store.jsonl", {"user_credits:1": real_credits()})
    with dump.open("a", encoding="utf-8") as fh:
        fh.write(
            json.dumps({"key": "user_credits:2\u0000", "value": json.dumps({"currentBalance": 5})}) + "\n"
        )
        fh.write('{"key": "user_credits:\\ud800", "value": "{\\"currentBalance\\": 5}"}\n')
    code, out, _ = _run(tmp_path, dump)
    assert code == 3, out
    rows = sorted(QuarantinedRecord.objects.values_list("key", "reason_code", "escaped"))
    assert rows == [("user_credits:2\\x00", "bad_key", True), ("user_credits:\\ud800", "bad_key", True)], rows
    assert CreditAccount.objects.filter(user_id=1).exists()
    assert MigrationRun.objects.get().status == "attention"
    # A re-run finishes the same way (no batch that fails forever).
    assert _run(tmp_path, dump)[0] == 3


@pytest.mark.parametrize("where", ["line", "whole"])
def test_deep_nesting_is_reported_and_the_run_finishes(tmp_path, where):
    deep = "[" * DEEP + "]" * DEEP
    if where == "line":
        dump = write_dump(tmp_path / "store.jsonl", {"user_credits:1": real_credits()})
        with dump.open("a", encoding="utf-8") as fh:
            fh.write('{"key": "user_credits:2", "value": ' + deep + "}\n")
            fh.write(json.dumps({"key": "user_credits:3", "value": json.dumps({"currentBalance": 7})}) + "\n")
    else:
        dump = tmp_path / "store.json"
        dump.write_text(
            '{"user_credits:1": '
            + json.dumps(json.dumps(real_credits()))
            + ', "user_credits:2": '
            + deep
            + "}"
        )
    code, out, report = _run(tmp_path, dump)
    assert code == 3, out
    quarantined = QuarantinedRecord.objects.get()
    assert (quarantined.key, quarantined.reason_code) == ("user_credits:2", "bad_json")
    assert "nested too deeply" in quarantined.reason
    assert [q["key"] for q in report["quarantined"]] == ["user_credits:2"]
    assert CreditAccount.objects.filter(user_id=1).exists()
    if where == "line":
        assert CreditAccount.objects.get(user_id=3).balance == 7  # the lines after it still move
    assert _run(tmp_path, dump)[0] == 3  # and a re-run finishes the same way


def test_duplicate_keys_are_reported_with_their_line_numbers(tmp_path):
    dump = write_dump(tmp_path / "store.jsonl", {"user_credits:1": {"currentBalance": 10}})
    with dump.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"key": "user_credits:2", "value": json.dumps({"currentBalance": 1})}) + "\n")
        fh.write(json.dumps({"key": "user_credits:1", "value": json.dumps({"currentBalance": 99})}) + "\n")
    code, out, report = _run(tmp_path, dump)
    assert code == 3, out
    assert report["source_problems"] == [
        {
            "key": "user_credits:1",
            "line": 3,
            "reason": "duplicate key: also earlier in the file; the value at line 3 is the one loaded",
        }
    ]
    assert "store problem at line 3: 'user_credits:1'" in out
    assert MigrationRun.objects.get().status == "attention"


def test_duplicate_keys_in_a_json_object_dump_are_reported(tmp_path):
    dump = tmp_path / "store.json"
    one = json.dumps(json.dumps({"currentBalance": 1}))
    dump.write_text(f'{{"user_credits:1": {one},\n "user_credits:2": {one},\n "user_credits:1": {one}}}')
    code, out, report = _run(tmp_path, dump)
    assert code == 3, out
    assert [(p["key"], p["member"]) for p in report["source_problems"]] == [("user_credits:1", 3)]


def test_no_token_fragment_in_a_quarantine_reason(tmp_path):
    secret = "ya29.a0AfB_byC" + "x" * 80
    # The fields swapped by a bug on the platform: the expiry holds the access token.
    bad_tokens = {**REAL_TOKENS, "gmailAccessToken": secret, "tokenExpiry": secret}
    dump = write_dump(tmp_path / "store.jsonl", {"user_tokens:1": bad_tokens})
    code, out, report = _run(tmp_path, dump)
    assert code == 3, out
    reason = QuarantinedRecord.objects.get().reason
    for fragment in (secret[:12], secret[-12:], "a0AfB"):
        assert fragment not in reason
        assert fragment not in json.dumps(report)
        assert fragment not in out
