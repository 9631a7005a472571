"""The KV mirror's lag, read from the outbox at scrape time (so any worker gives the real figure)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from cutover.drain import lag_seconds
from cutover.models import KvOutbox

logger = logging.getLogger(__name__)


class MirrorLagCollector(Collector):
    def describe(self) -> list[GaugeMetricFamily]:
        # Registering asks for the metric names: answer without touching the database.
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "fivedocks_kv_mirror_lag_seconds",
            "Age of the oldest change not yet written to the KV store (0 when drained).",
        )
        pending = GaugeMetricFamily(
            "fivedocks_kv_mirror_pending_changes", "Changes in the outbox not yet written to the KV store."
        )
        try:
            lag.add_metric([], lag_seconds())
            pending.add_metric([], KvOutbox.objects.count())
        except Exception:  # no database at scrape time: leave the families empty, /metrics still answers
            logger.warning("kv mirror lag: the outbox could not be read at scrape time", exc_info=True)
        yield from (lag, pending)
