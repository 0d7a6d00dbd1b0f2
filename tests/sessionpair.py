"""Rules through the sans-I/O core, without sockets (h11's `ConnectionPair`).

A `SessionPair` holds the real rules, a real SQLite store in a temporary directory and the
in-process hub, and gives each test client a real `Session` whose transport is a byte buffer:
`await client.request({...})` feeds the frame's bytes to the session, lets the loop turn (the
hub's flush) and returns the frames the server wrote, decoded by the client's sans-I/O end.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from tlschat.config import ServerConfig
from tlschat.protocol import encode_raw
from tlschat.sansio import ClientConnection
from tlschat.server.connection import Session
from tlschat.server.files import FileStore
from tlschat.server.hub import LocalHub
from tlschat.server.registry import Registry
from tlschat.server.rules import Context, Rules
from tlschat.server.sqlite_store import SqliteStore


class BufferTransport:
    """Just enough of an asyncio transport: what is written is kept."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def abort(self) -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True


class BufferWriter:
    def __init__(self, transport: BufferTransport) -> None:
        self.transport = transport

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        self.transport.close()

    async def wait_closed(self) -> None:
        pass


class Client:
    """One test connection: requests in, server frames out."""

    def __init__(self, session: Session, transport: BufferTransport, max_frame: int) -> None:
        self.session = session
        self.transport = transport
        self.decoder = ClientConnection(max_frame)
        self._read = 0

    async def feed(self, data: bytes) -> list[dict[str, Any]]:
        await self.session._receive(data)
        return await self.frames()

    async def request(self, frame: dict[str, Any]) -> list[dict[str, Any]]:
        return await self.feed(encode_raw(frame))

    async def frames(self) -> list[dict[str, Any]]:
        """Every frame written to this client since the last call (after the loop turns)."""
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        new = bytes(self.transport.written[self._read :])
        self._read = len(self.transport.written)
        self.decoder.receive_data(new)
        out = []
        while (frame := self.decoder.next_frame()) is not None:
            out.append(frame.model_dump(by_alias=True, exclude_none=True))
        return out


class SessionPair:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store = SqliteStore(Path(config.data_dir or ".") / "t.db")
        self.hub = LocalHub()
        self.registry = Registry()
        self.rules: Rules | None = None

    async def open(self) -> None:
        await self.store.open()
        files = FileStore(self.config, Path(self.config.data_dir or "."), self.store)
        ctx = Context(self.config, self.store, self.hub, self.registry, files, 0)
        self.rules = Rules(ctx)

    async def close(self) -> None:
        await self.store.close()

    def connect(self, ip: str = "127.0.0.1") -> Client:
        assert self.rules is not None
        transport = BufferTransport()
        loop = asyncio.get_running_loop()
        session = Session(
            self.rules,
            self.hub,
            self.config,
            None,  # type: ignore[arg-type]  # no reader: bytes are fed by hand
            BufferWriter(transport),  # type: ignore[arg-type]
            peer_ip=ip,
            accepted_at=loop.time(),
        )
        return Client(session, transport, self.config.max_frame)

    async def login(self, nick: str, **extra: Any) -> Client:
        client = self.connect()
        frames = await client.request({"type": "hello", "v": 1, "nick": nick, **extra})
        assert frames, "no reply to hello"
        assert frames[0]["type"] == "welcome", frames
        return client


def config_for(tmp_path: Path, **overrides: Any) -> ServerConfig:
    base = ServerConfig(host="127.0.0.1", port=0, data_dir=tmp_path)
    return dataclasses.replace(base, **overrides)
