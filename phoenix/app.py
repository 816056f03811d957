"""The application factory: wire config, hub, feed, registry and routes together.

`create_app(config)` takes an already validated Config (never argv). The feed runs in a
cleanup context; shutdown closes every socket with 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from phoenix import api, contract, cors, faults, headers, logs, views
from phoenix.config import Config, SimulationConfig
from phoenix.control import LocalControl
from phoenix.feed import Feed, Reload, Source, SourceInfo
from phoenix.heartbeat import heartbeat
from phoenix.hub import Hub
from phoenix.keys import (
    CONFIG,
    CONNECTIONS,
    CONTROL,
    FAULTS,
    FEED,
    HUB,
    LEASES,
    LINK,
    METRICS,
    STARTED,
)
from phoenix.metrics import Metrics, counter, gauge
from phoenix.protocol import Close
from phoenix.registry import LocalLeases, Registry
from phoenix.sources import scenario_source, source_from_config
from phoenix.ws import ws_handler
from simulator.events import CHANNELS

log = logging.getLogger("phoenix")

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"


def create_app(
    config: Config,
    source: Source | None = None,
    info: SourceInfo | None = None,
) -> web.Application:
    """One process: the simulation (or a replay) runs here, the hub in memory."""
    app = _server(config)
    if source is None or info is None:
        source, info = source_from_config(config.simulation)
    reload = reloader(config.simulation)
    feed = Feed(
        app[HUB],
        source,
        info,
        speed=config.simulation.speed,
        lag_warning=config.simulation.lag_warning,
        on_control=app[FAULTS].on_control,
        sink=app[FAULTS].publish,
        reload=reload,
        on_reset=app[FAULTS].clear,
    )
    app[FEED] = feed
    app[CONTROL] = LocalControl(feed, config.simulation)
    app[LEASES] = LocalLeases(app[CONNECTIONS])
    app.cleanup_ctx.append(_run_feed(feed))
    _finish(app)
    return app


def create_gateway(config: Config, index: int = 0) -> web.Application:
    """A gateway: the same server, fed by the engine through the broker (phoenix.gateway)."""
    from phoenix.gateway import Link

    app = _server(config)
    link = app[LINK] = Link(app, config, index)
    app[FAULTS].salt = f":{index}"  # each gateway its own draws, repeatable by index
    app[FEED] = link.feed
    app[CONTROL] = link.control
    app[LEASES] = link.leases
    app.cleanup_ctx.append(link.run)
    _finish(app)
    return app


def _server(config: Config) -> web.Application:
    """What every server has, one process or gateway: hub, registry, faults, metrics."""
    app = web.Application()
    app[CONFIG] = config
    app[STARTED] = time.time()
    app[HUB] = Hub(config.history.max_events, config.history.max_age, time.monotonic)
    app[CONNECTIONS] = Registry()
    app[METRICS] = Metrics()
    app[FAULTS] = faults.Faults(app)
    return app


def _finish(app: web.Application) -> None:
    app[METRICS].watch(lambda: live_metrics(app))
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    app.router.add_get("/ws", ws_handler)
    views.setup_routes(app, TEMPLATES / "static")
    contract.setup_routes(app)  # /asyncapi.yaml and /docs
    api.setup_routes(app)
    app.cleanup_ctx.append(logs.loop_errors)  # loop errors throttled, counted
    app.cleanup_ctx.append(heartbeat)
    app.on_shutdown.append(_close_sockets)
    headers.setup(app)  # security headers on every response
    cors.setup(app)  # which other origins' pages may use the API and /ws


def reloader(sim: SimulationConfig) -> Reload | None:
    """What loads the scenario again, from where it ended, with the same size cap as
    the first load; None without simulation.loop."""
    if not sim.loop:
        return None
    max_bytes = sim.max_scenario_bytes

    def reload(info: SourceInfo, start: float, ended: Source) -> tuple[Source, SourceInfo]:
        assert info.ref is not None
        # New ids for new entities, no second hello from agents still online.
        continuation = getattr(ended, "continuation", None)
        after = continuation() if continuation is not None else None
        return scenario_source(info.ref, info.seed, start, max_bytes, after)

    return reload


def _run_feed(feed: Feed) -> Callable[[web.Application], AsyncIterator[None]]:
    async def run(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(feed.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return run


async def _close_sockets(app: web.Application) -> None:
    conns = app[CONNECTIONS].all()
    for conn in conns:
        conn.close(Close.GOING_AWAY, "server shutdown")
    if conns:
        await asyncio.gather(*(c.closed() for c in conns), return_exceptions=True)


def live_metrics(app: web.Application) -> Iterator[Any]:
    """Gauges and counters read from the live objects at scrape time."""
    hub, registry, feed = app[HUB], app[CONNECTIONS], app[FEED]
    yield gauge("phoenix_connections", "Open WebSocket connections", value=registry.count())
    subs = gauge("phoenix_subscriptions", "Subscribers per channel", labels=["channel"])
    published = counter("phoenix_events_published", "Events published", labels=["channel"])
    delivered = counter("phoenix_events_delivered", "Events queued to clients", labels=["channel"])
    for channel in CHANNELS:
        subs.add_metric([channel], hub.subscriber_count(channel))
        published.add_metric([channel], hub.stats[channel].published)
        delivered.add_metric([channel], hub.stats[channel].delivered)
    yield subs
    yield published
    yield delivered
    conns = registry.all()
    sent = app[METRICS].bytes_closed + sum(c.bytes_out for c in conns)
    yield counter("phoenix_bytes_out", "Bytes of frames sent to clients", value=sent)
    depth = gauge("phoenix_outbound_queue", "Frames queued to clients", labels=["stat"])
    depth.add_metric(["total"], sum(c.queued for c in conns))
    depth.add_metric(["max"], max((c.queued for c in conns), default=0))
    yield depth
    yield gauge("phoenix_sim_lag_seconds", "Simulation behind the wall clock", value=feed.lag)
    link = app.get(LINK)
    if link is not None:
        yield gauge("phoenix_broker_up", "1 while the broker answers", value=link.feed.broker_up)
        yield gauge("phoenix_engine_up", "1 while an engine publishes", value=link.feed.engine_up)
        yield gauge(
            "phoenix_broker_lag_events",
            "Events the engine has written that this gateway has not delivered yet",
            value=link.lag_events,
        )
        yield gauge(
            "phoenix_broker_lag_seconds",
            "Wall time from the engine writing an event to this gateway delivering it",
            value=link.lag_seconds,
        )
        yield counter(
            "phoenix_broker_gaps",
            "Events the broker lost before this gateway read them (per occurrence)",
            value=link.gaps,
        )
    active = gauge("phoenix_faults_active", "Faults in force now", labels=["fault"])
    for kind, count in app[FAULTS].active_counts().items():
        active.add_metric([kind], count)
    yield active


class AccessLogger(AbstractAccessLogger):
    """Access log without query strings: `?token=` must never reach a log line."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if request.method == "UNKNOWN":
            # aiohttp's stand-in for a request it could not parse: phoenix.logs already
            # says so, at most once a second; a flood of them must not flood this log.
            return
        self.logger.info(
            '%s "%s %s" %s %s %.3fs',
            request.remote,
            request.method,
            request.path,
            response.status,
            response.body_length,
            time,
        )
