"""`manage.py smoke`: a read-only check of a deployed fivedocks (fivedocks/smoke.py). Exit 0 or 1."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand

from fivedocks import smoke


class Command(BaseCommand):
    help = "Check a deployed fivedocks: health, schema, reads, metrics, mirror lag, last migration."
    requires_system_checks: list = []  # it checks another deployment, not this one's settings

    def add_arguments(self, parser):
        smoke.add_arguments(parser)

    def handle(self, *args, **opts) -> None:
        report = smoke.smoke(
            opts["base_url"], opts["token"], timeout=opts["timeout"], max_mirror_lag=opts["max_mirror_lag"]
        )
        self.stdout.write(smoke.render(report, as_json=opts["json"]))
        self.stdout.flush()
        if not report.ok:
            sys.exit(1)
