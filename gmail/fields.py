"""A text field encrypted before it reaches the database (see gmail.crypto)."""

from __future__ import annotations

from django.db import models

from gmail import crypto


class EncryptedTextField(models.TextField):
    """Holds a secret string; the column holds only its Fernet ciphertext.

    Ciphertexts are randomised, so the column supports no lookups beyond NULL checks.
    Serialisation (`dumpdata`) writes the ciphertext with a prefix, which `loaddata` reads back.
    """

    SERIALIZED_PREFIX = "encrypted:"

    description = "Text encrypted at rest with the TOKEN_ENCRYPTION_KEYS"

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None:
            return None
        return crypto.encrypt(value)

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        return crypto.decrypt(value)

    def get_lookup(self, lookup_name):
        if lookup_name != "isnull":
            return None
        return super().get_lookup(lookup_name)

    def value_to_string(self, obj):
        value = self.value_from_object(obj)
        if value is None:
            return None
        return self.SERIALIZED_PREFIX + crypto.encrypt(value)

    def to_python(self, value):
        if isinstance(value, str) and value.startswith(self.SERIALIZED_PREFIX):
            return crypto.decrypt(value.removeprefix(self.SERIALIZED_PREFIX))
        return super().to_python(value)
