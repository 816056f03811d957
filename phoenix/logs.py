"""How the server logs: the handler, the filters and the event-loop exception handler.

Everything here exists so that the log stays useful, small and free of secrets when a
client misbehaves on purpose:

- `configure` sets up the root handler for `phoenix serve`, with `Formatter`, which blanks
  any query string that would still reach a line (tokens travel in `?token=`);
- `BadRequests` turns aiohttp's traceback for an unparsable request into one line without
  the request's text, at most one a second per kind of error;
- `loop_errors` installs an event-loop exception handler that does the same for errors
  the loop reports (above all `accept()` failing at the open-file limit), and counts
  them in `phoenix_loop_errors_total{kind}`;
- `Throttle`, the "one line a second, then a count of what was held back" rule they share.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import re
import resource
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from phoenix.keys import METRICS

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
INTERVAL = 1.0  # seconds: at most one line per kind of error in this long

log = logging.getLogger("phoenix.loop")

# The errors asyncio's accept loop reports when the process (or the system) is out of
# file descriptors or memory; it stops accepting for a second and tries again.
_ACCEPT_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def configure(level: int = logging.INFO, fmt: str = "text") -> None:
    """Logging for `phoenix serve`: one handler on stderr, queries blanked, bad requests
    in one line; `fmt` "json" writes one JSON object a line for log collectors."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else Formatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, BadRequests) for f in server.filters):
        server.addFilter(BadRequests())


class Formatter(logging.Formatter):
    """Blanks query strings (`/ws?token=...` -> `/ws?[query removed]`) in the whole line,
    traceback included. The other measures keep request text out of the log; this one is
    the net under them, for a line nobody thought of (say, a bug's traceback that shows a
    URL)."""

    QUERY = re.compile(r"(?<=[\w/])\?[\w.~%+-]*=[^\s'\"<>]*")

    def format(self, record: logging.LogRecord) -> str:
        return self.clean(super().format(record))

    def clean(self, text: str) -> str:
        return self.QUERY.sub("?[query removed]", text)


class JsonFormatter(Formatter):
    """One JSON object a line: time, level, logger, message (and the traceback, if any),
    with query strings blanked as in the text format."""

    def format(self, record: logging.LogRecord) -> str:
        # Blanked before encoding: on the encoded line the blanking could eat an escape
        # and let a quoted query string end the JSON string early.
        clean = self.clean
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        entry = {
            "time": stamp.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": clean(record.getMessage()),
        }
        if record.exc_info:
            entry["traceback"] = clean(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=True)  # escapes even a lone surrogate


