"""A raw-wire test client: speaks frames as plain dicts over real TLS, to test the server's rules."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import ssl
import struct
from typing import Any

from tlschat.protocol import HEADER

TIMEOUT_FACTOR = float(os.environ.get("TLSCHAT_TEST_TIMEOUT_FACTOR", "1"))
"""Scale every deadline (slow CI machines: set it above 1)."""


def timeout(seconds: float) -> float:
    return seconds * TIMEOUT_FACTOR


class Closed(Exception):
    """The server closed the connection."""


class Wire:
    """One TLS connection to the server under test. Frames in and out are dicts."""

    _refs = itertools.count(1)

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.backlog: list[dict[str, Any]] = []
        """Frames read while looking for another one (by `recv_type` / `request`)."""

    @classmethod
    async def open(
        cls,
        port: int,
        ctx: ssl.SSLContext,
        host: str = "127.0.0.1",
        server_hostname: str = "localhost",
        local: str | None = None,
    ) -> Wire:
        """`local`: the source address (another 127.x address, to act as another host)."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host,
                port,
                ssl=ctx,
                server_hostname=server_hostname,
                local_addr=(local, 0) if local else None,
            ),
            timeout(10),
        )
        return cls(reader, writer)

    async def send(self, obj: dict[str, Any]) -> None:
        body = json.dumps(obj).encode()
        await self.send_bytes(HEADER.pack(len(body)) + body)

    async def send_payload(self, payload: bytes) -> None:
        await self.send_bytes(HEADER.pack(len(payload)) + payload)

    async def send_bytes(self, raw: bytes) -> None:
        self.writer.write(raw)
        await self.writer.drain()

    async def _read_frame(self, seconds: float) -> dict[str, Any]:
        try:
            head = await asyncio.wait_for(self.reader.readexactly(4), timeout(seconds))
            (length,) = struct.unpack(">I", head)
            body = await asyncio.wait_for(self.reader.readexactly(length), timeout(seconds))
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as exc:
            raise Closed(str(exc)) from exc
        frame: dict[str, Any] = json.loads(body)
        return frame

    async def recv(self, seconds: float = 5) -> dict[str, Any]:
        """The next frame (from the backlog first)."""
        if self.backlog:
            return self.backlog.pop(0)
        return await self._read_frame(seconds)

    async def recv_match(self, seconds: float = 5, **want: Any) -> dict[str, Any]:
        """The first frame whose members equal `want`; frames skipped go to the backlog."""
        for i, frame in enumerate(self.backlog):
            if all(frame.get(k) == v for k, v in want.items()):
                return self.backlog.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout(seconds)
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"no frame matching {want}; backlog {self.backlog[-5:]}")
            frame = await self._read_frame(left / TIMEOUT_FACTOR)
            if all(frame.get(k) == v for k, v in want.items()):
                return frame
            self.backlog.append(frame)

    async def recv_type(self, kind: str, seconds: float = 5) -> dict[str, Any]:
        return await self.recv_match(seconds, type=kind)

    async def request(self, obj: dict[str, Any], seconds: float = 5) -> dict[str, Any]:
        """Send `obj` with a fresh `ref` and return the server's direct reply (matched by `ref`)."""
        ref = f"r{next(self._refs)}"
        await self.send({**obj, "ref": ref})
        return await self.recv_match(seconds, ref=ref)

    async def hello(self, nick: str, password: str | None = None, **extra: Any) -> dict[str, Any]:
        """Log in; return the `welcome` (or the `error`)."""
        frame: dict[str, Any] = {"type": "hello", "v": 1, "nick": nick, **extra}
        if password is not None:
            frame["password"] = password
        return await self.request(frame, seconds=15)

    async def no_frame(self, seconds: float = 0.5) -> None:
        """Assert that nothing arrives within `seconds` (for 'this was not delivered')."""
        assert not self.backlog, f"unexpected frames {self.backlog}"
        try:
            frame = await self._read_frame(seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame {frame}")

    async def closed_by_server(self, seconds: float = 5) -> bool:
        """Read until EOF; True if the server closed within `seconds`."""
        try:
            while True:
                data = await asyncio.wait_for(self.reader.read(65536), timeout(seconds))
                if not data:
                    return True
        except (ConnectionError, ssl.SSLError):
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 2)
        except (TimeoutError, Exception):
            pass
