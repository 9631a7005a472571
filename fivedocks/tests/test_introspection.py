"""The models' table names are built once (django-cachalot asks on every raw write)."""

from django.apps import apps
from django.db import connection
from django.db.backends.postgresql.introspection import DatabaseIntrospection as PostgreSQLIntrospection


def test_the_same_names_as_djangos_own_walk():
    ours = connection.introspection.django_table_names()
    assert ours == PostgreSQLIntrospection(connection).django_table_names()
    assert "user_credits" in ours and "users" in ours


def test_a_raw_write_does_not_walk_the_models_again(monkeypatch):
    connection.introspection.django_table_names()  # built once
    walks = []
    original = apps.get_app_configs
    monkeypatch.setattr(apps, "get_app_configs", lambda: walks.append(1) or original())
    names = connection.introspection.django_table_names()
    names.append("changed by a caller")  # a copy: the remembered list stays as it was
    assert walks == []
    assert "changed by a caller" not in connection.introspection.django_table_names()


def test_the_databases_own_tables_are_still_read_from_it(db):
    assert "user_credits" in connection.introspection.django_table_names(only_existing=True)