class Throttle:
    """At most one line per key per `interval`: the first event of a quiet key is logged
    (`hit` says True), the ones after it within the interval are only counted, and when the
    interval ends the count is logged in one line (`summary`) if there was any, opening
    another interval. A flood costs one line a second per key, and its end is reported."""

    def __init__(self, interval: float = INTERVAL, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.clock = clock
        # key -> [when its open interval began, events held back since, summary]
        self._open: dict[str, list[Any]] = {}

    def hit(self, key: str, summary: Callable[[int, float], None]) -> bool:
        """True: log this event now. False: it was counted; `summary(count, seconds)` will
        report it when the interval ends (or at `flush`)."""
        now = self.clock()
        state = self._open.get(key)
        if state is not None and now < state[0] + self.interval:
            state[1] += 1
            return False
        if state is not None and state[1]:
            # No loop ran the timer (logging from outside one): report late, not never.
            summary(state[1], now - state[0])
        self._start(key, now, summary)
        return True

    def flush(self) -> None:
        """Report what is held back now (at shutdown: a count is never lost)."""
        now = self.clock()
        for began, held, summary in self._open.values():
            if held:
                summary(held, now - began)
        self._open.clear()

    def _start(self, key: str, now: float, summary: Callable[[int, float], None]) -> None:
        state = self._open[key] = [now, 0, summary]
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_later(self.interval, self._end, key, state)

    def _end(self, key: str, state: list[Any]) -> None:
        if self._open.get(key) is not state:
            return  # flushed, or a late hit has begun another interval already
        del self._open[key]
        began, held, summary = state
        if not held:
            return
        summary(held, self.clock() - began)
        self._start(key, self.clock(), summary)  # the flood may go on: keep counting


class BadRequests(logging.Filter):
    """On the `aiohttp.server` logger: a request aiohttp could not parse (a line over
    8 KB, a duplicate Host header, bytes that are not HTTP) becomes one line,

        bad HTTP request from 127.0.0.1: LineTooLong

    instead of a traceback whose exception text quotes the request, query string and
    token included. Any client can send these, as fast as it likes: one line a second per
    kind, and a count of the rest."""

    def __init__(self, throttle: Throttle | None = None) -> None:
        super().__init__()
        self.throttle = throttle or Throttle()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        kind = type(exc).__name__
        args = record.args if isinstance(record.args, tuple) else ()
        peer = args[0] if len(args) == 1 and isinstance(args[0], str) else "unknown peer"
        logger = logging.getLogger(record.name)

        def summary(count: int, seconds: float) -> None:
            logger.warning("%d more bad HTTP requests (%s) in the last %.1fs", count, kind, seconds)

        if not self.throttle.hit(kind, summary):
            return False
        # Rewritten in place: the exception (and its text) never reaches a handler.
        record.msg = "bad HTTP request from %s: %s"
        record.args = (peer, kind)
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def loop_error_kind(context: dict[str, Any]) -> str:
    """The label a loop error is counted and throttled under."""
    exc = context.get("exception")
    message = str(context.get("message", ""))
    if isinstance(exc, OSError) and exc.errno in _ACCEPT_ERRNOS and "accept" in message:
        return "accept"
    # After each of those failures asyncio schedules `_start_serving` a second later to
    # listen again; at shutdown the listening socket is closed by then, and each of those
    # retries fails ("Invalid file descriptor: -1"). Harmless, and as many as the failures.
    callback = getattr(context.get("handle"), "_callback", None)
    if getattr(callback, "__name__", "") == "_start_serving":
        return "accept_retry"
    return type(exc).__name__ if exc is not None else "message"


async def loop_errors(app: web.Application) -> AsyncIterator[None]:
    """A cleanup context: installs the throttling loop exception handler for the rest of
    the loop's life (not only the app's: accept retries still fire after the app's
    cleanup, while run_app finishes), and reports the counts held back at cleanup."""
    loop = asyncio.get_running_loop()
    handler = LoopErrors(app[METRICS].loop_errors, loop.get_exception_handler())
    loop.set_exception_handler(handler)
    yield
    # The last counts, before the loop (and the timers that would report them) ends.
    handler.throttle.flush()
    for f in logging.getLogger("aiohttp.server").filters:
        if isinstance(f, BadRequests):
            f.throttle.flush()


class LoopErrors:
    """The event loop's exception handler.

    At the open-file limit asyncio's accept loop reports every failed `accept()` with a
    traceback, and re-arms itself once per failure: 400 connection attempts once wrote
    139,519 tracebacks (62 MB) in 47 s. Here the first one is a single line that says what
    is wrong, the rest are counted (metric and a line a second). Other loop errors keep
    their traceback the first time (they are bugs) through the handler that was there
    before, and are throttled the same way.
    """

    def __init__(self, counter: Any, previous: Any = None, throttle: Throttle | None = None):
        self.counter = counter
        self.previous = previous
        self.throttle = throttle or Throttle()

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        kind = loop_error_kind(context)
        self.counter.labels(kind).inc()

        level = logging.DEBUG if kind == "accept_retry" else logging.ERROR

        def summary(count: int, seconds: float) -> None:
            log.log(level, "%d more event-loop errors (%s) in the last %.1fs", count, kind, seconds)

        if not self.throttle.hit(kind, summary):
            return
        if kind == "accept":
            exc = context["exception"]
            log.error(
                "cannot accept connections: %s (the open-file limit is %d); new ones wait in "
                "the listen backlog until others close (raise ulimit -n if this is real load)",
                exc.strerror or exc,
                resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            )
        elif kind == "accept_retry":
            log.debug("accept() retry after running out of files: %s", context.get("exception"))
        elif self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)
