"""One ordered message stream from several writers (nodes); no I/O.

Synapse's "streams" idea (its `MultiWriterIdGenerator`), as docs/architecture.md "Several nodes"
explains: ids come from one sequence in the shared store; each writer publishes its *position*,
an id below which none of its own writes is still unfinished; a reader releases a message only
once every live writer's position has reached it, then in id order. Two nodes that commit ids 10
and 11 and publish them as 11, 10 are released as 10, 11.

`WriterPosition` is the writer's side, `StreamOrder` the reader's. Both are plain data: the Redis
hub feeds them what arrives and acts on what they return, and unit tests drive them directly.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")


class WriterPosition:
    """This node's position as a writer: an id such that every id it will still commit is above.

    A write in flight was given (or will be given) an id above whatever the node knew of when the
    write began, because the sequence only grows; so the position is the smallest of those
    "known at start" marks, or, with nothing in flight, the newest id the node knows of at all.
    """

    def __init__(self, known: int = 0) -> None:
        self.known = known
        """The newest id this node knows exists: its own, or any other node's id or position."""
        self._in_flight: Counter[int] = Counter()
        """For each write in flight, `known` when it began (how many began at that mark)."""

    def saw(self, msg_id: int) -> None:
        """An id (or another writer's position) exists: call for every one seen."""
        if msg_id > self.known:
            self.known = msg_id

    def begin(self) -> int:
        """A write that takes an id is about to start; pass the ticket to `end` when it is over
        (committed or failed). Between `begin` and `end` the position cannot pass the ticket."""
        ticket = self.known
        self._in_flight[ticket] += 1
        return ticket

    def end(self, ticket: int) -> None:
        left = self._in_flight[ticket] - 1
        if left > 0:
            self._in_flight[ticket] = left
        else:
            del self._in_flight[ticket]

    @property
    def position(self) -> int:
        if self._in_flight:
            return min(self._in_flight)
        return self.known

    def busy(self) -> bool:
        return bool(self._in_flight)


@dataclass(frozen=True)
class Release(Generic[Item]):
    """What `StreamOrder.release()` lets go: messages in increasing id order, all at or below
    `upto`. If `complete` is false, some id in (`after`, `upto`] never arrived: either the
    sequence skipped it (a rolled-back write) or its notification was lost, and only the store
    can tell (`missing()`)."""

    after: int
    upto: int
    items: list[tuple[int, Item]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return len(self.items) == self.upto - self.after

    def missing(self) -> list[int]:
        """The ids of (`after`, `upto`] that no notification carried (small ranges only: the
        caller asks the store for messages in the range instead when it is large)."""
        have = {msg_id for msg_id, _ in self.items}
        return [i for i in range(self.after + 1, self.upto + 1) if i not in have]


class StreamOrder(Generic[Item]):
    """The reader's side: messages and writer positions in, messages in id order out.

    Feed it in the order the notifications arrive (one pub/sub channel gives every node the same
    order); after each feeding call `release()` and deliver what it returns. Nothing is released
    while no writer is known, and a message at or below what was already released is dropped
    (a duplicate, or one that came after its writer was declared dead).
    """

    def __init__(self, start: int = 0) -> None:
        self.released = start
        """Every id at or below this has been released (or was history when we started)."""
        self.positions: dict[str, int] = {}
        """Live writer -> its latest position."""
        self._pending: list[tuple[int, Item]] = []
        self._pending_ids: set[int] = set()
        self.dropped = 0
        """Messages that arrived too late to be released in order (counted for the logs)."""

    def expect(self, writer: str) -> None:
        """`writer` is alive but has not spoken yet: hold everything new until it does."""
        self.positions.setdefault(writer, self.released)

    def position(self, writer: str, position: int) -> None:
        """`writer` says none of its unfinished writes is at or below `position`."""
        if position > self.positions.get(writer, -1):
            self.positions[writer] = position

    def message(self, writer: str, msg_id: int, item: Item, position: int) -> None:
        """A message of `writer` (id `msg_id`), published when its position was `position`."""
        # Not max(position, msg_id): another write of `writer` may still be in flight below it.
        self.position(writer, position)
        if msg_id <= self.released or msg_id in self._pending_ids:
            self.dropped += msg_id <= self.released
            return
        self._pending_ids.add(msg_id)
        heapq.heappush(self._pending, (msg_id, item))

    def writer_gone(self, writer: str) -> None:
        """`writer` was declared dead: it no longer holds the stream back. What it committed and
        never published shows up as missing ids in the next release."""
        self.positions.pop(writer, None)

    def stable(self) -> int:
        """The id every live writer has passed: everything up to it is committed."""
        if not self.positions:
            return self.released
        return max(self.released, min(self.positions.values()))

    def release(self) -> Release[Item]:
        """The messages that may go now, in id order; `released` moves to `upto`."""
        upto = self.stable()
        after = self.released
        items: list[tuple[int, Item]] = []
        pending = self._pending
        while pending and pending[0][0] <= upto:
            msg_id, item = heapq.heappop(pending)
            self._pending_ids.discard(msg_id)
            items.append((msg_id, item))
        self.released = upto
        return Release(after, upto, items)

    def held(self) -> int:
        """How many messages wait for a writer's position."""
        return len(self._pending)
