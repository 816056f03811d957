"""The `/ws` endpoint: authenticate, then read client frames and answer them.

This handler is the only place where exceptions become error frames on a socket. It is the
only task that reads the WebSocket; the connection's writer task sends, and the hub only
queues.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from aiohttp import WSMsgType, web

from phoenix import protocol
from phoenix.auth import AuthError, Claims, verify
from phoenix.connection import Connection
from phoenix.keys import CONFIG, CONNECTIONS, FAULTS, FEED, HUB, LEASES, LINK, METRICS
from phoenix.metrics import Metrics
from phoenix.protocol import Close, Code, Command, ProtocolError
from phoenix.ratelimit import Flood, TokenBucket, retry_after_ms

log = logging.getLogger("phoenix.ws")

FOREIGN_AFTER = 1.0  # seconds a gateway waits for an id its engine has not reported


class Session:
    """What one connection knows about its client: claims, limits, subscriptions."""

    __slots__ = ("app", "conn", "limits", "bucket", "flood")

    def __init__(self, app: web.Application, conn: Connection) -> None:
        self.app = app
        self.conn = conn
        cfg = app[CONFIG].limits
        self.limits = cfg
        now = time.monotonic()
        self.bucket = TokenBucket(cfg.messages_per_second, now)
        self.flood = Flood(cfg.close_after_rejected, cfg.rejected_window)

    def now(self) -> float:
        return self.app[FEED].now()

    def send(self, frame: str) -> None:
        self.conn.send_now(frame.encode())

    def error(self, err: ProtocolError, msg_id: str | None) -> None:
        self.app[METRICS].error(err)
        frame = protocol.error_frame(err, msg_id, self.now()).encode()
        if err.close is None:
            self.conn.send_now(frame)
        else:
            self.conn.fail(frame, err.close, err.message)

    # --- one client frame ------------------------------------------------------

    def receive(self, msg: Any) -> Coroutine[Any, Any, None] | None:
        """Answer one client frame; a subscribe that must wait (a gateway behind the id
        its client resumes from) comes back as a coroutine for the read loop to await."""
        rate = self.app[FAULTS].limit("messages_per_second", self.limits.messages_per_second)
        if rate != self.bucket.rate:  # a rate-limit squeeze began or ended
            self.bucket.set_rate(rate)
        wait = self.bucket.take(time.monotonic())
        if wait > 0:
            self._rate_limited(msg, wait)
            return None
        obj = None
        try:
            if msg.type == WSMsgType.BINARY:
                raise protocol.invalid(
                    None, "binary frames are not accepted; send JSON as a text frame"
                )
            obj = protocol.decode(msg.data)
            cmd = protocol.parse_command(obj)
            wait = self._behind(cmd)
            if wait:
                return self._dispatch_later(cmd, wait)
            self.dispatch(cmd)
        except ProtocolError as err:
            self.error(err, protocol.message_id(obj))
        except Exception:
            log.exception("internal error handling a client message")
            self.error(
                ProtocolError(Code.INTERNAL_ERROR, "Internal server error", {}),
                protocol.message_id(obj),
            )
        return None

    def _behind(self, cmd: Command) -> int:
        """On a gateway, the id a client resumes from may be the engine's latest, not yet
        read here (it came from another gateway, or from a snapshot): the position to
        wait for, else 0."""
        if LINK not in self.app or cmd.type != "subscribe" or not cmd.since:
            return 0
        upto = max(protocol.parse_event_id(v) or 0 for v in cmd.since.values())
        # Beyond what this gateway has delivered: it may be what another gateway sent a
        # moment ago. Wait (bounded) for it; an id of no run at all is refused after.
        return upto if self.app[HUB].last_seq < upto else 0

    async def _dispatch_later(self, cmd: Command, upto: int) -> None:
        hub, loop = self.app[HUB], asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.app[CONFIG].broker.request_timeout
        while hub.last_seq < upto and loop.time() < deadline and not self.conn.closing:
            # An id beyond even the engine's position (read twice a second) after a
            # second of waiting is of no run here: answered now (recovered: false).
            if upto > hub.issued and loop.time() - started > FOREIGN_AFTER:
                break
            await asyncio.sleep(0.01)
        try:
            self.dispatch(cmd)
        except ProtocolError as err:
            self.error(err, cmd.id)

    def _rate_limited(self, msg: Any, wait: float) -> None:
        obj = None
        if msg.type == WSMsgType.TEXT and len(msg.data) < 4096:
            # Echo the id when it is cheap to find; a flood must not cost us a parse each.
            try:
                obj = protocol.decode(msg.data)
            except ProtocolError:
                obj = None
        closing = self.flood.reject(time.monotonic())
        err = ProtocolError(
            Code.RATE_LIMITED,
            f"Too many messages: the limit is {self.bucket.rate:g} per second",
            {
                "limit": "messages",
                "messages_per_second": self.bucket.rate,
                "retry_after_ms": retry_after_ms(wait),
            },
            Close.RATE_LIMITED if closing else None,
        )
        self.error(err, protocol.message_id(obj))

    def dispatch(self, cmd: Command) -> None:
        if cmd.type == "ping":
            self.send(protocol.pong_frame(cmd.id, self.now()))
        elif cmd.type == "subscribe":
            self.subscribe(cmd)
        else:
            self.app[HUB].unsubscribe(self.conn, cmd.channels)
            self.send(protocol.response_frame(cmd.id, self.now(), unsubscribed=list(cmd.channels)))

    def subscribe(self, cmd: Command) -> None:
        hub, claims = self.app[HUB], self.conn.claims
        # Validate everything first: a subscribe either applies whole or not at all.
        forbidden = [c for c in cmd.channels if not claims.may_subscribe(c)]
        if forbidden:
            raise ProtocolError(
                Code.UNAUTHORIZED,
                f"This token may not subscribe to '{forbidden[0]}'",
                {
                    "reason": "forbidden_channel",
                    "channel": forbidden[0],
                    "allowed_channels": sorted(claims.channels or ()),
                },
            )
        total = hub.channels_of(self.conn) | set(cmd.channels)
        limit = int(
            self.app[FAULTS].limit("channels_per_connection", self.limits.channels_per_connection)
        )
        if len(total) > limit:
            raise ProtocolError(
                Code.RATE_LIMITED,
                f"Too many subscriptions: at most {limit} channels per connection",
                {"limit": "subscriptions", "max_channels": limit, "requested": len(total)},
            )
        replays: dict[str, list[tuple[int, bytes]] | None] = {
            ch: hub.replay(ch, protocol.parse_event_id(last) or 0, cmd.filters)
            for ch, last in cmd.since.items()
        }
        hub.subscribe(self.conn, cmd.channels, cmd.filters)
        fields: dict[str, Any] = {"subscribed": list(cmd.channels)}
        if cmd.since:
            recovered = all(r is not None for r in replays.values())
            fields["recovered"] = recovered
            self.app[METRICS].resume(recovered)
        self.send(protocol.response_frame(cmd.id, self.now(), **fields))
        if cmd.since and fields["recovered"]:
            # One replay across the channels, in the order the events were published.
            for _, frame in sorted(f for frames in replays.values() for f in frames or ()):
                self.conn.send_now(frame)


async def ws_handler(request: web.Request) -> web.StreamResponse:
    app = request.app
    cfg = app[CONFIG]
    faults = app[FAULTS]
    if faults.restarting:
        # As close as an in-process server gets to being down: refuse before the upgrade.
        wait = faults.retry_after()
        return web.json_response(
            {
                "error": f"server restarting (server_restart fault); try again in {wait} s",
                "details": {"reason": "server_restart", "retry_after_seconds": wait},
            },
            status=503,
            headers={"Retry-After": str(wait)},
        )
    ws = web.WebSocketResponse(
        compress=cfg.websocket.compression,
        # aiohttp refuses a message of exactly max_msg_size; ours is "over the limit".
        max_msg_size=cfg.limits.max_message_bytes + 1,
        # No heartbeat of aiohttp's: phoenix.heartbeat pings every connection from one
        # task (aiohttp's keeps a timer per connection).
        timeout=cfg.websocket.close_timeout,
        # Pings are answered by the connection's writer (Connection.pong): aiohttp's own
        # pong blocks this read loop while a client that reads nothing fills the socket.
        autoping=False,
    )
    await ws.prepare(request)
    metrics, feed = app[METRICS], app[FEED]
    try:
        claims = verify(
            request.query.get("token"),
            cfg.auth.jwt_secret,
            list(cfg.auth.algorithms),
            time.time(),
        )
        if faults.token_expired(claims.iat):
            raise AuthError("expired", "The token has expired (token_expiry_storm fault)")
    except AuthError as exc:
        metrics.auth_failure(exc.reason)
        err = protocol.unauthorized(exc.reason, exc.message)
        metrics.error(err)
        await _refuse(ws, err, feed.now(), metrics)
        return ws

    registry = app[CONNECTIONS]
    limit = int(faults.limit("connections_per_user", cfg.limits.connections_per_user))
    if not await app[LEASES].acquire(claims.sub, limit):
        err = ProtocolError(
            Code.RATE_LIMITED,
            f"Too many connections: at most {limit} per user",
            {"limit": "connections", "max_connections": limit},
            Close.RATE_LIMITED,
        )
        metrics.error(err)
        await _refuse(ws, err, feed.now(), metrics)
        return ws

    def _evicted(c: Connection) -> None:
        app[HUB].drop(c)
        metrics.slow_consumer()

    conn = Connection(
        ws,
        claims,
        limit=cfg.limits.outbound_queue,
        close_timeout=cfg.websocket.close_timeout,
        transport=request.transport,
        remote=request.remote or "",
        on_evict=_evicted,
        delays=faults,
        # Replies plus the longest possible replay (every channel's whole history).
        own_limit=cfg.limits.outbound_queue + cfg.history.max_events * len(protocol.CHANNELS),
    )
    registry.add(conn)
    session = Session(app, conn)
    expiry = _expire_at(session, claims)
    ended: Any = None  # the message that ended the read loop
    task = conn.reader = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    try:
        while True:
            conn.receiving = True
            try:
                msg = await ws.receive()
            except asyncio.CancelledError:
                conn.receiving = False
                # A close the server started: this task, the one that reads, runs the
                # handshake (Connection._shut). Any other cancel goes on up.
                if conn.wants_handshake() and task.uncancel() == 0:
                    await conn.handshake()
                    break
                raise
            conn.receiving = False
            conn.heard_from(loop.time())
            if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                pending = session.receive(msg)
                if pending is not None:
                    await pending
            elif msg.type is WSMsgType.PING:
                conn.pong(msg.data)
            elif msg.type is not WSMsgType.PONG:  # CLOSE, CLOSING, CLOSED, ERROR
                ended = msg
                break
    finally:
        # Before any await: the handler may be cancelled once the transport is lost.
        expiry.cancel()
        _ended(conn, ended)
        app[HUB].drop(conn)
        registry.remove(conn)
        metrics.connection_closed(conn.reason or "error")
        await app[LEASES].release(claims.sub)
        await conn.stop()
        metrics.bytes_closed += conn.bytes_out
    return ws


def _ended(conn: Connection, msg: Any) -> None:
    """Why the connection ended, when the server did not start the close itself (a
    reason recorded first wins, such as phoenix.heartbeat's). `msg` is what ended the
    read loop, None when it was cancelled (the transport was lost)."""
    if conn.reason is not None:
        return
    if msg is not None and msg.type is WSMsgType.CLOSE:
        conn.end("normal")  # the client's close frame
    else:
        conn.end("error")  # no close handshake, or a transport or protocol error


def _expire_at(session: Session, claims: Claims) -> asyncio.TimerHandle:
    """Close with 4001 the moment the token expires."""
    loop = asyncio.get_running_loop()
    delay = max(0.0, claims.exp - time.time())

    def expire() -> None:
        session.app[METRICS].auth_failure("expired")
        session.error(protocol.unauthorized("expired", "The token has expired"), None)

    return loop.call_later(delay, expire)


async def _refuse(
    ws: web.WebSocketResponse, err: ProtocolError, now: float, metrics: Metrics
) -> None:
    """Complete the upgrade, send one error frame, close with the error's code."""
    assert err.close is not None
    metrics.connection_closed("unauthorized" if err.close == Close.UNAUTHORIZED else "rate_limited")
    try:
        await ws.send_str(protocol.error_frame(err, None, now))
        await ws.close(code=err.close, message=err.message.encode()[:120])
    except (ConnectionError, RuntimeError):
        pass
