"""API token keys: how a key is made and how it is hashed (the one place for both)."""

from __future__ import annotations

import hashlib
import secrets


def generate_key() -> str:
    """40 hex characters, like the keys DRF's authtoken issued (clients need not change)."""
    return secrets.token_hex(20)


def hash_key(key: str) -> str:
    """The stored form of a key: its SHA-256, hex. Keys are random, so no salt is needed."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
