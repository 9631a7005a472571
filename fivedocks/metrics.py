"""Prometheus metrics: one registry for the process, exposed at /metrics (staff or token only).

With several gunicorn workers set PROMETHEUS_MULTIPROC_DIR so every worker's samples are
aggregated (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

REQUEST_LATENCY = Histogram(
    "fivedocks_http_request_duration_seconds",
    "HTTP request latency by view.",
    ["view", "method", "status"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
DB_QUERIES = Counter("fivedocks_db_queries_total", "Database queries executed.", ["kind"], registry=REGISTRY)
DB_QUERY_DURATION = Histogram(
    "fivedocks_db_query_duration_seconds",
    "Database query duration.",
    ["kind"],
    registry=REGISTRY,
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1),
)
CACHE_REQUESTS = Counter(
    "fivedocks_cache_requests_total",
    "Cache lookups by cache alias, key family and result (hit or miss).",
    ["cache", "family", "result"],
    registry=REGISTRY,
)
CACHE_ERRORS = Counter(
    "fivedocks_cache_errors_total",
    "Cache operations that failed (the cache was down): reads answered from the database, writes skipped.",
    ["cache", "operation"],
    registry=REGISTRY,
)
COHERENCE_EVENTS = Counter(
    "fivedocks_cache_coherence_events_total",
    "Cache broadcast events: sent (a transaction's notification), applied (a batch received), "
    "connected / disconnected (the listener), apply_error.",
    ["event"],
    registry=REGISTRY,
)
CREDIT_OPERATIONS = Counter(
    "fivedocks_credit_operations_total",
    "Credit operations by type and result (ok, insufficient, replayed, error).",
    ["type", "result"],
    registry=REGISTRY,
)
CREDIT_HOLDS = Counter(
    "fivedocks_credit_holds_total",
    "Credit hold events: opened, captured, released, refused (credits short), replayed.",
    ["event"],
    registry=REGISTRY,
)
SERVICE_CALLS = Counter(
    "fivedocks_service_calls_total",
    "Service API calls by client, action and HTTP status.",
    ["client", "action", "status"],
    registry=REGISTRY,
)
WEBHOOK_EVENTS = Counter(
    "fivedocks_webhook_events_total",
    "Stripe webhook events by type and result.",
    ["type", "result"],
    registry=REGISTRY,
)
THROTTLE_FAIL_OPEN = Counter(
    "fivedocks_throttle_fail_open_total",
    "Requests let through unthrottled because the throttle's counter store was unavailable.",
    ["scope"],
    registry=REGISTRY,
)


class ConnectionPoolCollector(Collector):
    """Reads psycopg_pool's own statistics at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from django.db.backends.postgresql.base import DatabaseWrapper

        size = GaugeMetricFamily("fivedocks_db_pool_size", "Connections in the pool.", labels=["alias"])
        idle = GaugeMetricFamily("fivedocks_db_pool_available", "Idle connections.", labels=["alias"])
        waiting = GaugeMetricFamily(
            "fivedocks_db_pool_requests_waiting", "Clients waiting for a connection.", labels=["alias"]
        )
        waits = GaugeMetricFamily(
            "fivedocks_db_pool_requests_queued_total",
            "Requests that had to wait for a connection since start.",
            labels=["alias"],
        )
        for alias, pool in list(DatabaseWrapper._connection_pools.items()):
            stats = pool.get_stats()
            size.add_metric([alias], stats.get("pool_size", 0))
            idle.add_metric([alias], stats.get("pool_available", 0))
            waiting.add_metric([alias], stats.get("requests_waiting", 0))
            waits.add_metric([alias], stats.get("requests_queued", 0))
        yield from (size, idle, waiting, waits)


REGISTRY.register(ConnectionPoolCollector())

# Scrape-time collectors that read the database: the same answer from any worker, so they are
# added to the multiprocess registry too.
_DATABASE_COLLECTORS: list[Collector] = []


def register_collector(collector: Collector, *, reads_database: bool = True) -> None:
    """Apps add scrape-time collectors (kvmigrate progress, mirror lag, holds) from their
    AppConfig.ready. Those that read shared state (the database) give the same answer from any
    worker, so the multiprocess scrape includes them too: its registry otherwise holds only what
    the workers' files say, and a Gauge's set_function is not written to any file."""
    REGISTRY.register(collector)
    if reads_database:
        _DATABASE_COLLECTORS.append(collector)


def scrape_registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        for collector in _DATABASE_COLLECTORS:
            registry.register(collector)
        return registry
    return REGISTRY


# Label values come from fixed sets, so no request can add series (a flood of invented methods or
# paths would otherwise grow the registry without bound).
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


def method_label(method: str | None) -> str:
    return method if method in HTTP_METHODS else "other"


def bounded_label(value: str | None, allowed) -> str:
    """`value` when it is one of `allowed`, else "other"."""
    return value if value in allowed else "other"


def view_label(match) -> str:
    """The resolved route's name (or the view's dotted path): a fixed set; "unmatched" when none."""
    if match is None:
        return "unmatched"
    return match.view_name or match._func_path


def query_kind(sql: str) -> str:
    head = sql.lstrip()[:10].upper()
    for kind in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH"):
        if head.startswith(kind):
            return kind.lower()
    return "other"


def instrument_queries(execute, sql, params, many, context):
    """A Django execute_wrapper: counts and times every query (never records the SQL text)."""
    kind = query_kind(sql)
    start = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        DB_QUERIES.labels(kind).inc()
        DB_QUERY_DURATION.labels(kind).observe(time.perf_counter() - start)
