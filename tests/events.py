"""Reads a ChatClient's events() in the background; tests wait for the events they expect."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.wire import timeout
from tlschat.client import ChatClient, Event
from tlschat.protocol import Message


class EventLog:
    """Every event a client yields, in order, collected by a task of its own."""

    def __init__(self, client: ChatClient) -> None:
        self.items: list[Event] = []
        self.ended = False
        """events() finished (the client closed for good)."""
        self._new = asyncio.Event()
        self.task = asyncio.create_task(self._run(client))

    async def _run(self, client: ChatClient) -> None:
        try:
            async for event in client.events():
                self.items.append(event)
                self._new.set()
        finally:
            self.ended = True
            self._new.set()

    async def index(
        self, predicate: Callable[[Event], bool], seconds: float = 10, start: int = 0
    ) -> int:
        """The index of the first event from `start` on that matches."""
        index = start
        async with asyncio.timeout(timeout(seconds)):
            while True:
                while index < len(self.items):
                    if predicate(self.items[index]):
                        return index
                    index += 1
                if self.ended:
                    raise AssertionError(f"events() ended; got {self.items}")
                self._new.clear()
                await self._new.wait()

    async def wait_for(
        self, predicate: Callable[[Event], bool], seconds: float = 10, start: int = 0
    ) -> Event:
        """The first event from `start` on that matches."""
        return self.items[await self.index(predicate, seconds, start)]

    async def message(self, predicate: Callable[[Message], bool], seconds: float = 10) -> Message:
        """The first message that matches."""
        event = await self.wait_for(lambda e: isinstance(e, Message) and predicate(e), seconds)
        assert isinstance(event, Message)
        return event
