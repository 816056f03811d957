"""The Phoenix simulator's server: the Phoenix WebSocket API, an HTTP API and a page,
fed by the simulation in `simulator`."""

__version__ = "0.1.0"
