"""Writes of the platform integration: the service API's own tables (clients, their secrets, the
audit log) and linking a Firebase identity to its user.

A secret is returned once, when it is made, and stored only as its SHA-256. A client has at most
two live secrets: `rotate` adds the second, the backend switches to it, `revoke_old` ends the
first. Nothing here logs a secret.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import credential_cache
from accounts.models import User
from fivedocks.errors import Conflict, DomainError, NotFound
from fiveducks import first_sight
from fiveducks.firebase import FirebaseIdentity
from fiveducks.models import SCOPES, ServiceCall, ServiceClient, ServiceSecret

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "fd_svc_"
MAX_LIVE_SECRETS = 2
# The credential cache's kind for service secrets (accounts.credential_cache): an entry is keyed
# by `credential_digest(key id, stored hash)`, which a writer can name without the secret.
CREDENTIAL_KIND = "service-secret"


class ServiceClientNotFound(NotFound):
    """No service client with this name."""

    code = "service_client_not_found"


class TooManySecrets(Conflict):
    """This client already has two live secrets: revoke the old one first."""

    code = "too_many_secrets"


@dataclass(frozen=True)
class IssuedSecret:
    """A new secret: `token` is shown once and never stored."""

    client: ServiceClient
    secret: ServiceSecret
    token: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def credential_digest(key_id: str, secret_hash: str) -> str:
    """What the credential cache keys a secret by (the cache HMACs it again)."""
    return f"{key_id}:{secret_hash}"


def _forget(rows: Iterable[ServiceSecret]) -> None:
    """Every process drops these secrets' cached snapshots when the transaction commits."""
    credential_cache.forget_on_commit(
        CREDENTIAL_KIND, *(credential_digest(s.key_id, s.secret_hash) for s in rows)
    )


def _issue(client: ServiceClient) -> IssuedSecret:
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ServiceSecret.objects.create(client=client, key_id=key_id, secret_hash=hash_secret(secret))
    return IssuedSecret(client=client, secret=row, token=f"{TOKEN_PREFIX}{key_id}_{secret}")


def _clean_scopes(scopes: Iterable[str]) -> list[str]:
    wanted = sorted({s.strip() for s in scopes if s.strip()})
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown or not wanted:
        raise DomainError(
            f"Scopes must be among {', '.join(sorted(SCOPES))}; got {', '.join(unknown) or 'none'}.",
            scopes=[f"Unknown: {', '.join(unknown)}" if unknown else "At least one scope is required."],
        )
    return wanted


def _client(name: str, *, lock: bool = True) -> ServiceClient:
    qs = ServiceClient.objects.select_for_update() if lock else ServiceClient.objects
    client = qs.filter(name=name).first()
    if client is None:
        raise ServiceClientNotFound(f"No service client named {name!r}.")
    return client


def create_client(*, name: str, scopes: Iterable[str]) -> IssuedSecret:
    """A new client with its first secret."""
    scopes = _clean_scopes(scopes)
    client = ServiceClient(name=name, scopes=scopes)
    try:
        client.full_clean(validate_unique=False)
    except Exception as exc:  # django ValidationError: a name that is not a slug
        raise DomainError(f"Invalid client name {name!r}: letters, digits, - and _ only.") from exc
    try:
        with transaction.atomic():
            client.save()
            issued = _issue(client)
    except IntegrityError:
        raise Conflict(f"A service client named {name!r} already exists.") from None
    logger.info("service client %s created with scopes %s", name, ",".join(scopes))
    return issued


def set_scopes(*, name: str, scopes: Iterable[str]) -> ServiceClient:
    with transaction.atomic():
        client = _client(name)
        client.scopes = _clean_scopes(scopes)
        client.save(update_fields=["scopes"])
        _forget(client.secrets.all())  # the snapshot carries the scopes
    return client


