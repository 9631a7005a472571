"""Every write to Gmail connections: storing, refreshing, revoking, re-encrypting tokens.

Refreshes happen under a row lock (SELECT ... FOR UPDATE) with the expiry checked again once the
lock is held, so concurrent callers share one refresh instead of each asking Google. Tokens are
never logged: log lines name the user id only.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone
from google.oauth2.credentials import Credentials

from fivedocks import bulk, changes
from gmail import crypto, oauth
from gmail.errors import (
    GmailNotConnected,
    GmailReconnectRequired,
    GmailUpstreamError,
)
from gmail.models import GmailToken

logger = logging.getLogger(__name__)

# Refresh this long before expiry. Larger than google-auth's own threshold (3 min 45 s), so the
# Credentials handed out are never already "expired" in the library's eyes.
REFRESH_MARGIN = dt.timedelta(minutes=5)


def store_tokens(
    *,
    user,
    access_token: str | None,
    refresh_token: str | None,
    expires_at: dt.datetime | None,
    scopes: Iterable[str],
    email: str,
    display_name: str,
    metadata: dict | None = None,
) -> GmailToken:
    """Create or replace the user's connection and mark it active.

    Google sends a refresh token only on consent; without a new one an active connection keeps
    its current one. Empty email/display name keep the stored ones. `metadata=None` keeps it.
    """
    changes.guard_writes("gmail")
    values = {
        "access_token": access_token or None,
        "refresh_token": refresh_token or None,
        "expires_at": expires_at,
        "scopes": list(scopes or []),
        "email": email or "",
        "display_name": display_name or "",
        "metadata": metadata,
    }
    try:
        with transaction.atomic():
            return _store(user_id=user.pk, **values)
    except IntegrityError:
        # A concurrent first connection created the row between our read and insert: update it.
        with transaction.atomic():
            return _store(user_id=user.pk, **values)


def _store(*, user_id: int, **values) -> GmailToken:
    now = timezone.now()
    token = GmailToken.objects.select_for_update().filter(user_id=user_id).first()
    if token is None:
        token = GmailToken(user_id=user_id, created_at=now)
    keep_refresh = token.pk is not None and token.status == GmailToken.Status.ACTIVE
    token.access_token = values["access_token"]
    if values["refresh_token"] or not keep_refresh:
        token.refresh_token = values["refresh_token"]
    token.expires_at = values["expires_at"]
    token.scopes = values["scopes"]
    token.email = values["email"] or token.email
    token.display_name = values["display_name"] or token.display_name
    if values["metadata"] is not None:
        token.metadata = values["metadata"]
    token.status = GmailToken.Status.ACTIVE
    token.updated_at = now
    token.save()
    changes.user_data_changed(domain="gmail", user_id=user_id)
    logger.info("gmail: tokens stored for user %s", user_id)
    return token


def complete_connection(
    *, user, code: str, state: str, code_verifier: str | None, redirect_uri: str | None = None
) -> GmailToken:
    """Exchange the callback's authorization code at Google and store the tokens."""
    changes.guard_writes("gmail")  # before Google is asked: a code is good for one exchange
    try:
        granted = oauth.exchange_code(
            code=code, state=state, code_verifier=code_verifier, redirect_uri=redirect_uri
        )
    except oauth.GoogleError as exc:
        logger.warning("gmail: code exchange failed for user %s (%s)", user.pk, exc.error or "no code")
        raise GmailUpstreamError(str(exc)) from None
    return store_tokens(
        user=user,
        access_token=granted.access_token,
        refresh_token=granted.refresh_token,
        expires_at=granted.expires_at,
        scopes=granted.scopes,
        email=granted.email,
        display_name=granted.display_name,
    )


def needs_refresh(token: GmailToken, *, now: dt.datetime | None = None) -> bool:
    """No access token, an unknown expiry (a migrated record) or one within REFRESH_MARGIN."""
    if not token.access_token or token.expires_at is None:
        return True
    return (now or timezone.now()) >= token.expires_at - REFRESH_MARGIN


def get_credentials(*, user) -> Credentials:
    """Credentials for the user's Gmail, refreshed first when (nearly) expired.

    The Credentials carry no refresh token: when google-auth wants a new token it calls back
    into this module (`refresh_handler`), so every refresh is locked, saved and shared.
    Raises GmailNotConnected, GmailReconnectRequired (the grant is gone) or GmailUpstreamError.
    """
    return _credentials(fresh_token(user=user))


def fresh_token(*, user) -> GmailToken:
    """The user's connection with an access token valid for at least REFRESH_MARGIN.

    Refreshed first when needed, through the same locked, shared refresh as get_credentials:
    however many callers ask at once, Google sees one refresh. Same errors as get_credentials.
    """
    token = GmailToken.objects.filter(user_id=user.pk).first()
    if token is None:
        raise GmailNotConnected()
    _ensure_usable(token)
    if needs_refresh(token):
        token = _refresh_locked(user_id=user.pk)
    return token


