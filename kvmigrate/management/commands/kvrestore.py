"""`manage.py kvrestore`: put a `kvbackup` file back into a KV store, exactly.

The backup is checked against its closing line (count and SHA-256) before anything is written. An
empty target gets every key; a non-empty one is refused unless `--force`, which makes it equal to
the backup (missing or different keys written, keys the backup does not have deleted). After the
writes the target is read again and its checksum compared with the backup's.

Exit codes: 0 restored and verified (or a dry run); 2 bad arguments, an unreadable store or a
refused non-empty target; 1 a backup that does not match its checksum, or a failed restore.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from kvmigrate import backup
from kvmigrate.sources import SourceError, open_source, open_writer

SHOWN = 200  # keys listed per kind in a dry run (the counts are always complete)


class Command(BaseCommand):
    help = "Restore a kvbackup file into a Replit Database or Redis (checksum first; --force to replace)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--target",
            help="Replit DB URL or redis:// URL (default: /tmp/replitdb or $REPLIT_DB_URL)",
        )
        parser.add_argument("--from", dest="path", required=True, help="the backup file (kvbackup's --out)")
        parser.add_argument("--dry-run", action="store_true", help="list the keys it would write and delete")
        parser.add_argument(
            "--force", action="store_true", help="replace a non-empty target: it becomes equal to the backup"
        )
        parser.add_argument(
            "--batch-size", type=int, default=500, help="keys written per request (default 500)"
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar on a terminal")

    def handle(self, *args, **opts) -> None:
        self.bars = sys.stderr.isatty() and not opts["no_progress"]
        try:
            backup.check_restore_target(opts["target"])
            reader = open_source(opts["target"])
            writer = open_writer(opts["target"])
        except (backup.BackupError, SourceError) as exc:
            raise CommandError(str(exc), returncode=2) from None
        with reader, writer:
            try:
                self._restore(opts, reader, writer)
            except SourceError as exc:
                raise CommandError(str(exc), returncode=1) from None

    def _bar(self, desc: str, total: int | None = None):
        return tqdm(total=total, desc=desc, unit=" keys", disable=not self.bars, file=sys.stderr)

    def _restore(self, opts, reader, writer) -> None:
        path = opts["path"]

        def check(key: bytes, value: bytes) -> None:
            try:
                writer.check(key, value)
            except SourceError as exc:
                raise backup.BackupError(
                    f"{backup.show_key(key)} cannot go to {writer.describe()}: {exc}"
                ) from None

        with self._bar("checking backup") as bar:
            try:
                verified = backup.verify_backup(path, check=check, progress=bar.update)
            except backup.BackupError as exc:
                raise CommandError(str(exc), returncode=1) from None
        self.stdout.write(f"backup {path}: {verified.count} keys, sha256 {verified.sha256} (matches)")
        with self._bar("reading target") as bar:
            plan = backup.plan_restore(verified, reader, progress=bar.update)
        self.stdout.write(
            f"target {writer.describe()}: {plan.target_count} keys; "
            f"{len(plan.writes)} to write, {len(plan.deletes)} to delete, {plan.unchanged} unchanged"
        )
        if plan.other_types:
            self.stdout.write(f"target also holds {plan.other_types} keys of other Redis types (left alone)")
        refused = not plan.target_empty and not opts["force"]
        if opts["dry_run"]:
            for verb, keys in (("write", plan.writes), ("delete", plan.deletes)):
                for key in keys[:SHOWN]:
                    self.stdout.write(f"{verb} {backup.show_key(key)}")
                if len(keys) > SHOWN:
                    self.stdout.write(f"... and {len(keys) - SHOWN} more to {verb}")
            if refused:
                self.stdout.write("a real run would refuse: the target is not empty (--force replaces it)")
            self.stdout.write("dry run: nothing was written")
            return
        if refused:
            raise CommandError(
                f"the target holds {plan.target_count + plan.other_types} keys: "
                "refusing to restore over them. --force makes it equal to the backup "
                "(see --dry-run for what changes)",
                returncode=2,
            )
        with self._bar("restoring", len(plan.writes) + len(plan.deletes)) as bar:
            try:
                backup.apply_plan(path, plan, writer, batch_size=opts["batch_size"], progress=bar.update)
            except backup.BackupError as exc:
                raise CommandError(
                    f"restore failed part way: {exc}; re-run with --force to finish", returncode=1
                ) from None
        with self._bar("verifying target") as bar:
            after = backup.checksum_of(reader, progress=bar.update)
        if len(after) != verified.count or after.hexdigest() != verified.sha256:
            raise CommandError(
                f"the target differs from the backup after the restore ({len(after)} keys, sha256 "
                f"{after.hexdigest()}): was it written to meanwhile? Re-run with --force",
                returncode=1,
            )
        self.stdout.write(
            f"restored: {len(plan.writes)} written, {len(plan.deletes)} deleted; "
            f"target verified ({len(after)} keys, sha256 {after.hexdigest()})"
        )
