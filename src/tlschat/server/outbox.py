"""A connection's outgoing queue, bounded in bytes; fan-out only enqueues, one writer drains."""

from __future__ import annotations

import asyncio
from collections import deque


class Outbox:
    """Frames waiting for the connection's writer task.

    `put()` never waits: it returns False when the frame would overflow the bound, and the
    caller disconnects that slow consumer (PROTOCOL.md: nobody else may be slowed down).
    `put_paced()` waits for room instead (history replay must never overflow it).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._items: deque[tuple[bytes, int]] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._closed = False

    def put(self, data: bytes, msg_id: int = 0) -> bool:
        if self._closed:
            return True  # the connection is going away; dropping is not an overflow
        if self.size + len(data) > self.limit and self.size > 0:
            return False
        self._items.append((data, msg_id))
        self.size += len(data)
        self._ready.set()
        return True

    async def put_paced(self, data: bytes, msg_id: int = 0, *, high: int | None = None) -> None:
        """Queue `data` once it fits under `high` bytes (default: the whole bound).

        A download passes half the bound, so the other half stays free for chat: a message
        arriving meanwhile must not find the queue full and disconnect the client.
        """
        bound = self.limit if high is None else min(high, self.limit)
        while not self._closed:
            if (self.size == 0 or self.size + len(data) <= bound) and self.put(data, msg_id):
                return
            self._room.clear()
            await self._room.wait()

    async def take(self) -> list[tuple[bytes, int]] | None:
        """Everything queued, once there is something; None when closed and drained."""
        while not self._items:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        batch = list(self._items)
        self._items.clear()
        self.size = 0
        self._room.set()
        return batch

    def close(self) -> None:
        """No more frames: the writer sends what is queued, then stops."""
        self._closed = True
        self._ready.set()
        self._room.set()
