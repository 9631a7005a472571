from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from fivedocks.dbstats import StatsUnavailable, top_statements


class Command(BaseCommand):
    help = "Print the database's top statements by total execution time (pg_stat_statements)."

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=10)
        parser.add_argument("--width", type=int, default=100, help="characters of each query shown")

    def handle(self, *args, limit: int, width: int, **options) -> None:
        with connection.cursor() as cursor:
            try:
                statements = top_statements(cursor, limit)
            except StatsUnavailable as exc:
                raise CommandError(str(exc)) from None
        self.stdout.write(f"{'calls':>9} {'total ms':>11} {'mean ms':>9} {'rows':>9}  query")
        for s in statements:
            self.stdout.write(
                f"{s.calls:>9} {s.total_ms:>11.1f} {s.mean_ms:>9.3f} {s.rows:>9}  {s.query[:width]}"
            )