def _ensure_usable(token: GmailToken) -> None:
    if token.status != GmailToken.Status.ACTIVE:
        raise GmailReconnectRequired(
            f"The Gmail connection is {token.status}: reconnect Gmail (GET /api/gmail/connect/)."
        )


def _refresh_locked(*, user_id: int) -> GmailToken:
    """Refresh under the row lock unless another caller already did while we waited."""
    failure: GmailReconnectRequired | None = None
    changes.guard_writes("gmail")
    with transaction.atomic():
        token = GmailToken.objects.select_for_update().filter(user_id=user_id).first()
        if token is None:
            raise GmailNotConnected()
        _ensure_usable(token)
        if not needs_refresh(token):
            return token  # refreshed by a concurrent caller while we waited for the lock
        if not token.refresh_token:
            failure = _mark_invalid(token, reason="no refresh token is stored")
        else:
            try:
                access, expires_at, rotated = oauth.refresh(
                    refresh_token=token.refresh_token, scopes=token.scopes
                )
            except oauth.GoogleError as exc:
                if exc.error != "invalid_grant":
                    logger.warning("gmail: refresh failed for user %s (%s)", user_id, exc.error or "no code")
                    raise GmailUpstreamError(str(exc)) from None
                failure = _mark_invalid(token, reason=str(exc))
            else:
                token.access_token = access
                token.expires_at = expires_at
                if rotated:
                    token.refresh_token = rotated
                token.updated_at = timezone.now()
                fields = ["access_token", "expires_at", "updated_at"]
                token.save(update_fields=[*fields, "refresh_token"] if rotated else fields)
                changes.user_data_changed(domain="gmail", user_id=user_id)
                logger.info("gmail: access token refreshed for user %s", user_id)
                return token
    # Raised after the commit, so the row stays marked invalid.
    raise failure


def _mark_invalid(token: GmailToken, *, reason: str) -> GmailReconnectRequired:
    token.status = GmailToken.Status.INVALID
    token.metadata = {**token.metadata, "invalid_reason": reason, "invalid_at": timezone.now().isoformat()}
    token.updated_at = timezone.now()
    token.save(update_fields=["status", "metadata", "updated_at"])
    changes.user_data_changed(domain="gmail", user_id=token.user_id)
    logger.warning("gmail: connection of user %s marked invalid (%s)", token.user_id, reason)
    return GmailReconnectRequired(
        "Google no longer accepts this Gmail connection (it was revoked or expired): "
        "reconnect Gmail (GET /api/gmail/connect/).",
        reason=reason,
    )


def _credentials(token: GmailToken) -> Credentials:
    expiry = token.expires_at.astimezone(dt.UTC).replace(tzinfo=None) if token.expires_at else None
    return Credentials(
        token=token.access_token,
        expiry=expiry,  # google-auth compares naive UTC datetimes
        token_uri=settings.GOOGLE_TOKEN_URI,
        client_id=settings.GOOGLE_CLIENT_ID,
        scopes=token.scopes or None,
        granted_scopes=token.scopes or None,
        refresh_handler=functools.partial(_refresh_handler, token.user_id),
    )


def _refresh_handler(user_id: int, request, scopes=None) -> tuple[str, dt.datetime]:
    """google-auth's refresh hook for the Credentials we hand out: the locked refresh."""
    token = _refresh_locked(user_id=user_id)
    assert token.access_token is not None and token.expires_at is not None  # a refresh sets both
    return token.access_token, token.expires_at.astimezone(dt.UTC).replace(tzinfo=None)


def disconnect(*, user) -> None:
    """Revoke the grant at Google, then delete the connection.

    If Google cannot be reached the connection is kept (GmailUpstreamError) so nothing is left
    valid at Google without a way to revoke it; a token Google no longer knows counts as revoked.
    """
    changes.guard_writes("gmail")
    with transaction.atomic():
        token = GmailToken.objects.select_for_update().filter(user_id=user.pk).first()
        if token is None:
            raise GmailNotConnected()
        _revoke_at_google(token)
        token.delete()
        changes.user_data_changed(domain="gmail", user_id=user.pk)
    logger.info("gmail: user %s disconnected", user.pk)


def revoke_access(*, user) -> GmailToken:
    """Revoke the grant at Google and keep the row as `revoked`, its tokens erased (staff action)."""
    changes.guard_writes("gmail")
    with transaction.atomic():
        token = GmailToken.objects.select_for_update().filter(user_id=user.pk).first()
        if token is None:
            raise GmailNotConnected()
        _revoke_at_google(token)
        now = timezone.now()
        token.access_token = None
        token.refresh_token = None
        token.status = GmailToken.Status.REVOKED
        token.metadata = {**token.metadata, "revoked_at": now.isoformat()}
        token.updated_at = now
        token.save()
        changes.user_data_changed(domain="gmail", user_id=user.pk)
    logger.info("gmail: access of user %s revoked", user.pk)
    return token


