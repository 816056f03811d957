"""Every piece of shared state on the Application, declared once as a typed AppKey."""

from __future__ import annotations

from aiohttp import web

from phoenix.config import Config
from phoenix.control import Control
from phoenix.faults import Faults
from phoenix.feed import Feed
from phoenix.hub import Hub
from phoenix.metrics import Metrics
from phoenix.registry import Registry

CONFIG = web.AppKey[Config]("config")
HUB = web.AppKey[Hub]("hub")
FEED = web.AppKey[Feed]("feed")
CONNECTIONS = web.AppKey[Registry]("connections")
FAULTS = web.AppKey[Faults]("faults")
# The simulation's controls: on the feed in this process, or the engine's over the broker.
CONTROL = web.AppKey[Control]("control")
METRICS = web.AppKey[Metrics]("metrics")
STARTED = web.AppKey[float]("started")  # wall time the app started, for uptime
