"""Coalesce bursts of state announcements (a room's member list, a public room's size)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Coalescer:
    """At most one announcement per key per `window` seconds, and always the latest state.

    The first announcement of a key goes out at once; further ones within `window` collapse
    into one sent when the window ends, built then (so it carries the state at that moment).
    Why: every join sends the whole member list to every member, so N joins in a burst cost
    O(N^2) bytes; with this, a burst costs one list per window.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._last: dict[str, float] = {}
        self._due: dict[str, asyncio.TimerHandle] = {}

    def announce(self, key: str, send: Callable[[], None]) -> None:
        """Call `send()` now, or once the window ends if one went out within it."""
        if key in self._due:
            return  # the pending one will carry the latest state
        loop = asyncio.get_running_loop()
        now = loop.time()
        last = self._last.get(key)
        if last is None or now - last >= self.window:
            self._last[key] = now
            send()
            return
        self._due[key] = loop.call_at(last + self.window, self._fire, key, send)

    def _fire(self, key: str, send: Callable[[], None]) -> None:
        del self._due[key]
        self._last[key] = asyncio.get_running_loop().time()
        send()

    def forget(self, key: str) -> None:
        """The key is gone (room deleted): drop its state and any pending announcement."""
        self._last.pop(key, None)
        handle = self._due.pop(key, None)
        if handle is not None:
            handle.cancel()
