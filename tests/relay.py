"""A TCP relay in front of a test server: tests cut, refuse or silence a client's connection."""

from __future__ import annotations

import asyncio


class Proxy:
    """A TCP relay in front of the server, so a test can hold one client off deterministically."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.refuse = False
        """Close new connections at once (the client cannot reconnect)."""
        self.blackhole = False
        """Drop everything the server sends (a half-open connection)."""
        self.port = 0
        self.accepted = 0
        self.dropped = 0
        """Bytes from the server thrown away while `blackhole` was set."""
        self.dropped_some = asyncio.Event()
        """Set once the blackhole has swallowed something (a frame the client never sees)."""
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.refuse:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer, drop=False),
            self._pipe(up_reader, writer, drop=True),
            return_exceptions=True,
        )
        self._writers -= {writer, up_writer}

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, drop: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if drop and self.blackhole:
                    self.dropped += len(data)
                    self.dropped_some.set()
                    continue
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()

    def cut(self) -> None:
        """Drop every relayed connection."""
        for writer in list(self._writers):
            writer.transport.abort()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
