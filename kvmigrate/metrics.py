"""kvmigrate's progress and quarantine, read from the database at scrape time.

A run happens in its own process (the command), so the web process cannot count it: /metrics
shows the newest run's per-domain counts and status, how many records have been moved so far
(they grow batch by batch during a run) and how many quarantined records are unresolved.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kvmigrate.models import MigratedRecord, MigrationRun, QuarantinedRecord


class KvmigrateCollector(Collector):
    def describe(self) -> list[GaugeMetricFamily]:
        # Registering asks for the metric names: answer without touching the database.
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = GaugeMetricFamily(
            "fivedocks_kvmigrate_last_run_records",
            "Records of the newest kvmigrate run, by domain and outcome.",
            labels=["domain", "outcome"],
        )
        status = GaugeMetricFamily(
            "fivedocks_kvmigrate_last_run_info",
            "The newest kvmigrate run (value 1).",
            labels=["run", "status"],
        )
        moved = GaugeMetricFamily("fivedocks_kvmigrate_moved_records", "Source records moved so far.")
        quarantined = GaugeMetricFamily(
            "fivedocks_kvmigrate_quarantined_records", "Quarantined records not yet resolved."
        )
        try:
            run = MigrationRun.objects.order_by("-started_at", "-id").values("pk", "status", "counts").first()
            moved.add_metric([], MigratedRecord.objects.count())
            quarantined.add_metric([], QuarantinedRecord.objects.filter(resolved_at__isnull=True).count())
        except Exception:  # no database at scrape time: leave the families empty, /metrics still answers
            run = None
        if run:
            status.add_metric([str(run["pk"]), run["status"]], 1)
            for domain, outcomes in (run["counts"] or {}).items():
                for outcome, value in outcomes.items():
                    counts.add_metric([domain, outcome], value)
        yield from (counts, status, moved, quarantined)
