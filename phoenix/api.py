"""The HTTP API (JSON, `Authorization: Bearer <jwt>`): snapshots of the current state so a
client can load them and then subscribe, and the simulation controls for admins.

401 for a missing or bad token, 403 for a viewer on an admin route, 400 naming the field
for a bad body.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from phoenix import protocol
from phoenix.auth import AuthError, Claims, verify
from phoenix.control import ControlError
from phoenix.keys import CONFIG, CONTROL, FAULTS, HUB, METRICS
from phoenix.protocol import ProtocolError
from simulator.events import CHANNELS
from simulator.scenario import bundled_scenarios

log = logging.getLogger("phoenix.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, **details: Any) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if details:
        body["details"] = details
    return web.json_response(body, status=status)


def claims_of(request: web.Request) -> Claims:
    """The request's bearer token, verified as on /ws; raises a 401 response."""
    cfg = request.app[CONFIG]
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        request.app[METRICS].auth_failure("missing")
        raise _unauthorized("missing", "send `Authorization: Bearer <jwt>`")
    try:
        claims = verify(token.strip(), cfg.auth.jwt_secret, list(cfg.auth.algorithms), time.time())
        if request.app[FAULTS].token_expired(claims.iat):
            raise AuthError("expired", "The token has expired (token_expiry_storm fault)")
        return claims
    except AuthError as exc:
        request.app[METRICS].auth_failure(exc.reason)
        raise _unauthorized(exc.reason, exc.message) from None


def _unauthorized(reason: str, message: str) -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(
        text=json.dumps({"error": message, "details": {"reason": reason}}),
        content_type="application/json",
        headers={"WWW-Authenticate": 'Bearer realm="phoenix"'},
    )


