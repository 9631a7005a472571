import logging
import sys
from datetime import date

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from credits import services
from fivedocks.errors import DomainError, WritesFrozen

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Grant this month's free-tier allowance to every active user (once per month; safe to re-run). "
        "A user whose top-up fails is reported and the run carries on; exit 1 when any failed."
    )

    def add_arguments(self, parser):
        parser.add_argument("--month", help="YYYY-MM (default: the current month)")

    def handle(self, *args, month: str | None, **options) -> None:
        try:
            when = date.fromisoformat(f"{month}-01") if month else None
        except ValueError:
            raise CommandError(f"--month must look like 2026-11 (got {month!r})") from None
        granted = skipped = replayed = 0
        failed: list[tuple[int, str]] = []
        users = get_user_model().objects.filter(is_active=True).only("pk").order_by("pk")
        for user in users.iterator(chunk_size=1000):
            try:
                result = services.monthly_top_up(user=user, month=when)
            except WritesFrozen as exc:
                raise CommandError(
                    f"{exc.message} Granted {granted} before the freeze; run it again after (it is safe)."
                ) from None
            except (DomainError, DatabaseError) as exc:
                # One account's problem never stops everyone else's allowance.
                reason = exc.message if isinstance(exc, DomainError) else type(exc).__name__
                failed.append((user.pk, reason))
                logger.warning("monthly top-up failed for user %s: %s", user.pk, reason)
                continue
            if result is None:
                skipped += 1
            elif result.replayed:
                replayed += 1
            else:
                granted += 1
        self.stdout.write(
            f"granted {granted}, already granted this month {replayed}, "
            f"skipped (paid plan or no allowance) {skipped}, failed {len(failed)}"
        )
        for user_id, reason in failed:
            self.stderr.write(f"user {user_id}: {reason}")
        if failed:
            sys.exit(1)
