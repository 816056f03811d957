"""`phoenix record`: subscribe to any server that speaks the Phoenix WebSocket API (ours
or a real Phoenix deployment) and write the events it sends, one envelope per line, in
the format `serve --replay` reads.

Each event frame is written exactly as it arrived (its bytes, not a re-serialisation),
so a recording is what the client saw. Anything else the server sends (the subscribe
reply, pongs) is not an event and is not written; an error frame is said on stderr. The
recording ends after `duration`, when the server closes the connection (its close code
is said), or on Ctrl-C, always with what arrived flushed to the file.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import IO, Any

import aiohttp
from yarl import URL


class RecordError(Exception):
    """The recording could not start or ended on an error (exit status 2)."""


def public(url: str) -> str:
    """The URL without its query, fragment or user and password: the token must not be
    printed."""
    try:
        u = URL(url)
        return str(u.with_query(None).with_fragment(None).with_user(None))
    except ValueError:
        return "the given URL"


async def record(
    url: str,
    channels: list[str],
    filters: dict[str, str],
    out: Callable[[], IO[bytes]],
    duration: float | None,
    log: IO[str] = sys.stderr,
) -> int:
    """Record until `duration` seconds have passed (None: until the server closes or the
    user interrupts); returns the number of events written. `out` opens the output when
    the first event arrives, so a failed start leaves an earlier recording as it was."""
    subscribe: dict[str, Any] = {"type": "subscribe", "id": "record", "channels": channels}
    if filters:
        subscribe["filters"] = filters
    written = 0
    loop = asyncio.get_running_loop()
    deadline = None if duration is None else loop.time() + duration
    timeout = aiohttp.ClientWSTimeout(ws_close=10.0)
    async with aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(url, timeout=timeout, autoping=True)
        except aiohttp.WSServerHandshakeError as exc:
            # Not str(exc): aiohttp's message quotes the whole URL, token and all.
            raise RecordError(
                f"cannot connect to {public(url)}: the server answered {exc.status} {exc.message}"
            ) from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise RecordError(
                f"cannot connect to {public(url)}: {type(exc).__name__}"
                + (f" ({exc.strerror})" if isinstance(exc, OSError) and exc.strerror else "")
            ) from None
        sink: IO[bytes] | None = None
        async with ws:
            await ws.send_str(json.dumps(subscribe))
            print(f"recording {', '.join(channels)} from {public(url)}", file=log)
            while True:
                left = None if deadline is None else deadline - loop.time()
                if left is not None and left <= 0:
                    break
                try:
                    msg = await ws.receive(timeout=left)
                except TimeoutError:
                    break
                if msg.type is aiohttp.WSMsgType.TEXT:
                    line = _event_line(msg.data, log)
                    if line is not None:
                        sink = sink or out()
                        sink.write(line)
                        written += 1
                elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING):
                    print(f"the server closed the connection ({ws.close_code})", file=log)
                    break
                elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    print("the connection ended", file=log)
                    break
    return written


def _event_line(text: str, log: IO[str]) -> bytes | None:
    """The line to write for one frame: an event exactly as it came, else None."""
    try:
        frame = json.loads(text)
    except ValueError:
        print(f"not JSON, skipped: {text[:80]!r}", file=log)
        return None
    if not isinstance(frame, dict):
        return None
    if frame.get("type") == "error":
        error = frame.get("error") or {}
        print(f"error from the server: {error.get('code')}: {error.get('message')}", file=log)
        if error.get("code") in ("UNAUTHORIZED", "INVALID_CHANNEL", "INVALID_MESSAGE"):
            raise RecordError(f"the server refused the subscription: {error.get('message')}")
        return None
    if frame.get("type") != "event":
        return None
    return text.encode() + b"\n"
