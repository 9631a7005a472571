"""Who a credential belongs to, remembered so that a warm authenticated request runs no query.

About two thirds of an authenticated API request's cost was the credential lookup (a query built
by the ORM on every request). The answer changes only when the credential is issued, rotated or
revoked, so it is cached: `credential -> user id`, under a keyed hash (HMAC with SECRET_KEY) of
the credential's stored digest, never the credential itself. The user row itself comes from the
`users` table through cachalot, whose invalidations reach every worker (`fivedocks.coherence`):
a user deactivated or changed is seen at once, and a permission check still reads the database.

Writers that issue, rotate or revoke a credential call `forget_on_commit`: every process drops
the entry when the change commits. A reader that fills the entry takes a fill token first, so a
lookup racing a revocation never stores the revoked answer. `AUTH_CREDENTIAL_CACHE=0` turns the
cache off (the bench compares both).
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from django.conf import settings
from django.core.cache import cache

from fivedocks import coherence

logger = logging.getLogger(__name__)

_PREFIX = "auth:credential:"


def enabled() -> bool:
    return settings.AUTH_CREDENTIAL_CACHE


def key_for(kind: str, digest: str) -> str:
    """The cache key of a credential of `kind` whose stored digest is `digest`."""
    mac = hmac.new(settings.SECRET_KEY.encode(), f"{kind}:{digest}".encode(), hashlib.sha256)
    return _PREFIX + mac.hexdigest()[:40]


def lookup(kind: str, digest: str):
    """The remembered value (a user id, ...), or None: a miss, the cache off or unusable."""
    if not enabled() or not coherence.usable():
        return None
    try:
        return cache.get(key_for(kind, digest))
    except Exception:  # a cache outage costs a query, never an answer
        logger.warning("credential cache read failed", exc_info=True)
        return None


def fill_token(kind: str, digest: str):
    """Taken before the database lookup; `fill` refuses a value a revocation outdated meanwhile."""
    if not enabled():
        return None
    return coherence.fill_token(key_for(kind, digest))


def fill(kind: str, digest: str, value, token) -> None:
    coherence.fill(key_for(kind, digest), value, settings.AUTH_CREDENTIAL_CACHE_TTL, token)


def forget_on_commit(kind: str, *digests: str) -> None:
    """Inside the transaction that issues, rotates or revokes these credentials: this process
    drops the entries now (so even the rest of this transaction sees the change), and every
    process drops them again when it commits (a lookup racing the change cannot outlive it)."""
    keys = [key_for(kind, digest) for digest in digests if digest]
    coherence.evict_locally(keys)
    coherence.evict_on_commit(*keys)
