"""`manage.py kvmigrate`: move the KV store into PostgreSQL, verify it, or write it back.

Exit codes: 0 everything moved and verified; 3 finished with quarantined or mismatched records;
2 bad arguments or a store that cannot be opened; 1 failure.
"""

from __future__ import annotations

import gc
import sys

from django.core.management.base import BaseCommand, CommandError

from kvmigrate import report, services, users
from kvmigrate.load import ALL_DOMAINS


def _domains(value: str) -> frozenset[str]:
    return frozenset(part.strip() for part in value.split(",") if part.strip())


class Command(BaseCommand):
    help = "Move the legacy KV store into PostgreSQL (idempotent, resumable), verify it, or write it back."
    # Django's system checks (URL patterns, admin, templates, security settings) say nothing about
    # a migration and cost a tenth of a second of every run, the freeze window's delta run included;
    # `manage.py check` and every deploy run them.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--source",
            help="Replit DB URL, redis:// URL or dump file (default: /tmp/replitdb or $REPLIT_DB_URL)",
        )
        parser.add_argument(
            "--only", type=_domains, help=f"comma-separated domains among {','.join(ALL_DOMAINS)}"
        )
        parser.add_argument("--dry-run", action="store_true", help="do everything, then roll it all back")
        parser.add_argument(
            "--batch-size", type=int, default=2000, help="records per transaction (default 2000)"
        )
        parser.add_argument(
            "--verify-only", action="store_true", help="only compare the store with PostgreSQL"
        )
        parser.add_argument("--reverse", action="store_true", help="write PostgreSQL back in the KV layout")
        parser.add_argument(
            "--target", help="where --reverse writes: Replit DB URL, redis:// URL or dump file"
        )
        parser.add_argument("--report", help="write the summary as JSON to this path")
        parser.add_argument(
            "--concurrency",
            type=int,
            default=services.DEFAULT_CONCURRENCY,
            help="requests in flight to a Replit Database (default %(default)s; raise it with the latency)",
        )
        parser.add_argument(
            "--users-from", help="import users first: postgres:// URL, CSV or JSON Lines export"
        )
        parser.add_argument("--users-table", default=users.DEFAULT_TABLE, help="table of --users-from URL")
        parser.add_argument(
            "--users-columns",
            default=",".join(users.DEFAULT_COLUMNS),
            help="its id,email,username,created_at columns, in that order",
        )

    def handle(self, *args, **opts) -> None:
        options = services.Options(
            source=opts["source"],
            only=opts["only"] if opts["only"] is not None else frozenset(ALL_DOMAINS),
            dry_run=opts["dry_run"],
            batch_size=opts["batch_size"],
            verify_only=opts["verify_only"],
            reverse=opts["reverse"],
            target=opts["target"],
            report=opts["report"],
            users_from=opts["users_from"],
            users_table=opts["users_table"],
            users_columns=tuple(c.strip() for c in opts["users_columns"].split(",")),
            progress=services.stderr_is_tty(),
            concurrency=opts["concurrency"],
        )
        # A run allocates a batch's records, rows and plans by the hundred thousand, nearly none
        # of them in reference cycles: the cyclic GC's default first threshold (700 allocations)
        # had it walk them again and again. Collections stay on, only rarer.
        # Restored after: tests and `call_command` run it inside a longer-lived process.
        thresholds = gc.get_threshold()
        gc.set_threshold(50_000, 20, 20)
        try:
            result = services.execute(options)
        except services.UsageError as exc:
            raise CommandError(str(exc), returncode=services.EXIT_USAGE) from None
        except services.RunFailed as exc:
            raise CommandError(str(exc), returncode=services.EXIT_FAILED) from None
        except KeyboardInterrupt:
            raise CommandError("interrupted; re-run to complete (whole batches were kept)") from None
        finally:
            gc.set_threshold(*thresholds)
        self.stdout.write(report.table(result.counts))
        if result.counts.seconds:
            self.stdout.write(
                "time: "
                + ", ".join(f"{phase} {value:.1f} s" for phase, value in result.counts.seconds.items())
            )
        if options.dry_run:
            self.stdout.write("dry run: nothing was written")
        run = f"run {result.run.pk}: " if result.run else ""
        if options.reverse:
            self.stdout.write(f"{run}{result.counts.total('created')} records written to {options.target}")
        elif result.exit_code == services.EXIT_OK:
            self.stdout.write(f"{run}everything moved and verified")
        else:
            for problem in result.counts.source_problems[:20]:
                where = ", ".join(f"{name} {problem[name]}" for name in ("line", "member") if name in problem)
                self.stdout.write(f"store problem at {where}: {problem['key']!r}: {problem['reason']}")
            if result.counts.source_problems:
                self.stdout.write(f"{len(result.counts.source_problems)} problem(s) in the store itself")
            self.stdout.write(
                f"{run}{result.counts.total('quarantined')} quarantined, "
                f"{result.counts.total('mismatched')} mismatched (see the admin's quarantine list"
                + (f" and {options.report})" if options.report else ")")
            )
        sys.stdout.flush()
        if result.exit_code:
            sys.exit(result.exit_code)