def viewer(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        claims_of(request)
        return await handler(request)

    return wrapped


def admin(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        if not claims_of(request).is_admin:
            return _error(403, "this route needs a token with role 'admin'")
        return await handler(request)

    return wrapped


async def _body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object. Anything else (not UTF-8, not JSON, nested too deeply,
    a lone surrogate, not an object) is a 400 that says what is wrong."""
    try:
        text = (await request.read()).decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(None, "the body must be UTF-8 JSON") from None
    try:
        body = protocol.decode(text)  # the same checks as a WebSocket frame's
    except ProtocolError as err:
        problem = f"the body is not usable JSON: {err.details['problem']}"
        raise _bad(err.details.get("field"), problem) from None
    if not isinstance(body, dict):
        raise _bad(None, "the body must be a JSON object")
    return body


def _bad(field: str | None, problem: str, **details: Any) -> web.HTTPBadRequest:
    body: dict[str, Any] = {"error": f"{field}: {problem}" if field else problem}
    if field or details:
        body["details"] = {**({"field": field} if field else {}), "problem": problem, **details}
    return web.HTTPBadRequest(text=json.dumps(body), content_type="application/json")


# --- snapshots -------------------------------------------------------------------


async def _snapshot(request: web.Request) -> dict[str, Any]:
    return await _call(request.app[CONTROL].snapshot())


async def _call(pending: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """A control's answer, or its refusal as an HTTP error that names the field."""
    try:
        return await pending
    except ControlError as exc:
        if exc.status == 503:
            raise _unavailable(exc.problem) from None
        raise _bad(exc.field, exc.problem) from None


def _unavailable(problem: str) -> web.HTTPServiceUnavailable:
    return web.HTTPServiceUnavailable(
        text=json.dumps({"error": problem, "details": {"reason": "engine_unavailable"}}),
        content_type="application/json",
        headers={"Retry-After": "1"},
    )


def _collection(name: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        if (denied := _channel_denied(request, name)) is not None:
            return denied
        snap = await _snapshot(request)
        items = snap[name]
        # last_event_id: subscribe with `since` from it to miss nothing after the snapshot.
        return web.json_response(
            {
                name: items,
                "count": len(items),
                "as_of": snap["sim"]["simulated_time"],
                "last_event_id": snap["sim"]["last_event_id"],
            }
        )

    return viewer(handler)


def _channel_denied(request: web.Request, channel: str) -> web.Response | None:
    """A token limited to some channels sees only their snapshots over HTTP too."""
    if claims_of(request).may_subscribe(channel):
        return None
    return _error(403, f"this token may not read '{channel}'", reason="forbidden_channel")


@viewer
async def experiment(request: web.Request) -> web.Response:
    if (denied := _channel_denied(request, "experiments")) is not None:
        return denied
    exp_id = request.match_info["id"]
    for item in (await _snapshot(request))["experiments"]:
        if item.get("id") == exp_id:
            return web.json_response(item)
    return _error(404, f"no experiment '{exp_id}'")


# --- simulation control ----------------------------------------------------------


@viewer
async def sim_state(request: web.Request) -> web.Response:
    return web.json_response(await _state(request))


async def _state(request: web.Request, state: dict[str, Any] | None = None) -> dict[str, Any]:
    if state is None:
        state = await _call(request.app[CONTROL].state())
    return with_faults(request.app, state)


def with_faults(app: web.Application, state: dict[str, Any]) -> dict[str, Any]:
    """The simulation's state as GET /api/sim shows it: its faults and this server's."""
    return {**state, "faults": all_faults(app, state)}


def all_faults(app: web.Application, state: dict[str, Any]) -> list[dict[str, Any]]:
    """The simulation's faults in force (from its state) and the delivery faults this
    server carries out, in one list."""
    return [*state.get("faults", []), *app[FAULTS].active()]


@admin
async def sim_control(request: web.Request) -> web.Response:
    body = await _body(request)
    state = await _call(request.app[CONTROL].command(body))
    return web.json_response(await _state(request, state))


@admin
async def inject_fault(request: web.Request) -> web.Response:
    body = await _body(request)
    accepted = await _call(request.app[CONTROL].inject(body))
    return web.json_response(accepted, status=202)


@viewer
async def timeline(request: web.Request) -> web.Response:
    return web.json_response(await _call(request.app[CONTROL].timeline()))


MAX_HISTORY_ITEMS = 10_000


@viewer
async def history(request: web.Request) -> web.Response:
    """The recent events of one channel that the server still holds for resume
    (`history.*`), optionally of some event names: a chart's past, in one request.
    `?channel=metrics&events=metrics.update,cost.update&limit=360`."""
    query = request.query
    channel = query.get("channel", "")
    if channel not in CHANNELS:
        raise _bad("channel", f"expected one of {', '.join(CHANNELS)}")
    if (denied := _channel_denied(request, channel)) is not None:
        return denied
    names = None
    if query.get("events"):
        names = {n for n in query["events"].split(",")[:32] if n}
        if any(len(n) > 64 for n in names):
            raise _bad("events", "expected event names such as metrics.update")
    raw = query.get("limit", "500")
    if not (
        len(raw) <= 5 and raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_HISTORY_ITEMS
    ):
        raise _bad("limit", f"expected a whole number from 1 to {MAX_HISTORY_ITEMS}")
    frames = request.app[HUB].recent(channel, names, int(raw))
    # The frames are already JSON (the wire bytes): joined, not parsed and dumped again.
    body = b'{"channel":' + protocol.encode(channel) + b',"events":[' + b",".join(frames) + b"]}"
    return web.Response(body=body, content_type="application/json")


@viewer
async def scenarios(request: web.Request) -> web.Response:
    return web.json_response(
        {"scenarios": [{"name": n, "description": d} for n, d in bundled_scenarios()]}
    )


@viewer
async def list_faults(request: web.Request) -> web.Response:
    state = await _call(request.app[CONTROL].state())
    return web.json_response({"faults": all_faults(request.app, state)})


def setup_routes(app: web.Application) -> None:
    r = app.router
    for name in ("experiments", "agents", "deployments", "alerts"):
        r.add_get(f"/api/v1/{name}", _collection(name))
    r.add_get("/api/v1/experiments/{id}", experiment)
    r.add_get("/api/sim", sim_state)
    r.add_post("/api/sim", sim_control)
    r.add_get("/api/sim/faults", list_faults)
    r.add_get("/api/sim/scenarios", scenarios)
    r.add_get("/api/sim/timeline", timeline)
    r.add_get("/api/sim/history", history)
    r.add_post("/api/sim/faults", inject_fault)
