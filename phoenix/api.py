"""The HTTP API (JSON, `Authorization: Bearer <jwt>`): snapshots of the current state so a
client can load them and then subscribe, and the simulation controls for admins.

401 for a missing or bad token, 403 for a viewer on an admin route, 400 naming the field
for a bad body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from phoenix import protocol
from phoenix.auth import AuthError, Claims, verify
from phoenix.config import MAX_STEP, SCHEMA, ConfigError
from phoenix.keys import CONFIG, FAULTS, FEED, METRICS
from phoenix.protocol import ProtocolError
from phoenix.sources import restartable, scenario_source
from simulator.scenario import ScenarioError, bundled_scenarios

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


def _snapshot(request: web.Request) -> dict[str, Any]:
    return request.app[FEED].source.snapshot()


def _collection(name: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        if (denied := _channel_denied(request, name)) is not None:
            return denied
        state = request.app[FEED].state()
        items = _snapshot(request)[name]
        # last_event_id: subscribe with `since` from it to miss nothing after the snapshot.
        return web.json_response(
            {
                name: items,
                "count": len(items),
                "as_of": state["simulated_time"],
                "last_event_id": state["last_event_id"],
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
    for item in _snapshot(request)["experiments"]:
        if item.get("id") == exp_id:
            return web.json_response(item)
    return _error(404, f"no experiment '{exp_id}'")


# --- simulation control ----------------------------------------------------------


@viewer
async def sim_state(request: web.Request) -> web.Response:
    return web.json_response(_state(request))


def _state(request: web.Request) -> dict[str, Any]:
    return {**request.app[FEED].state(), "faults": request.app[FAULTS].active()}


ACTIONS = ("pause", "resume", "step", "speed", "restart", "set_rate")


@admin
async def sim_control(request: web.Request) -> web.Response:
    body = await _body(request)
    feed = request.app[FEED]
    action = body.get("action")
    if action not in ACTIONS:
        raise _bad("action", f"expected one of {', '.join(ACTIONS)}, got {action!r}")
    allowed = {"action", *_ACTION_FIELDS[action]}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise _bad(unknown[0], f"not a field of '{action}' (fields: {sorted(allowed)})")
    if action == "pause":
        feed.pause()
    elif action == "resume":
        feed.resume()
    elif action == "speed":
        if body.get("speed") is None:
            raise _bad("speed", "required: a number > 0")
        feed.set_speed(_as_in_config(body, "speed"))
    elif action == "step":
        await feed.advance(_positive(body, "seconds", MAX_STEP) or 1.0)
    elif action == "set_rate":
        _set_rate(request, body)
    else:
        await _restart(request, body)
    log.info("simulation %s by admin: %s", action, feed.state())
    return web.json_response(_state(request))


_ACTION_FIELDS: dict[str, tuple[str, ...]] = {
    "pause": (),
    "resume": (),
    "step": ("seconds",),
    "set_rate": ("channel", "per_second"),
    "speed": ("speed",),
    "restart": ("scenario", "seed", "start", "speed"),
}


async def _restart(request: web.Request, body: dict[str, Any]) -> None:
    feed, sim = request.app[FEED], request.app[CONFIG].simulation
    scenario = body.get("scenario", feed.info.ref or feed.info.name)
    if not isinstance(scenario, str) or not scenario:
        raise _bad("scenario", "expected a scenario name or path")
    seed, start = _as_in_config(body, "seed"), _as_in_config(body, "start")
    speed = _as_in_config(body, "speed") if body.get("speed") is not None else None
    try:
        ref = restartable(scenario, sim.scenario_dirs, feed.info.ref)
        # Off the loop: reading and checking a file and building a fleet take time.
        source, info = await asyncio.to_thread(
            scenario_source, ref, seed, start, sim.max_scenario_bytes
        )
    except ScenarioError as exc:
        raise _bad("scenario", str(exc)) from None
    except (ValueError, OSError) as exc:
        raise _bad("start" if start is not None else "scenario", str(exc)) from None
    feed.load(source, info, speed)  # which ends the old run's faults


def _set_rate(request: web.Request, body: dict[str, Any]) -> None:
    """The firehose control: a channel's rate, as `serve --rate` sets it at start; it
    holds until the run ends (a restart or the scenario's loop starts at its own rates)."""
    set_rate = getattr(request.app[FEED].source, "set_rate", None)
    if set_rate is None:
        raise _bad("action", "a replayed stream plays at its recorded rate; use speed")
    for field in ("channel", "per_second"):
        if field not in body:
            raise _bad(field, "required")
    if not isinstance(body["channel"], str) or len(body["channel"]) > 64:
        raise _bad("channel", "expected agents, metrics or cost-flow")
    try:
        set_rate(body["channel"], body["per_second"])
    except ScenarioError as exc:
        raise _bad(exc.field, exc.problem) from None


def _as_in_config(body: dict[str, Any], field: str) -> Any:
    """A restart's seed, start or speed, checked as `simulation.<field>` in config.yaml is."""
    try:
        return SCHEMA["simulation"][field](field, body.get(field))
    except ConfigError as exc:
        raise _bad(field, str(exc).removeprefix(f"{field}: ")) from None


def _positive(body: dict[str, Any], field: str, maximum: float) -> float | None:
    value = body.get(field)
    if value is None:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not 0 < value <= maximum:
        raise _bad(field, f"expected a number > 0 and at most {maximum:g}, got {value!r}")
    return float(value)


@admin
async def inject_fault(request: web.Request) -> web.Response:
    body = await _body(request)
    try:
        accepted = request.app[FAULTS].inject(body)
    except ScenarioError as exc:
        raise _bad(exc.field, exc.problem) from None
    return web.json_response(accepted, status=202)


@viewer
async def scenarios(request: web.Request) -> web.Response:
    return web.json_response(
        {"scenarios": [{"name": n, "description": d} for n, d in bundled_scenarios()]}
    )


@viewer
async def list_faults(request: web.Request) -> web.Response:
    return web.json_response({"faults": request.app[FAULTS].active()})


def setup_routes(app: web.Application) -> None:
    r = app.router
    for name in ("experiments", "agents", "deployments", "alerts"):
        r.add_get(f"/api/v1/{name}", _collection(name))
    r.add_get("/api/v1/experiments/{id}", experiment)
    r.add_get("/api/sim", sim_state)
    r.add_post("/api/sim", sim_control)
    r.add_get("/api/sim/faults", list_faults)
    r.add_get("/api/sim/scenarios", scenarios)
    r.add_post("/api/sim/faults", inject_fault)
