"""One client connection's outbound side: a bounded queue drained by its own writer task.

The hub calls `offer` and never waits. When nothing is queued and the socket is taking
data (its write buffer is under the transport's high-water mark), `offer` writes the frame
to the transport at once: the common case costs one `transport.write`, no task switch
(bench/README.md: this took fan-out from about half of a bare aiohttp loop to par).
Otherwise the frame is queued and the writer task sends frames in order, waiting for the
socket to drain. A client that falls `limit` frames behind is closed with 1013 and its
queue dropped, so one slow reader never slows the others or grows memory without bound.
Replies and a resume's replay are counted apart, with a cap of their own. Closing with an
error frame (`fail`) sends what is queued before it, then the error, then the close, or
closes anyway when the client has not read them within the close timeout.

A connection records why it ends (`reason`, the first one given wins), for
`phoenix_connections_closed_total{reason}`. Protocol pings are answered by the writer too,
never by the handler's read loop (which would stop reading while a pong waits for a client
that does not read), and only the latest one unanswered (RFC 6455 §5.5.3): a client that
floods pings and reads nothing holds one pending pong, not a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import deque
from collections.abc import Callable
from typing import Protocol

from aiohttp import WSMsgType, web

from phoenix.auth import Claims
from phoenix.protocol import Close

log = logging.getLogger("phoenix.ws")

# Why a close with this code ends the connection, when the caller does not say.
# phoenix.faults closes with any code; the codes below are the server's own.
_REASON_OF_CODE: dict[int, str] = {
    Close.GOING_AWAY: "shutdown",
    Close.SERVICE_RESTART: "fault",
    Close.TRY_AGAIN_LATER: "slow_consumer",
    Close.UNAUTHORIZED: "unauthorized",
    Close.RATE_LIMITED: "rate_limited",
}


def reason_of_code(code: int) -> str:
    """The phoenix_connections_closed_total reason of a close the server starts."""
    return _REASON_OF_CODE.get(code, "fault")


# Headers of an unmasked, final text frame (RFC 6455 §5.2), by payload length.
_HEAD1 = struct.Struct("!BB").pack
_HEAD2 = struct.Struct("!BBH").pack
_HEAD8 = struct.Struct("!BBQ").pack


class _LastFrame:
    """The last payload framed. The hub hands one bytes object to every subscriber of an
    event, so this frames each event once, not once per client (checked by identity;
    holding the payload keeps its id from being reused)."""

    __slots__ = ("payload", "frame")

    def __init__(self) -> None:
        self.payload = b""
        self.frame = b"\x81\x00"


_last = _LastFrame()


def text_frame(payload: bytes) -> bytes:
    """The whole WebSocket frame (header + payload) for a server-to-client text message."""
    last = _last
    if payload is last.payload:
        return last.frame
    n = len(payload)
    if n < 126:
        frame = _HEAD1(0x81, n) + payload
    elif n < 65536:
        frame = _HEAD2(0x81, 126, n) + payload
    else:
        frame = _HEAD8(0x81, 127, n) + payload
    last.payload, last.frame = payload, frame
    return frame


class Delays(Protocol):
    """Where a latency fault's sampler is found (phoenix.faults.Faults)."""

    delay: Callable[[], float] | None


