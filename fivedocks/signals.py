"""Deprecated: call `fivedocks.changes.user_data_changed(domain=..., user_id=...)` instead.

Kept so code written against the old signal still reaches the KV mirror: `send` forwards to
`fivedocks.changes` (there are no receivers any more; the mirror is one explicit call).
"""

from __future__ import annotations

from fivedocks import changes


class _Forward:
    def send(self, sender=None, *, user_id: int, domain: str, **kwargs) -> list:
        changes.user_data_changed(domain=domain, user_id=user_id)
        return []


user_data_changed = _Forward()
