"""Every piece of shared state on the Application, declared once as a typed AppKey."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from phoenix.config import Config
from phoenix.control import Control
from phoenix.faults import Faults
from phoenix.feed import FeedView
from phoenix.hub import Hub
from phoenix.metrics import Metrics
from phoenix.registry import Leases, Registry

if TYPE_CHECKING:
    from phoenix.gateway import Link  # noqa: F401 (named in LINK's type below)

CONFIG = web.AppKey[Config]("config")
HUB = web.AppKey[Hub]("hub")
FEED = web.AppKey[FeedView]("feed")
CONNECTIONS = web.AppKey[Registry]("connections")
FAULTS = web.AppKey[Faults]("faults")
# The simulation's controls: on the feed in this process, or the engine's over the broker.
CONTROL = web.AppKey[Control]("control")
METRICS = web.AppKey[Metrics]("metrics")
# connections_per_user: counted in this process, or over all gateways with a broker.
LEASES = web.AppKey[Leases]("leases")
# A gateway's link to the broker (phoenix.gateway); absent in one process.
LINK = web.AppKey["Link"]("link")
STARTED = web.AppKey[float]("started")  # wall time the app started, for uptime
