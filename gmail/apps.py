from django.apps import AppConfig
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from gmail import crypto


class GmailConfig(AppConfig):
    name = "gmail"

    def ready(self) -> None:
        checks.register(check_encryption_keys, checks.Tags.security)


def check_encryption_keys(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """`manage.py check` fails when a TOKEN_ENCRYPTION_KEYS entry is not a Fernet key."""
    try:
        crypto.multifernet()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="gmail.E001")]
    return []
