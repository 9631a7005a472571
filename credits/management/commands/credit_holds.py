"""List credit holds, or purge old settled and expired ones."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from credits import selectors, services

STATES = ("open", "expired", "captured", "released")


class Command(BaseCommand):
    help = "Show credit holds (`list`) or delete holds settled or expired long ago (`purge`)."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="holds, newest first")
        listing.add_argument("--user", type=int, help="only this user id")
        listing.add_argument(
            "--state", choices=STATES, help="open (and unexpired), expired, captured, released"
        )
        listing.add_argument("--limit", type=int, default=100)
        purge = sub.add_parser("purge", help="delete holds settled or expired more than N days ago")
        purge.add_argument("--older-than-days", type=int, default=30)

    def handle(self, *args, **options) -> None:
        if options["action"] == "purge":
            days = options["older_than_days"]
            if days < 0:
                raise CommandError("--older-than-days must be 0 or more.")
            deleted = services.purge_holds(older_than=dt.timedelta(days=days))
            self.stdout.write(f"{deleted} holds purged (settled or expired more than {days} days ago)")
            return
        now = timezone.now()
        holds = selectors.holds(user_id=options["user"], state=options["state"])[: max(options["limit"], 0)]
        self.stdout.write("id\tuser\tamount\tstate\tcaptured\toperation\tcreated\texpires")
        for hold in holds:
            state = "expired" if hold.is_expired(now) else hold.status
            self.stdout.write(
                f"{hold.pk}\t{hold.user_id}\t{hold.amount}\t{state}\t{hold.captured_amount or ''}\t"
                f"{hold.operation}\t{hold.created_at:%Y-%m-%d %H:%M:%S}\t{hold.expires_at:%Y-%m-%d %H:%M:%S}"
            )
