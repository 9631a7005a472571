"""gmail's public interface for code outside the domain that holds a secret the way Gmail tokens are
held (kvmigrate's quarantine keeps the raw value of a token record): encrypted with the same keys
(TOKEN_ENCRYPTION_KEYS), through these two functions rather than gmail's internals."""

from gmail import crypto


def seal_secret(plaintext: str) -> str:
    """The ciphertext of `plaintext` (TOKEN_ENCRYPTION_KEYS' first key)."""
    return crypto.encrypt(plaintext)


def open_secret(ciphertext: str) -> str:
    """The plaintext of a `seal_secret` ciphertext (raises gmail.crypto.TokenDecryptionError)."""
    return crypto.decrypt(ciphertext)
