"""Reads of Gmail connections. Token columns are deferred: nothing here decrypts a token."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet

from fivedocks.replicas import read_alias
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
