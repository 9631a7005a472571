"""Reads of Gmail connections. Token columns are deferred: nothing here decrypts a token."""

from __future__ import annotations

import json
from collections.abc import Sequence

from django.contrib.auth import get_user_model
from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet

from fivedocks import bulk
from fivedocks.replicas import read_alias
from gmail import crypto
from gmail.models import GmailToken

TOKEN_FIELDS = ("access_token", "refresh_token")


def connections() -> QuerySet[GmailToken]:
    """Every connection with its user, tokens left in the database (the admin's list).

    `has_tokens` tells whether any token is stored, from NULL checks alone (nothing decrypted).
    """
    stored = Q(access_token__isnull=False) | Q(refresh_token__isnull=False)
    return (
        GmailToken.objects.defer(*TOKEN_FIELDS)
        .select_related("user")
        .annotate(has_tokens=ExpressionWrapper(stored, output_field=BooleanField()))
    )


def connection_for(*, user) -> GmailToken | None:
    """The user's connection (tokens not loaded), or None; from a replica unless the user just
    wrote (the status page: a token refresh or revocation reads the primary in its service)."""
    return connections().using(read_alias(user_id=user.pk)).filter(user_id=user.pk).first()


def active_user(*, user_id: int | None):
    """The active user who started an OAuth flow (the callback comes without credentials)."""
    if user_id is None:
        return None
    return get_user_model().objects.filter(pk=user_id, is_active=True).first()


# --- for kvmigrate: who wrote each row, and the rows to compare or render back ------------------

_TOKENS = GmailToken._meta.db_table


def migrated_token_keys(*, user_ids: Sequence[int]) -> bulk.Pairs:
    """(user id, the KV key the row was migrated from; NULL: the app wrote it) of these users."""
    return bulk.Pairs(
        f"SELECT user_id, metadata #>> '{{kv,key}}' FROM {_TOKENS} WHERE user_id = ANY(%s)",  # noqa: S608
        (list(user_ids),),
    )


def tokens_of(*, user_ids: Sequence[int]) -> dict[int, GmailToken]:
    """User id -> connection, tokens decrypted (kvmigrate's verify compares them, its reverse
    renders them back into the KV store)."""
    return {t.user_id: t for t in GmailToken.objects.filter(user_id__in=user_ids).order_by("user_id")}


def readable_metadata(metadata: dict) -> dict:
    """A connection's metadata with its encrypted unknown fields readable again
    (`services.sealed_metadata` wrote them)."""
    kv = dict(metadata.get("kv", {}))
    if "extra_encrypted" in kv:
        kv["extra"] = json.loads(crypto.decrypt(kv.pop("extra_encrypted")))
    return {**metadata, "kv": kv}
