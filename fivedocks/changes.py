"""The one hook every write service calls: "may I write to domain D?" and "user data changed in D".

Two calls, from inside the service (never from a view, an admin or a command, so every way in is
covered by the same check):

- `guard_writes(domain)` at the start of a write: raises `WritesFrozen` (503 + Retry-After in the
  API, a message in the admin and the commands) while an operator has frozen the domain for a
  cutover step. kvmigrate's loads run inside `freeze_exempt()`: the runbook's last delta run runs
  while frozen.
- `user_data_changed(domain=..., user_id=...)` inside the writing transaction, once per user whose
  mirrored data changed: the KV mirror records *which* KV key changed (one small outbox row, no
  rendering, no read of the ledger); `manage.py kvmirror` renders the committed state later.

The implementation lives in `cutover` (installed by `CutoverConfig.ready`), so the domains depend
only on this module. Until it is installed (or with no cutover app) both calls do nothing.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class ChangeTracker(Protocol):
    def guard(self, domain: str) -> None:
        """Raise fivedocks.errors.WritesFrozen when `domain` is frozen."""

    def changed(self, domain: str, user_id: int) -> None:
        """Record, in the current transaction, that `user_id`'s data in `domain` changed."""


class _Nothing:
    def guard(self, domain: str) -> None:
        return None

    def changed(self, domain: str, user_id: int) -> None:
        return None


_tracker: ChangeTracker = _Nothing()
_exempt: contextvars.ContextVar[bool] = contextvars.ContextVar("fivedocks_freeze_exempt", default=False)


def install(tracker: ChangeTracker) -> None:
    global _tracker
    _tracker = tracker


def guard_writes(domain: str) -> None:
    """Refuse a write to a frozen domain (WritesFrozen), unless inside `freeze_exempt()`."""
    if not _exempt.get():
        _tracker.guard(domain)


def user_data_changed(*, domain: str, user_id: int) -> None:
    """Say, inside the writing transaction, that this user's `domain` data changed."""
    _tracker.changed(domain, user_id)


@contextmanager
def freeze_exempt() -> Iterator[None]:
    """Writes inside are allowed while frozen: kvmigrate's loads, and nothing else."""
    token = _exempt.set(True)
    try:
        yield
    finally:
        _exempt.reset(token)
