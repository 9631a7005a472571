"""Writes for accounts: API tokens."""

from __future__ import annotations

from django.db import transaction

from accounts import credential_cache, selectors
from accounts.models import ApiToken, User
from accounts.tokens import generate_key, hash_key


def issue_api_token(*, user: User) -> str:
    """A new API key for `user`, replacing any earlier one. Returned once: only its hash is kept."""
    key = generate_key()
    with transaction.atomic():
        previous = ApiToken.objects.select_for_update().filter(user=user).values_list("key_hash", flat=True)
        credential_cache.forget_on_commit(selectors.TOKEN, *previous)
        ApiToken.objects.update_or_create(user=user, defaults={"key_hash": hash_key(key)})
    return key


def revoke_api_token(*, user: User) -> bool:
    """Delete the user's API key; True when there was one."""
    with transaction.atomic():
        tokens = ApiToken.objects.select_for_update().filter(user=user)
        credential_cache.forget_on_commit(selectors.TOKEN, *tokens.values_list("key_hash", flat=True))
        deleted, _ = tokens.delete()
    return bool(deleted)
