"""The fan-out hub: who is subscribed to what, with which filters, and a bounded history
per channel for resume after reconnect.

No aiohttp here. The hub hands an already serialised frame to each matching subscriber
through `Subscriber.offer`, which must not block: the subscriber queues it and its own
writer sends it. Filters read the event's small `tags`, never its payload.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from simulator.events import CHANNELS

_NO_FILTERS: dict[str, str] = {}


class Subscriber(Protocol):
    def offer(self, frame: bytes) -> None:
        """Queue a frame for sending; never blocks, never raises."""


@dataclass(slots=True)
class Published:
    """One event ready for the wire: serialised once, whatever the number of readers."""

    seq: int
    channel: str
    name: str
    tags: dict[str, str]
    frame: bytes
    # For metrics.update / cost.update: the frame narrowed to one experiment.
    narrow: Callable[[str], bytes] | None = None
    at: float = 0.0  # wall (monotonic) time of publication, for history age
    time: float = 0.0  # simulated time of the event (the broker carries it to gateways)


def matches(filters: dict[str, str], tags: dict[str, str]) -> bool:
    """A filter key narrows the events that carry it; events without it pass."""
    for key, want in filters.items():
        have = tags.get(key)
        if have is not None and have != want:
            return False
    return True


@dataclass(slots=True)
class ChannelStats:
    published: int = 0
    delivered: int = 0


@dataclass(slots=True)
class _History:
    events: deque[Published] = field(default_factory=deque)
    evicted_upto: int = 0  # highest seq no longer held


class Hub:
    def __init__(
        self,
        history_size: int = 0,
        history_age: float = 0.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._subs: dict[str, dict[Subscriber, dict[str, str]]] = {c: {} for c in CHANNELS}
        self._history = {c: _History() for c in CHANNELS}
        self._history_size = history_size
        self._history_age = history_age
        self._clock = clock or (lambda: 0.0)
        self.last_seq = 0
        # The highest id handed out, published or not yet (a fault may be holding it).
        self.issued = 0
        # The first id of this epoch (phoenix.gateway): an id before it is another run's.
        self.floor = 0
        self.stats = {c: ChannelStats() for c in CHANNELS}

    # --- subscriptions ---------------------------------------------------------

    def subscribe(self, sub: Subscriber, channels: Iterable[str], filters: dict[str, str]) -> None:
        # Most subscribe with no filters: they share one empty dict (never mutated)
        # rather than hold one per channel each.
        kept = dict(filters) if filters else _NO_FILTERS
        for channel in channels:
            self._subs[channel][sub] = kept

    def unsubscribe(self, sub: Subscriber, channels: Iterable[str]) -> None:
        for channel in channels:
            self._subs[channel].pop(sub, None)

    def drop(self, sub: Subscriber) -> None:
        for subs in self._subs.values():
            subs.pop(sub, None)

    def channels_of(self, sub: Subscriber) -> set[str]:
        return {c for c, subs in self._subs.items() if sub in subs}

    def history_length(self, channel: str) -> int:
        return len(self._history[channel].events)

    def subscriber_count(self, channel: str) -> int:
        return len(self._subs[channel])

    # --- publishing ------------------------------------------------------------

    def publish(self, event: Published) -> int:
        """Hand the event to every matching subscriber; returns how many got it."""
        # Not `= event.seq`: a reorder fault publishes ids out of order on purpose.
        if event.seq > self.last_seq:
            self.last_seq = event.seq
        event.at = self._clock()
        self._remember(event)
        self.stats[event.channel].published += 1
        return self.deliver(event)

    def deliver(self, event: Published) -> int:
        """Fan out only (no history): `publish` uses it, and so does a duplicate fault."""
        stats = self.stats[event.channel]
        subs = list(self._subs[event.channel].items())
        delivered = len(subs)
        if event.narrow is None:
            # The common case, kept lean (it runs once per subscriber): one frame for all.
            frame, tags = event.frame, event.tags
            for sub, filters in subs:
                if filters and not matches(filters, tags):
                    delivered -= 1
                    continue
                sub.offer(frame)
        else:
            narrowed: dict[str, bytes] = {}
            for sub, filters in subs:
                if filters and not matches(filters, event.tags):
                    delivered -= 1
                    continue
                sub.offer(self._frame_for(event, filters, narrowed))
        stats.delivered += delivered
        return delivered

    @staticmethod
    def _frame_for(event: Published, filters: dict[str, str], cache: dict[str, bytes]) -> bytes:
        exp = filters.get("experiment_id")
        if exp is None or event.narrow is None:
            return event.frame
        frame = cache.get(exp)
        if frame is None:
            frame = cache[exp] = event.narrow(exp)
        return frame

    # --- history and resume ----------------------------------------------------

    def _remember(self, event: Published) -> None:
        if self._history_size <= 0:
            return
        hist = self._history[event.channel]
        events = hist.events
        events.append(event)
        if len(events) > self._history_size:  # one in, at most one out
            # max: under a reorder fault, seqs arrive out of order.
            seq = events.popleft().seq
            if seq > hist.evicted_upto:
                hist.evicted_upto = seq
        if self._history_age > 0 and events[0].at < event.at - self._history_age:
            self._expire(hist, event.at)

    def _expire(self, hist: _History, now: float | None = None) -> None:
        if self._history_age <= 0:
            return
        oldest_allowed = (self._clock() if now is None else now) - self._history_age
        while hist.events and hist.events[0].at < oldest_allowed:
            hist.evicted_upto = max(hist.evicted_upto, hist.events.popleft().seq)

    def restore(self, event: Published, at: float) -> None:
        """Into the history only, published `at` (monotonic) elsewhere: a gateway
        joining loads the history the broker holds."""
        if event.seq > self.last_seq:
            self.last_seq = event.seq
        event.at = at
        self._remember(event)

    def forget(self, channel: str, upto: int) -> None:
        """Events of `channel` up to `upto` were missed (the broker lost them): no replay
        may reach across them."""
        hist = self._history[channel]
        hist.events.clear()
        hist.evicted_upto = max(hist.evicted_upto, upto)

    def expect(self, seq: int) -> None:
        """Ids up to `seq` have been handed out (a gateway learns of them before it reads
        them): a resume from any of them is not refused; what it lacks arrives live."""
        self.issued = max(self.issued, seq)

    def new_epoch(self, base: int) -> None:
        """Another run of the engine starts at id `base`: nothing before it is resumable."""
        for hist in self._history.values():
            hist.events.clear()
            hist.evicted_upto = base - 1
        self.floor = base
        self.last_seq = self.issued = base - 1

    def recent(self, channel: str, names: set[str] | None, limit: int) -> list[bytes]:
        """The last `limit` events of `channel` still held (of the given names), oldest
        first: the page's charts start from these instead of from nothing."""
        hist = self._history[channel]
        self._expire(hist)
        out: list[bytes] = []
        for event in reversed(hist.events):
            if names is None or event.name in names:
                out.append(event.frame)
                if len(out) >= limit:
                    break
        out.reverse()
        return out

    def replay(
        self, channel: str, since: int, filters: dict[str, str]
    ) -> list[tuple[int, bytes]] | None:
        """Every event of `channel` after seq `since` that matches `filters`, in order;
        None when the history no longer reaches back that far (never a partial replay)."""
        # An id past any handed out is from another run of the server. One handed out
        # but held back by a fault is fine: it arrives live when the fault lets it go.
        if self._history_size <= 0 or since > max(self.last_seq, self.issued):
            return None
        if since < self.floor:
            return None
        hist = self._history[channel]
        self._expire(hist)
        if since < hist.evicted_upto:
            return None
        cache: dict[str, bytes] = {}
        return [
            (e.seq, self._frame_for(e, filters, cache))
            for e in hist.events
            if e.seq > since and (not filters or matches(filters, e.tags))
        ]