def _revoke_at_google(token: GmailToken) -> None:
    # Revoking the refresh token ends the whole grant, access tokens included.
    secret = token.refresh_token or token.access_token
    if not secret or token.status == GmailToken.Status.REVOKED:
        return
    try:
        oauth.revoke(token=secret)
    except oauth.GoogleError as exc:
        raise GmailUpstreamError(f"{exc}; the connection is kept, try again later.") from None


def rotate_encryption_keys(*, batch_size: int = 500) -> int:
    """Re-encrypt every row with the newest key (the first of TOKEN_ENCRYPTION_KEYS).

    Rows are read with any configured key and written back with the first; each batch is locked
    so a concurrent refresh is not overwritten with a stale token. Returns the rows re-encrypted.
    """
    changes.guard_writes("gmail")
    ids = list(GmailToken.objects.order_by("pk").values_list("pk", flat=True))
    done = 0
    for start in range(0, len(ids), batch_size):
        with transaction.atomic():
            for token in GmailToken.objects.select_for_update().filter(
                pk__in=ids[start : start + batch_size]
            ):
                # Fernet ciphertexts are randomised: saving always writes fresh ciphertext.
                token.save(update_fields=["access_token", "refresh_token"])
                done += 1
    logger.info("gmail: %s connections re-encrypted with the newest key", done)
    return done


# --- tokens moved from the KV store (kvmigrate) ---------------------------------------------------


class MigratedToken(Protocol):
    """A token record from the legacy store (kvmigrate.transforms.TokenRow has this shape)."""

    user_id: int
    access_token: str | None
    refresh_token: str | None
    expires_at: dt.datetime | None
    email: str
    display_name: str
    scopes: list[str]
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    metadata: dict


@dataclass(frozen=True, slots=True)
class SealedToken:
    """A migrated token made ready for `load_migrated_tokens`: the secrets encrypted, the rest
    encoded for COPY. Built by `seal_migrated_token`, outside the writing transaction (kvmigrate
    seals batch n+1 in a second thread while batch n is written)."""

    user_id: int
    access_token: str | None  # ciphertext
    refresh_token: str | None  # ciphertext
    expires_at: dt.datetime | None
    email: str
    display_name: str
    scopes: str  # a text[] literal
    metadata: str  # JSON, its unknown fields encrypted
    created_at: dt.datetime | None
    updated_at: dt.datetime | None


_JSON = DjangoJSONEncoder(ensure_ascii=False, separators=(",", ":"))


def sealed_metadata(metadata: dict) -> dict:
    """Unknown fields of a token record (`kv.extra`) may be secrets too: stored encrypted
    (`selectors.readable_metadata` reads them back)."""
    kv = dict(metadata.get("kv", {}))
    if "extra" in kv:
        kv["extra_encrypted"] = crypto.encrypt(_JSON.encode(kv.pop("extra")))
    return {**metadata, "kv": kv}


def seal_migrated_token(token: MigratedToken) -> SealedToken:
    """Encrypt and encode a migrated token (pure: no database)."""
    return SealedToken(
        user_id=token.user_id,
        access_token=None if token.access_token is None else crypto.encrypt(token.access_token),
        refresh_token=None if token.refresh_token is None else crypto.encrypt(token.refresh_token),
        expires_at=token.expires_at,
        email=token.email,
        display_name=token.display_name,
        scopes=bulk.array_literal(token.scopes),
        metadata=_JSON.encode(sealed_metadata(token.metadata)),
        created_at=token.created_at,
        updated_at=token.updated_at,
    )


_TOKENS = GmailToken._meta.db_table
_MIGRATED_TOKEN_COLUMNS = (
    "user_id", "access_token", "refresh_token", "expires_at", "email", "display_name", "scopes", "status",
    "metadata", "created_at", "updated_at",
)  # fmt: skip


def load_migrated_tokens(*, tokens: Sequence[SealedToken], existing: Collection[int]) -> None:
    """Write one batch of migrated Gmail connections (one per user) in bulk, in the caller's
    transaction, as active connections keeping the store's timestamps.

    `existing`: the users whose row the caller found (`selectors.migrated_token_keys`, same
    transaction): theirs are replaced, the others copied in. kvmigrate decided which record may
    write which row. The KV mirror is not told: the store is the source here. Frozen like every
    write; kvmigrate calls it inside `fivedocks.changes.freeze_exempt()`.
    """
    changes.guard_writes("gmail")
    if not tokens:
        return
    now = timezone.now()
    rows = []
    for token in tokens:
        created = token.created_at or token.updated_at or now
        rows.append(
            (token.user_id, token.access_token, token.refresh_token, token.expires_at, token.email,
             token.display_name, token.scopes, GmailToken.Status.ACTIVE.value, token.metadata, created,
             token.updated_at or created)
        )  # fmt: skip
    with transaction.atomic(savepoint=False):  # no savepoint: a round trip less per batch
        bulk.upsert_rows(_TOKENS, _MIGRATED_TOKEN_COLUMNS, rows, existing=existing)
