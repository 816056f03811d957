"""Operational metrics, exposed at GET /metrics in the Prometheus text format.

Counters for things that happen (auth failures, rate-limit hits, evictions, resumes) are
incremented where they happen; gauges of current state (connections, subscriptions, queue
depth, lag, faults) are read from the hub, registry and feed at scrape time. Each app has
its own CollectorRegistry: no process-wide state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from phoenix.protocol import Code, ProtocolError

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.auth_failures = Counter(
            "phoenix_auth_failures", "Refused tokens, by reason", ["reason"], registry=r
        )
        self.rate_limited = Counter(
            "phoenix_rate_limit_hits", "RATE_LIMITED errors, by limit", ["limit"], registry=r
        )
        self.errors = Counter(
            "phoenix_client_errors", "Error frames sent, by code", ["code"], registry=r
        )
        self.slow_consumers = Counter(
            "phoenix_slow_consumer_closes", "Connections closed with 1013", registry=r
        )
        self.resumes = Counter(
            "phoenix_resumes", "Subscribes with `since`, by outcome", ["recovered"], registry=r
        )
        self.faults = Counter("phoenix_faults", "Faults started, by type", ["fault"], registry=r)
        self.bytes_closed = 0  # bytes sent by connections already gone

    def auth_failure(self, reason: str) -> None:
        self.auth_failures.labels(reason).inc()

    def error(self, err: ProtocolError) -> None:
        """Every error frame sent, whatever the path that sent it."""
        self.errors.labels(str(err.code)).inc()
        if err.code == Code.RATE_LIMITED:
            self.rate_limited.labels(str(err.details.get("limit", "messages"))).inc()

    def slow_consumer(self) -> None:
        self.slow_consumers.inc()

    def resume(self, recovered: bool) -> None:
        self.resumes.labels("true" if recovered else "false").inc()

    def fault(self, kind: str) -> None:
        self.faults.labels(kind).inc()

    def watch(self, collect: Callable[[], Iterator[Any]]) -> None:
        """Add the scrape-time gauges (see `app.live_metrics`)."""
        self.registry.register(_Live(collect))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Live(Collector):
    def __init__(self, collect: Callable[[], Iterator[Any]]) -> None:
        self._collect = collect

    def collect(self) -> Iterator[Any]:
        return self._collect()

    def describe(self) -> list[Any]:
        return []  # collected at scrape time only


gauge = GaugeMetricFamily
counter = CounterMetricFamily
