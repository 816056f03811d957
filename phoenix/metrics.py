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

# Every way a WebSocket connection ends (phoenix_connections_closed_total{reason}).
CLOSE_REASONS = (
    "normal",  # the client closed
    "slow_consumer",  # 1013
    "heartbeat_timeout",  # no pong to the protocol-level ping
    "rate_limited",  # 4029, including a refused upgrade
    "unauthorized",  # 4001, including a refused upgrade and a token's expiry
    "fault",  # close_connections, token_expiry_storm, server_restart
    "shutdown",  # 1001 on server shutdown
    "error",  # no close handshake, a transport or protocol error, anything else
)


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
        self.loop_errors = Counter(  # counted by phoenix.logs.LoopErrors
            "phoenix_loop_errors",
            "Event-loop errors (accept: out of files), by kind",
            ["kind"],
            registry=r,
        )
        self.connections_closed = Counter(
            "phoenix_connections_closed",
            "WebSocket connections ended, by reason",
            ["reason"],
            registry=r,
        )
        for reason in CLOSE_REASONS:
            self.connections_closed.labels(reason)  # every reason shows, from 0
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

    def connection_closed(self, reason: str) -> None:
        """Once per connection, when it ends (and for each refused upgrade)."""
        self.connections_closed.labels(reason if reason in CLOSE_REASONS else "error").inc()

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
