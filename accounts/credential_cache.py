"""Who a credential belongs to, remembered so that a warm authenticated request runs no query.

About two thirds of an authenticated API request's cost was the credential lookup (a query built
by the ORM on every request; for a Firebase ID token an RSA verification too; for the platform's
session a round trip to another database). So every kind of credential goes through this one
cache: `credential -> what it proves` (a user id, a service client's snapshot), under a keyed
hash (HMAC with SECRET_KEY) of the credential or of its stored digest, never the credential
itself. Nothing here logs a credential.

Each entry carries its own deadline besides the backend's timeout: an API token or a service
secret lives `AUTH_CREDENTIAL_CACHE_TTL`; a Firebase ID token never past its `exp`; a platform
session at most 5 s and never past its `expire` (`Found.expires_at`). A hit past its deadline is
a miss whatever the backend's clock granularity.

Writers that issue, rotate or revoke a credential call `forget_on_commit`: every process drops
the entry when the change commits. A reader that fills the entry takes a fill token first, so a
lookup racing a revocation never stores the revoked answer (`remembered` does both). A cached
user id is only a pointer: the caller reads the user through cachalot (`users` is cachable and
its invalidations reach every worker), so a user deactivated or changed is seen at once for
every kind of credential. `AUTH_CREDENTIAL_CACHE=0` turns the cache off (the bench compares both).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.core.cache import cache

from fivedocks import coherence

logger = logging.getLogger(__name__)

_PREFIX = "auth:credential:"

V = TypeVar("V")
R = TypeVar("R")


def enabled() -> bool:
    return settings.AUTH_CREDENTIAL_CACHE


def key_for(kind: str, credential: str) -> str:
    """The cache key of a credential of `kind` (the credential, or the digest it is stored as:
    only its HMAC is kept, and the HMAC cannot be reversed nor computed without SECRET_KEY)."""
    mac = hmac.new(settings.SECRET_KEY.encode(), f"{kind}:{credential}".encode(), hashlib.sha256)
    return _PREFIX + mac.hexdigest()[:40]


def lookup(kind: str, credential: str):
    """The remembered value (a user id, ...), or None: a miss, past its deadline, the cache off
    or unusable."""
    if not enabled() or not coherence.usable():
        return None
    try:
        entry = cache.get(key_for(kind, credential))
    except Exception:  # a cache outage costs a query, never an answer
        logger.warning("credential cache read failed", exc_info=True)
        return None
    if not isinstance(entry, tuple) or len(entry) != 2:
        return None
    value, deadline = entry
    if time.time() >= deadline:
        return None
    return value


def fill_token(kind: str, credential: str):
    """Taken before the lookup; `fill` refuses a value a revocation outdated meanwhile."""
    if not enabled():
        return None
    return coherence.fill_token(key_for(kind, credential))


def deadline(*, expires_at: float | None = None) -> float:
    """When an entry filled now must be gone (epoch seconds): the setting from now, or sooner the
    `expires_at` the entry must never outlive (a token's `exp`, a session's 5 s or `expire`)."""
    until = time.time() + settings.AUTH_CREDENTIAL_CACHE_TTL
    return until if expires_at is None else min(until, expires_at)


def fill(kind: str, credential: str, value, token, *, expires_at: float | None = None) -> bool:
    """Remember `value` until its deadline (kept in the entry: checked on every read, so the
    backend's own expiry, a moment later or in whole seconds, never extends it)."""
    until = deadline(expires_at=expires_at)
    seconds = until - time.time()
    if token is None or seconds <= 0:
        return False
    return coherence.fill(key_for(kind, credential), (value, until), seconds, token)


@dataclass(frozen=True)
class Found(Generic[V, R]):
    """What a credential's lookup found: `value` to remember, `result` for the caller (None:
    refused, nothing remembered), and when the entry must be gone at the latest."""

    value: V
    result: R | None
    expires_at: float | None = None


def remembered(
    kind: str,
    credential: str,
    *,
    use: Callable[[Any], R | None],
    load: Callable[[], Found[Any, R] | None],
) -> R | None:
    """`use(remembered value)` on a hit; otherwise (or when `use` answers None: the user since
    deactivated, ...) `load()` the answer from its source and remember its value.

    `load` may raise (an invalid credential): nothing is remembered then.
    """
    value = lookup(kind, credential)
    if value is not None:
        result = use(value)
        if result is not None:
            return result
        coherence.evict_locally([key_for(kind, credential)])  # outdated: `load` may replace it
    token = fill_token(kind, credential)
    found = load()
    if found is None or found.result is None:
        return None
    fill(kind, credential, found.value, token, expires_at=found.expires_at)
    return found.result


def forget_on_commit(kind: str, *credentials: str) -> None:
    """Inside the transaction that issues, rotates or revokes these credentials: this process
    drops the entries now (so even the rest of this transaction sees the change), and every
    process drops them again when it commits (a lookup racing the change cannot outlive it)."""
    keys = [key_for(kind, credential) for credential in credentials if credential]
    coherence.evict_locally(keys)
    coherence.evict_on_commit(*keys)
