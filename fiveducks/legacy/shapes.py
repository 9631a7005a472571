"""The platform's JSON shapes, built from the domains' own objects (camelCase, epoch ms)."""

from __future__ import annotations

from datetime import datetime

from credits.models import CreditTransaction


def ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def transaction(entry: CreditTransaction) -> dict:
    """A ledger row as the platform's transaction: type debit|credit, a positive amount."""
    body = {
        "type": "debit" if entry.amount < 0 else "credit",
        "amount": abs(entry.amount),
        "description": entry.reason,
        "timestamp": ms(entry.created_at),
    }
    metadata = entry.metadata or {}
    for name in ("searchType", "success"):
        if name in metadata:
            body[name] = metadata[name]
    return body
