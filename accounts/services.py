"""Writes for accounts: API tokens."""

from __future__ import annotations

from django.db import transaction

from accounts.models import ApiToken, User
from accounts.tokens import generate_key, hash_key


def issue_api_token(*, user: User) -> str:
    """A new API key for `user`, replacing any earlier one. Returned once: only its hash is kept."""
    key = generate_key()
    with transaction.atomic():
        ApiToken.objects.update_or_create(user=user, defaults={"key_hash": hash_key(key)})
    return key


def revoke_api_token(*, user: User) -> bool:
    """Delete the user's API key; True when there was one."""
    deleted, _ = ApiToken.objects.filter(user=user).delete()
    return bool(deleted)