def rotate(*, name: str) -> IssuedSecret:
    """A second live secret; the first keeps working until `revoke_old`."""
    with transaction.atomic():
        client = _client(name)
        live = client.secrets.filter(revoked_at__isnull=True).count()
        if live >= MAX_LIVE_SECRETS:
            raise TooManySecrets(
                f"{name} already has {live} live secrets: revoke the old one first (revoke-old {name})."
            )
        issued = _issue(client)
    logger.info("service client %s: new secret %s", name, issued.secret.key_id)
    return issued


def revoke_old(*, name: str) -> int:
    """Revoke every live secret but the newest. Returns how many were revoked."""
    with transaction.atomic():
        client = _client(name)
        live = list(client.secrets.filter(revoked_at__isnull=True).order_by("-created_at", "-id"))
        old = [s.pk for s in live[1:]]
        ServiceSecret.objects.filter(pk__in=old).update(revoked_at=timezone.now())
        _forget(live[1:])
    logger.info("service client %s: %s old secret(s) revoked", name, len(old))
    return len(old)


def set_disabled(*, name: str, disabled: bool = True) -> ServiceClient:
    with transaction.atomic():
        client = _client(name)
        client.is_disabled = disabled
        client.save(update_fields=["is_disabled"])
        _forget(client.secrets.all())
    logger.info("service client %s %s", name, "disabled" if disabled else "enabled")
    return client


# Last-used times are written at most once a minute per secret: not a write on every call.
LAST_USED_RESOLUTION = 60
_USED_PREFIX = "svc:last-used:"


def mark_used(*, secret_id: int, client_id: int, last_used_at: dt.datetime | None = None) -> None:
    """Record that a secret was used, at most once a minute per secret and process.

    `last_used_at` is the stored time when the secret was just read from the database; a cached
    credential has none, so a marker in the (local) cache stands for "written less than a minute
    ago": a warm call stays free of queries. Without a usable cache it writes, as it did when
    every call read the row.
    """
    now = timezone.now()
    if last_used_at is not None and (now - last_used_at).total_seconds() < LAST_USED_RESOLUTION:
        return
    try:
        if not cache.add(f"{_USED_PREFIX}{secret_id}", 1, LAST_USED_RESOLUTION):
            return
    except Exception:  # a cache outage: write (an audit time), as without the cache
        logger.warning("service api: last-use marker unavailable", exc_info=True)
    ServiceSecret.objects.filter(pk=secret_id).update(last_used_at=now)
    ServiceClient.objects.filter(pk=client_id).update(last_used_at=now)


def record_call(
    *,
    client: ServiceClient,
    user_id: int | None,
    action: str,
    status: int,
    result: str,
    detail: dict | None = None,
    request_id: str = "",
) -> ServiceCall:
    """One audit row (its own transaction: written whatever the call's outcome)."""
    return ServiceCall.objects.create(
        client=client,
        user_id=user_id,
        action=action,
        status=status,
        result=result,
        detail=detail or {},
        request_id=request_id,
    )


# --- The platform's logins ----------------------------------------------------------------------
def user_for_firebase_identity(*, identity: FirebaseIdentity) -> User | None:
    """The user of a verified Firebase token: by uid, else by verified email (uid then recorded).

    An unverified email never links to a user or imports one: anyone can create a Firebase
    account with someone else's address. None when no user can be found or imported.
    """
    user = User.objects.filter(firebase_uid=identity.uid).first()
    if user is not None:
        return user
    if not (identity.email and identity.email_verified):
        return None
    user = first_sight.find_or_import_user_by_email(email=identity.email)
    if user is None:
        return None
    if user.firebase_uid != identity.uid:
        try:
            with transaction.atomic():
                User.objects.filter(pk=user.pk).update(firebase_uid=identity.uid)
        except IntegrityError:  # a concurrent first request recorded it already
            pass
        else:
            if user.firebase_uid:
                logger.info("user %s: Firebase uid replaced (the verified email matched)", user.pk)
            user.firebase_uid = identity.uid
    return user
