"""Token buckets and sliding-window counters for PROTOCOL.md "Limits and abuse"; no I/O."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class TokenBucket:
    """`burst` tokens, refilled at `rate` per second. `take()` returns 0.0 when allowed, else the
    seconds to wait before the same request would be."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self._clock = clock
        self._last = clock()

    def take(self, cost: float = 1.0) -> float:
        now = self._clock()
        self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate)
        self._last = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate


class FailureWindow:
    """At most `limit` failures per key within `window` seconds (failed logins per nick, per IP)."""

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._events: dict[str, deque[float]] = {}

    def _prune(self, key: str, now: float) -> deque[float]:
        events = self._events.get(key)
        if events is None:
            return deque()
        while events and now - events[0] >= self.window:
            events.popleft()
        if not events:
            del self._events[key]
        return events

    def blocked_for(self, key: str) -> float:
        """0.0 if `key` may try again now, else the seconds until it may."""
        now = self._clock()
        events = self._prune(key, now)
        if len(events) < self.limit:
            return 0.0
        return self.window - (now - events[-self.limit])

    def record(self, key: str) -> None:
        now = self._clock()
        self._prune(key, now)
        self._events.setdefault(key, deque()).append(now)
