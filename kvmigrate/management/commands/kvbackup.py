"""`manage.py kvbackup`: a verbatim copy of the KV store (every key, every value byte for byte).

Exit codes: 0 written; 2 bad arguments or a store that cannot be opened; 1 failure (nothing left
behind: the file appears complete or not at all).
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from kvmigrate.backup import BackupError, take_backup
from kvmigrate.sources import SourceError, open_source


class Command(BaseCommand):
    help = "Copy every key of the KV store, values byte for byte, to a JSON Lines file (.gz to compress)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--source",
            help="Replit DB URL, redis:// URL or dump file (default: /tmp/replitdb or $REPLIT_DB_URL)",
        )
        parser.add_argument(
            "--out", required=True, help="the backup file to create: FILE.jsonl or FILE.jsonl.gz"
        )
        parser.add_argument("--batch-size", type=int, default=500, help="keys read per batch (default 500)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar on a terminal")

    def handle(self, *args, **opts) -> None:
        try:
            source = open_source(opts["source"])
        except SourceError as exc:
            raise CommandError(str(exc), returncode=2) from None
        enabled = sys.stderr.isatty() and not opts["no_progress"]
        with source:
            total = source.count_estimate() if enabled else None
            bar = tqdm(total=total, desc="backup", unit=" keys", disable=not enabled, file=sys.stderr)
            try:
                summary = take_backup(source, opts["out"], batch_size=opts["batch_size"], progress=bar.update)
            except (BackupError, SourceError) as exc:
                raise CommandError(str(exc), returncode=1) from None
            finally:
                bar.close()
        self.stdout.write(f"{summary.count} keys from {summary.closing['source']} -> {opts['out']}")
        self.stdout.write(f"sha256 {summary.sha256}")
        for name, value in summary.skipped.items():
            what = {
                "vanished": "deleted while the backup ran",
                "not_strings": "not strings (other Redis types)",
            }
            self.stdout.write(f"warning: {value} keys skipped: {what.get(name, name)}")