class Connection:
    __slots__ = (
        "ws",
        "claims",
        "remote",
        "_queue",
        "_limit",
        "_writer",
        "_close",
        "_close_timeout",
        "_on_evict",
        "bytes_out",
        "closing",
        "_closer",
        "_transport",
        "_delays",
        "serial",
        "_direct",
        "_high_water",
        "_grace",
        "_own_limit",
        "_deadline",
        "_pong",
        "_ping",
        "_control",
        "heard",
        "pinged",
        "_sending",
        "reason",
        "reader",
        "receiving",
        "_handshake",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        claims: Claims,
        limit: int,
        close_timeout: float,
        transport: asyncio.Transport | None = None,
        remote: str = "",
        on_evict: Callable[[Connection], None] | None = None,
        delays: Delays | None = None,
        own_limit: int = 0,
    ) -> None:
        self.ws = ws
        self.claims = claims
        self.remote = remote
        # (due, frame, own): due is 0.0, or the loop time a latency fault holds the frame
        # until; own marks a frame of the client's own asking (a reply, a replay).
        self._queue: deque[tuple[float, bytes, bool]] = deque()
        self._limit = limit
        self._close: tuple[int, str] | None = None
        self._close_timeout = close_timeout
        self._on_evict = on_evict
        self.bytes_out = 0
        self.closing = False
        self._closer: asyncio.Task[None] | None = None
        self._transport = transport
        self._delays = delays
        self.serial = 0
        # Frames of the client's own asking still queued: they do not count towards the
        # slow-consumer limit (a resume's replay may be long), but have a cap of their
        # own, or a client that asks and never reads could grow the queue without end.
        self._grace = 0
        self._own_limit = own_limit or limit
        self._deadline: asyncio.TimerHandle | None = None
        self._pong: bytes | None = None  # the payload of the latest unanswered ping
        self._ping = False  # the heartbeat asks the writer to send a ping
        self._control: asyncio.Future[None] | None = None  # wakes a latency wait for them
        # Loop time the client was last heard from, and of our ping it has not answered
        # yet (0.0: none): phoenix.heartbeat reads them.
        self.heard = asyncio.get_running_loop().time()
        self.pinged = 0.0
        self._sending = False  # the writer is in aiohttp's send (maybe waiting on drain)
        self.reason: str | None = None  # why the connection ends (metrics.CLOSE_REASONS)
        # The handler's task, and whether it is waiting in ws.receive() now: a close we
        # start is carried out by that task (see `_shut`).
        self.reader: asyncio.Task[object] | None = None
        self.receiving = False
        self._handshake: asyncio.Future[None] | None = None
        # Writing past aiohttp's writer is only right for frames it would send as they
        # are: not compressed (compression keeps per-connection state in the writer).
        self._direct = transport is not None and not ws.compress
        self._high_water = transport.get_write_buffer_limits()[1] if transport else 0
        # The writer task runs only while there is something to send: most connections
        # take every frame on the direct path, and a task per idle connection is most of
        # what one costs beyond aiohttp's own (bench/README.md, RSS per connection).
        self._writer: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        return len(self._queue)

    def offer(self, frame: bytes) -> None:
        if self.closing:
            return
        # The hot path of every fan-out: write to the socket now when that keeps order
        # and respects backpressure. Nothing is queued (the writer task writes a frame in
        # the same step it takes it from the queue, so every earlier frame is already in
        # the transport), no latency fault holds frames, the socket is open with no close
        # frame sent, and its write buffer is under the high-water mark (past it, frames
        # queue and count towards eviction, as they would behind aiohttp's drain).
        if not self._queue and self._direct and (transport := self._transport) is not None:
            delays = self._delays
            if (
                (delays is None or delays.delay is None)
                and not transport.is_closing()
                and not self.ws.closed
                and transport.get_write_buffer_size() <= self._high_water
            ):
                transport.write(text_frame(frame))
                self.bytes_out += len(frame)
                return
        if len(self._queue) - self._grace >= self._limit:
            self._evict()
            return
        self._queue.append((self._due(), frame, False))
        self._wake()

    def send_now(self, frame: bytes) -> None:
        """A reply to the client's own command (or a replay): queued like events, so
        order holds, and counted apart from them."""
        if self.closing:
            return
        if self._grace >= self._own_limit:
            self._evict()
            return
        self._queue.append((self._due(), frame, True))
        self._grace += 1
        self._wake()

    def _due(self) -> float:
        delay = self._delays.delay if self._delays is not None else None
        return 0.0 if delay is None else asyncio.get_running_loop().time() + delay()

    def pong(self, payload: bytes) -> None:
        """Answer a protocol ping (from the writer, after what it is sending now). A
        newer ping replaces an unanswered one: one pong answers them all."""
        if self.closing:
            return
        self._pong = payload
        self._wake_for_control()

    def heard_from(self, now: float) -> None:
        """Any frame from the client (a pong, or anything else) shows it is there."""
        self.heard = now
        self.pinged = 0.0

    def check_heartbeat(self, now: float, interval: float) -> None:
        """Ping a client silent for `interval`; drop one that has not answered a ping
        within half of it (phoenix.heartbeat calls this every half interval)."""
        if self.closing:
            return
        if self.pinged:
            if now - self.pinged >= interval / 2:
                self.heartbeat_timeout(interval)
        elif now - self.heard >= interval:
            self.pinged = now
            self._ping = True
            self._wake_for_control()

    def end(self, reason: str) -> None:
        """Record why the connection ends, unless a reason is recorded already."""
        if self.reason is None:
            self.reason = reason

    def fail(self, frame: bytes, code: int, reason: str, why: str | None = None) -> None:
        """Send what is queued, then `frame`, then close with `code`; a client that does
        not read them within the close timeout is closed anyway. `why` is the metrics
        reason (by default, the code's)."""
        if self._close is not None:
            return
        self.end(why or reason_of_code(code))
        self._queue.append((0.0, frame, True))
        self.closing = True
        self._close = (code, reason)
        self._wake()
        self._deadline = asyncio.get_running_loop().call_later(self._close_timeout, self._shut_now)

    def close(self, code: int, reason: str, why: str | None = None) -> None:
        """Close now, dropping whatever is queued (a pending `fail` keeps its code)."""
        self.end(why or reason_of_code(code))
        if self._close is None:
            self._close = (code, reason)
        self._shut_now()

    def _shut_now(self) -> None:
        if self._closer is not None:
            return
        self.closing = True
        self._queue.clear()
        self._grace = 0
        self._pong = None
        self._ping = False
        # The writer may be stuck on a full socket buffer: close from a task of our own,
        # so the close happens now, not when the client reads again. A writer waiting
        # for the buffer to drain is left to wait (with nothing queued, it ends once the
        # buffer drains or the transport is cut): aiohttp's writers share one drain
        # waiter, and cancelling the writer there would cancel the close's wait with it.
        writer = self._writer
        if writer is not None and asyncio.current_task() is not writer and not self._sending:
            writer.cancel()
        self._closer = asyncio.get_running_loop().create_task(self._shut())

    def _evict(self) -> None:
        log.warning(
            "slow consumer %s (sub=%s): %d frames behind, closing with 1013",
            self.remote,
            self.claims.sub,
            len(self._queue),
        )
        self.close(Close.TRY_AGAIN_LATER, "slow consumer: outbound queue full", "slow_consumer")
        if self._on_evict is not None:
            self._on_evict(self)

    def _wake(self) -> None:
        """Something to send: start the writer, unless it runs already (it goes on until
        nothing is left, then ends)."""
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    def _wake_for_control(self) -> None:
        """A ping or pong to send: as `_wake`, and cut short a latency fault's wait."""
        self._wake()
        if self._control is not None and not self._control.done():
            self._control.set_result(None)

    async def _drain(self) -> None:
        ws, queue = self.ws, self._queue
        loop = asyncio.get_running_loop()
        try:
            while True:
                if (payload := self._pong) is not None:
                    self._pong = None
                    self._sending = True
                    await ws.pong(payload)
                    self._sending = False
                elif self._ping:
                    self._ping = False
                    self._sending = True
                    await ws.ping()
                    self._sending = False
                elif queue:
                    due = queue[0][0]
                    if due and (wait := due - loop.time()) > 0:
                        # Wait with the frame still queued, so `offer` cannot write a
                        # later frame past it (say, once the latency fault has ended);
                        # a ping or pong to send cuts the wait short (control frames may
                        # go between data frames, and the heartbeat must not starve).
                        self._control = loop.create_future()
                        await asyncio.wait((self._control,), timeout=wait)
                        self._control = None
                        continue
                    _, frame, own = queue.popleft()
                    if own:
                        self._grace -= 1
                    self._sending = True
                    await ws.send_frame(frame, WSMsgType.TEXT)
                    self._sending = False
                    self.bytes_out += len(frame)
                elif self._close is not None:
                    break
                else:
                    self._writer = None  # nothing left: the next frame starts a writer
                    return
        except (ConnectionError, RuntimeError):
            # The peer went away; the handler's read loop ends too. Nothing more is
            # sent (and no writer started again for it).
            self.closing = True
            return
        self._shut_now()  # everything up to fail()'s frame is out: now the close

    async def _shut(self) -> None:
        reader = self.reader
        if self.receiving and reader is not None and not reader.done():
            # aiohttp, asked to close while another task waits in receive(), sends its
            # close frame and drops the TCP connection at once, without the client's
            # reply; a client racing that (aiohttp's does) then reports 1006, not our
            # code. So the reading task, woken by a cancel it knows to expect, does the
            # whole handshake itself (`handshake`); this task waits for it.
            self._handshake = asyncio.get_running_loop().create_future()
            reader.cancel()
            try:
                # Bounded: a reader that ends another way (cancelled by aiohttp too)
                # resolves it in `stop`; past twice the close timeout, cut it off.
                await asyncio.wait_for(asyncio.shield(self._handshake), 2 * self._close_timeout)
                return
            except TimeoutError:
                pass
            if self._transport is not None:
                self._transport.abort()
            return
        await self._close_ws()

    def wants_handshake(self) -> bool:
        """For the reading task, on a CancelledError out of ws.receive(): whether it was
        ours (`_shut`), to be answered with `handshake` rather than raised."""
        return self._handshake is not None and not self._handshake.done()

    async def handshake(self) -> None:
        """The close handshake, run by the reading task (see `_shut`)."""
        try:
            await self._close_ws()
        finally:
            if self._handshake is not None and not self._handshake.done():
                self._handshake.set_result(None)

    async def _close_ws(self) -> None:
        code, reason = self._close or (Close.GOING_AWAY, "")
        try:
            await asyncio.wait_for(
                self.ws.close(code=code, message=reason.encode()[:120]), self._close_timeout
            )
            return
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        except asyncio.CancelledError:
            # The shared drain waiter cancelled under us (the writer task was cancelled
            # while it waited there, by `stop`): only a cancellation of this task is one.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
        # A peer that neither reads nor answers the close frame is cut off
        # (closing the transport would wait for its buffer to drain, forever).
        if self._transport is not None:
            self._transport.abort()

    def abort(self, why: str = "fault") -> None:
        """Drop the connection without a close frame, as a crashed server or a cut
        network would."""
        self.end(why)
        self.closing = True
        self._queue.clear()
        self._grace = 0
        if self._writer is not None:
            self._writer.cancel()
        if self._transport is not None:
            self._transport.abort()

    def heartbeat_timeout(self, interval: float) -> None:
        """The client did not answer the heartbeat's ping (phoenix.heartbeat): it is gone,
        or stuck and not reading. Closing the transport would wait for its write buffer
        to drain: to a client that reads nothing, never, and the connection (and its
        user's slot) would be held for good. So it is cut now."""
        if self.reason is None:
            log.warning(
                "heartbeat timeout %s (sub=%s): no pong within %g s of a ping, dropping",
                self.remote,
                self.claims.sub,
                interval / 2,
            )
        self.abort("heartbeat_timeout")

    async def closed(self) -> None:
        """Wait until a close started with `close` has gone through (or timed out)."""
        if self._closer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._closer

    async def stop(self) -> None:
        """Called by the handler when the connection is over. A close we started is
        let finish (the client's reply, or the close timeout): the handler returning
        would otherwise cut the TCP connection under it."""
        self.closing = True
        self.receiving = False
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_result(None)  # the reader is done, whatever it did
        if self._deadline is not None:
            self._deadline.cancel()
        writer = self._writer
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        await self.closed()
        transport = self._transport
        if transport is not None and transport.get_write_buffer_size():
            # Whatever closes it, a transport closes only once its buffer has drained:
            # a peer that stopped reading would hold it (and its memory) for good.
            loop = asyncio.get_running_loop()
            loop.call_later(self._close_timeout, _abort_if_stuck, transport)


def _abort_if_stuck(transport: asyncio.Transport) -> None:
    if transport.get_write_buffer_size():
        transport.abort()
