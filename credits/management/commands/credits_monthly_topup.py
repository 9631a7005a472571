from datetime import date

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from credits import services
from fivedocks.errors import WritesFrozen


class Command(BaseCommand):
    help = "Grant this month's free-tier allowance to every active user (once per month; safe to re-run)."

    def add_arguments(self, parser):
        parser.add_argument("--month", help="YYYY-MM (default: the current month)")

    def handle(self, *args, month: str | None, **options) -> None:
        try:
            when = date.fromisoformat(f"{month}-01") if month else None
        except ValueError:
            raise CommandError(f"--month must look like 2026-11 (got {month!r})") from None
        granted = skipped = replayed = 0
        users = get_user_model().objects.filter(is_active=True).only("pk").order_by("pk")
        for user in users.iterator(chunk_size=1000):
            try:
                result = services.monthly_top_up(user=user, month=when)
            except WritesFrozen as exc:
                raise CommandError(
                    f"{exc.message} Granted {granted} before the freeze; run it again after (it is safe)."
                ) from None
            if result is None:
                skipped += 1
            elif result.replayed:
                replayed += 1
            else:
                granted += 1
        self.stdout.write(
            f"granted {granted}, already granted this month {replayed}, "
            f"skipped (paid plan or no allowance) {skipped}"
        )
