"""Scrape-time gauges of credit holds, read from the database (the same from every worker).

Holds opened, captured and released are counted as they happen (fivedocks_credit_holds_total);
an expiry writes nothing, so expired holds and the open amount are read here at scrape time,
with the expiry decided in the query exactly as the ledger decides it.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db import connection
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from credits.models import CreditHold

_SQL = f"""
    SELECT count(*) FILTER (WHERE expires_at > %(now)s),
           COALESCE(SUM(amount) FILTER (WHERE expires_at > %(now)s), 0),
           count(*) FILTER (WHERE expires_at <= %(now)s)
      FROM {CreditHold._meta.db_table} WHERE status = 'open'
"""  # noqa: S608 - the table name is ours


class CreditHoldsCollector(Collector):
    def describe(self) -> list[GaugeMetricFamily]:
        return []  # registering asks for names: answer without touching the database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        open_count = GaugeMetricFamily("fivedocks_credit_holds_open", "Open, unexpired credit holds.")
        open_amount = GaugeMetricFamily(
            "fivedocks_credit_holds_open_amount", "Credits reserved by open, unexpired holds."
        )
        expired = GaugeMetricFamily(
            "fivedocks_credit_holds_expired",
            "Holds that expired unsettled (their credits are available again), until purged.",
        )
        try:
            with connection.cursor() as cursor:
                cursor.execute(_SQL, {"now": timezone.now()})
                count, amount, expired_count = cursor.fetchone()
        except Exception:  # no database at scrape time: leave the families empty, /metrics still answers
            return
        open_count.add_metric([], count)
        open_amount.add_metric([], amount)
        expired.add_metric([], expired_count)
        yield from (open_count, open_amount, expired)
