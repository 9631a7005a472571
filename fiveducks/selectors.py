"""Reads of the service API's tables."""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass

from django.db.models import QuerySet

from accounts import credential_cache
from fiveducks.models import ServiceCall, ServiceClient, ServiceSecret
from fiveducks.services import CREDENTIAL_KIND, TOKEN_PREFIX, credential_digest, hash_secret

# What a cached credential remembers of its client: enough for authentication, scopes, the audit
# row and the metrics. Anything else (last use, creation) is read from the database if asked.
_CLIENT_FIELDS = ("id", "name", "scopes", "is_disabled")


@dataclass(frozen=True)
class ServiceCredential:
    """A live secret and its client, as `secret_for_token` proves them."""

    secret_id: int
    key_id: str
    client: ServiceClient
    last_used_at: dt.datetime | None = None  # known when the row was just read, not from the cache


def secret_for_token(token: str) -> ServiceCredential | None:
    """The live secret (with its client) this `fd_svc_<key id>_<secret>` token proves, or None.

    Warm, no query: the credential cache keeps a snapshot of the secret's client under a keyed
    hash of (key id, the secret's hash); revoking the secret, disabling the client or changing
    its scopes evicts it in every process (fiveducks.services). Cold, one primary-key-like lookup
    by the public key id, then a constant-time hash comparison.
    """
    if not token.startswith(TOKEN_PREFIX):
        return None
    key_id, sep, secret = token[len(TOKEN_PREFIX) :].partition("_")
    if not sep or not key_id or not secret or len(key_id) > 16:
        return None
    secret_hash = hash_secret(secret)

    def load() -> credential_cache.Found[tuple, ServiceCredential] | None:
        row = (
            ServiceSecret.objects.select_related("client")
            .filter(key_id=key_id, revoked_at__isnull=True)
            .first()
        )
        if row is None or not hmac.compare_digest(row.secret_hash, secret_hash):
            return None
        snapshot = (row.pk, row.key_id, *(getattr(row.client, f) for f in _CLIENT_FIELDS))
        found = ServiceCredential(row.pk, row.key_id, row.client, last_used_at=row.last_used_at)
        return credential_cache.Found(value=snapshot, result=found)

    return credential_cache.remembered(
        CREDENTIAL_KIND, credential_digest(key_id, secret_hash), use=_from_snapshot, load=load
    )


def _from_snapshot(snapshot: tuple) -> ServiceCredential:
    secret_id, key_id, *client = snapshot
    return ServiceCredential(secret_id, key_id, ServiceClient.from_db("default", _CLIENT_FIELDS, client))


def clients() -> QuerySet[ServiceClient]:
    return ServiceClient.objects.prefetch_related("secrets")


def calls(*, client_id: int | None = None) -> QuerySet[ServiceCall]:
    qs = ServiceCall.objects.select_related("client")
    if client_id is not None:
        qs = qs.filter(client_id=client_id)
    return qs.order_by("-created_at", "-id")
