"""`manage.py kvgen`: write a generated KV store (see kvmigrate/kvgen.py) to a dump, Replit DB or Redis."""

from __future__ import annotations

import json
import sys
import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from kvmigrate.kvgen import LAYOUTS, GenOptions, generate
from kvmigrate.sources import SourceError


class Command(BaseCommand):
    help = (
        "Generate a realistic KV store of the platform (values JSON-encoded twice, a share of "
        "malformed records, keys of other features) into a dump file, a Replit DB URL or Redis."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--users", type=int, required=True, help="how many users")
        parser.add_argument(
            "--out", required=True, help="a dump path, http(s)://<replit db url> or redis://..."
        )
        parser.add_argument("--format", choices=["jsonl", "json"], help="dump format (default: by extension)")
        parser.add_argument("--malformed-share", type=float, default=0.02, help="share of bad records")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--layout", choices=LAYOUTS, default="real")
        parser.add_argument("--start-id", type=int, default=1, help="the first user id")
        parser.add_argument("--users-out", help="also write the users as CSV (id,email,username,created_at)")
        parser.add_argument("--manifest", help="also write counts and every malformed key (JSON)")
        parser.add_argument("--batch-size", type=int, default=1000)

    def handle(self, *args, **opts) -> None:
        try:
            options = GenOptions(
                users=opts["users"],
                seed=opts["seed"],
                layout=opts["layout"],
                malformed_share=opts["malformed_share"],
                start_id=opts["start_id"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        started = time.monotonic()
        bar = tqdm(total=None, unit=" keys", disable=not sys.stderr.isatty(), file=sys.stderr)
        try:
            stats = generate(
                options,
                opts["out"],
                format=opts["format"],
                users_out=opts["users_out"],
                manifest=opts["manifest"],
                batch_size=opts["batch_size"],
                progress=bar.update,
            )
        except (SourceError, OSError) as exc:
            raise CommandError(str(exc)) from None
        finally:
            bar.close()
        elapsed = time.monotonic() - started
        summary = stats.as_dict()
        self.stdout.write(
            f"{summary['keys']} keys for {summary['users']} users in {elapsed:.1f}s: "
            f"{summary['valid']} valid records, {sum(stats.malformed.values())} malformed, "
            f"{summary['other']} of other features"
        )
        self.stdout.write(json.dumps(summary, indent=1))
