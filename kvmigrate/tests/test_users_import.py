"""`--users-from`: users imported first (ids kept), from the platform's PostgreSQL or an export."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from django.db import connection

from accounts.models import User
from fivedocks.config import database_url
from kvmigrate.models import QuarantinedRecord

from .helpers import kvmigrate, rows, write_dump

pytestmark = pytest.mark.django_db


def _server() -> dict:
    s = connection.settings_dict
    return {
        "host": s["HOST"] or "127.0.0.1",
        "port": s["PORT"] or 5432,
        "user": s["USER"],
        "password": s["PASSWORD"],
    }


@pytest.fixture
def platform_db():
    """A PostgreSQL database standing for the platform's, created and dropped by the test."""
    server = _server()
    name = f"fd_kvcore_platform_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = database_url(connection.settings_dict, name)
    conn = psycopg.connect(dbname=name, autocommit=True, **server)
    try:
        yield url, conn
    finally:
        conn.close()
        with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_store(tmp_path):
    return str(write_dump(tmp_path / "empty.jsonl", {}))


def test_users_from_the_platforms_postgresql_keep_their_ids_and_a_rerun_updates(platform_db, empty_store):
    url, conn = platform_db
    conn.execute(
        "CREATE TABLE users (id serial PRIMARY KEY, email text, username text, created_at timestamptz, "
        "password text)"
    )
    conn.execute(
        """INSERT INTO users (id, email, username, created_at) VALUES
           (3, 'Ada@Example.com', 'ada', '2024-09-01T10:00:00Z'),
           (7, 'grace@example.com', NULL, '2024-09-02T10:00:00Z'),
           (42, 'linus@example.com', 'linus', NULL)"""
    )
    code, out = kvmigrate("--source", empty_store, "--users-from", url)
    assert code == 0, out
    users = {u.id: u for u in User.objects.all()}
    assert set(users) == {3, 7, 42}
    assert users[3].email == "ada@example.com" and users[3].username == "ada"
    assert users[3].date_joined == datetime(2024, 9, 1, 10, tzinfo=UTC)
    assert users[7].username == "" and not users[7].has_usable_password()
    # the id sequence moved past the largest id: users created later never collide
    assert User.objects.create_user(email="new@example.com").id > 42

    conn.execute("UPDATE users SET email = 'ada.lovelace@example.com', username = 'countess' WHERE id = 3")
    conn.execute(
        "INSERT INTO users (id, email, username, created_at) VALUES (50, 'tim@example.com', 'tim', now())"
    )
    path = os.path.join(os.path.dirname(empty_store), "r.json")
    code, _ = kvmigrate("--source", empty_store, "--users-from", url, "--report", path)
    assert code == 0
    with open(path) as fh:
        counts = json.load(fh)["domains"]["users"]
    assert (counts["created"], counts["updated"], counts["unchanged"]) == (1, 1, 2)
    assert User.objects.filter(id__in=[3, 7, 42, 50]).count() == 4
    assert User.objects.get(id=3).email == "ada.lovelace@example.com"
    assert User.objects.get(id=42).date_joined == users[42].date_joined  # no created_at: kept


def test_table_and_column_names_are_options(platform_db, empty_store):
    url, conn = platform_db
    conn.execute("CREATE SCHEMA legacy")
    conn.execute("CREATE TABLE legacy.members (uid bigint, mail text, handle text, joined timestamp)")
    conn.execute(
        "INSERT INTO legacy.members VALUES (11, 'a@example.com', 'a', now()), "
        "(12, 'b@example.com', 'b', now())"
    )
    code, out = kvmigrate(
        "--source", empty_store, "--users-from", url, "--users-table", "legacy.members",
        "--users-columns", "uid,mail,handle,joined",
    )  # fmt: skip
    assert code == 0, out
    assert sorted(User.objects.values_list("id", "username")) == [(11, "a"), (12, "b")]
    path = os.path.join(os.path.dirname(empty_store), "again.json")
    code, _ = kvmigrate(
        "--source", empty_store, "--users-from", url, "--users-table", "legacy.members",
        "--users-columns", "uid,mail,handle,joined", "--report", path,
    )  # fmt: skip
    with open(path) as fh:
        assert json.load(fh)["domains"]["users"]["unchanged"] == 2  # naive timestamps are UTC


def test_a_missing_table_or_unreachable_database_exits_2(platform_db, empty_store):
    url, _ = platform_db
    code, out = kvmigrate("--source", empty_store, "--users-from", url, "--users-table", "nope")
    assert code == 2 and "nope" in out
    code, out = kvmigrate("--source", empty_store, "--users-from", "postgres://nobody:secret@127.0.0.1:1/x")
    assert code == 2 and "secret" not in out


def test_users_from_a_csv_export_with_bad_rows_quarantined(tmp_path, empty_store, django_user_model):
    django_user_model.objects.create(id=900, email="taken@example.com")
    export = tmp_path / "users.csv"
    export.write_text(
        "id,email,username,created_at\n"
        "1,one@example.com,one,2024-09-01T00:00:00Z\n"
        "2,,nobody,2024-09-01T00:00:00Z\n"
        "abc,x@example.com,x,2024-09-01T00:00:00Z\n"
        "3,taken@example.com,thief,2024-09-01T00:00:00Z\n"
        "4,dup@example.com,d1,1725148800000\n"
        "5,DUP@example.com,d2,2024-09-01\n",
        encoding="utf-8",
    )
    code, out = kvmigrate("--source", empty_store, "--users-from", str(export))
    assert code == 3, out
    assert sorted(User.objects.exclude(id=900).values_list("id", flat=True)) == [1, 4]
    reasons = dict(QuarantinedRecord.objects.values_list("key", "reason_code"))
    assert reasons == {
        "users:2": "missing:email",
        "users:abc": "wrong_type:id",
        "users:3": "email_conflict",
        "users:5": "email_conflict",
    }


def test_users_from_json_lines(tmp_path, empty_store):
    export = tmp_path / "users.jsonl"
    export.write_text(
        '{"id": 21, "email": "a@example.com", "username": "a", "created_at": "2024-09-01T00:00:00Z"}\n'
        '{"id": "22", "email": "b@example.com", "username": null, "created_at": null}\n'
        "not json\n",
        encoding="utf-8",
    )
    code, _ = kvmigrate("--source", empty_store, "--users-from", str(export))
    assert code == 3
    assert sorted(User.objects.values_list("id", flat=True)) == [21, 22]
    assert QuarantinedRecord.objects.get(key="users:line 3").reason_code == "bad_json"
    assert rows("SELECT count(*) FROM users")[0][0] == 2
