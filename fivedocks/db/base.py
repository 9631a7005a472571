"""Django's PostgreSQL backend, sending the transaction's cache notifications before COMMIT.

What a transaction registered with `fivedocks.coherence` (cache keys, cachalot tables) goes out
as `pg_notify` in the same transaction, right before COMMIT: PostgreSQL delivers it to every
listening process exactly when the change becomes visible, and never for a rollback. Writes in
autocommit mode (outside `transaction.atomic`) send it after their statement.
"""

from __future__ import annotations

from django.db.backends.postgresql import base
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper

from fivedocks import coherence
from fivedocks.db.introspection import DatabaseIntrospection

coherence.install_cachalot_hook()


class _AfterStatement:
    """In autocommit, a statement is its own transaction: send what it registered after it."""

    def execute(self, sql, params=None):
        try:
            return super().execute(sql, params)
        finally:
            if getattr(self.db, "_coherence_pending", None) and self.db.get_autocommit():
                coherence.flush(self.db)

    def executemany(self, sql, param_list):
        try:
            return super().executemany(sql, param_list)
        finally:
            if getattr(self.db, "_coherence_pending", None) and self.db.get_autocommit():
                coherence.flush(self.db)


class BroadcastingCursorWrapper(_AfterStatement, CursorWrapper):
    pass


class BroadcastingCursorDebugWrapper(_AfterStatement, CursorDebugWrapper):
    pass


class DatabaseWrapper(base.DatabaseWrapper):
    _coherence_pending = None
    introspection_class = DatabaseIntrospection  # the models' table names built once (see there)

    def make_cursor(self, cursor):
        return BroadcastingCursorWrapper(cursor, self)

    def make_debug_cursor(self, cursor):
        return BroadcastingCursorDebugWrapper(cursor, self)

    def _commit(self):
        if self._coherence_pending and self.connection is not None:
            with self.wrap_database_errors:
                coherence.flush_and_commit(self)  # one round trip: the NOTIFY, then COMMIT
            return None
        return super()._commit()

    def _set_autocommit(self, autocommit):
        if not autocommit:
            # A transaction begins: what autocommit registered without a statement after it
            # (an explicit invalidation) was sent at once; it must not wait for this COMMIT.
            coherence.discard(self)
        return super()._set_autocommit(autocommit)

    def _rollback(self):
        coherence.discard(self)
        return super()._rollback()
