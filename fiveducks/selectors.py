"""Reads of the service API's tables."""

from __future__ import annotations

import hmac

from django.db.models import QuerySet

from fiveducks.models import ServiceCall, ServiceClient, ServiceSecret
from fiveducks.services import TOKEN_PREFIX, hash_secret


def secret_for_token(token: str) -> ServiceSecret | None:
    """The live secret (with its client) this `fd_svc_<key id>_<secret>` token proves, or None.

    One primary-key-like lookup by the public key id, then a constant-time hash comparison.
    """
    if not token.startswith(TOKEN_PREFIX):
        return None
    key_id, sep, secret = token[len(TOKEN_PREFIX) :].partition("_")
    if not sep or not key_id or not secret or len(key_id) > 16:
        return None
    row = (
        ServiceSecret.objects.select_related("client").filter(key_id=key_id, revoked_at__isnull=True).first()
    )
    if row is None or not hmac.compare_digest(row.secret_hash, hash_secret(secret)):
        return None
    return row


def clients() -> QuerySet[ServiceClient]:
    return ServiceClient.objects.prefetch_related("secrets")


def calls(*, client_id: int | None = None) -> QuerySet[ServiceCall]:
    qs = ServiceCall.objects.select_related("client")
    if client_id is not None:
        qs = qs.filter(client_id=client_id)
    return qs.order_by("-created_at", "-id")
