"""Encryption of OAuth tokens at rest: MultiFernet over settings.TOKEN_ENCRYPTION_KEYS.

The first key encrypts; every key decrypts, so a new key is put first, `manage.py gmail_rotate_keys`
re-encrypts every row with it, and only then are older keys removed.
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_DEV_KEY_INFO = b"fivedocks gmail token encryption (dev key)"


class TokenDecryptionError(Exception):
    """A stored token could not be decrypted with any configured key."""


def dev_key(secret_key: str) -> bytes:
    """A stable Fernet key derived from SECRET_KEY, for DEBUG and tests only."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_DEV_KEY_INFO).derive(
        secret_key.encode()
    )
    return base64.urlsafe_b64encode(raw)


def configured_keys() -> tuple[str, ...]:
    """The configured keys, newest first (blank entries ignored)."""
    keys = settings.TOKEN_ENCRYPTION_KEYS
    if isinstance(keys, str):
        keys = keys.split(",")
    return tuple(k.strip() for k in keys if k and k.strip())


@functools.lru_cache(maxsize=8)
def _multifernet(keys: tuple[str, ...], secret_key: str, allow_dev_key: bool) -> MultiFernet:
    if not keys:
        if not allow_dev_key:
            raise ImproperlyConfigured("TOKEN_ENCRYPTION_KEYS is required when DEBUG is off")
        return MultiFernet([Fernet(dev_key(secret_key))])
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            # Name the position, never the key itself.
            raise ImproperlyConfigured(
                f"TOKEN_ENCRYPTION_KEYS: key #{position} is not a Fernet key "
                "(32 url-safe base64-encoded bytes)"
            ) from None
    return MultiFernet(fernets)


def multifernet() -> MultiFernet:
    """The MultiFernet for the current settings (cached per key list, so overrides apply)."""
    allow_dev = bool(settings.DEBUG or getattr(settings, "TESTING", False))
    return _multifernet(configured_keys(), settings.SECRET_KEY, allow_dev)


def encrypt(plaintext: str) -> str:
    return multifernet().encrypt(plaintext.encode()).decode("ascii")


def decrypt(ciphertext: str) -> str:
    try:
        return multifernet().decrypt(ciphertext.encode("ascii")).decode()
    except (InvalidToken, UnicodeEncodeError):
        raise TokenDecryptionError(
            "A stored Gmail token could not be decrypted with any key in TOKEN_ENCRYPTION_KEYS "
            "(was a key removed before `manage.py gmail_rotate_keys` re-encrypted the rows?)"
        ) from None
