"""Per-connection message rate limit: a token bucket, plus the rule that closes a client
which keeps on sending past it.

Pure: the caller passes the time, so tests and faults (a rate-limit squeeze) drive it.
"""

from __future__ import annotations

import math
from collections import deque


class TokenBucket:
    """`rate` messages per second, with bursts up to `rate` (one second's worth), and
    never less than one message: below 1/s the bucket still fills to one whole token,
    so one message goes through every 1/rate seconds."""

    __slots__ = ("rate", "capacity", "_tokens", "_at")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self._tokens = self.capacity
        self._at = now

    def take(self, now: float) -> float:
        """Take one token. Returns 0.0 when allowed, else seconds until one is free."""
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate

    def set_rate(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self._tokens = min(self._tokens, self.capacity)


class Flood:
    """Counts rejected messages in a sliding window; too many means close (4029)."""

    __slots__ = ("limit", "window", "_times")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        # Made at the first rejection: an empty deque is 600 bytes, on every connection.
        self._times: deque[float] | None = None

    def reject(self, now: float) -> bool:
        """Record one rejection; True when the client has now gone over the line."""
        if self._times is None:
            self._times = deque()
        self._times.append(now)
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        return len(self._times) > self.limit


def retry_after_ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))
