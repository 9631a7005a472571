from django.core.management.base import BaseCommand

from gmail import services


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored Gmail token with the newest key (the first of "
        "TOKEN_ENCRYPTION_KEYS). Run after putting a new key first; remove old keys only afterwards."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, batch_size: int, **options):
        count = services.rotate_encryption_keys(batch_size=batch_size)
        self.stdout.write(f"{count} Gmail connection(s) re-encrypted with the newest key.")
