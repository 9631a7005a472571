from django.core.management.base import BaseCommand

from credits.models import CreditAccount
from credits.reconcile import find_mismatches


class Command(BaseCommand):
    help = "Check every credit account against its ledger; exit 1 when any mismatch is found."

    def handle(self, *args, **options) -> None:
        count = 0
        for mismatch in find_mismatches():
            count += 1
            self.stdout.write(str(mismatch))
        accounts = CreditAccount.objects.count()
        if count:
            self.stderr.write(f"{count} mismatch(es) across {accounts} accounts")
            raise SystemExit(1)
        self.stdout.write(f"OK: {accounts} accounts match their ledgers")
