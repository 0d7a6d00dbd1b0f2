"""The floor: a bare asyncio TLS relay with tlschat's TLS settings and framing, and nothing else.

Same transport as `tlschat serve` (TLS 1.3, tlschat's suites and groups, ALPN `tlschat/1`, the
connection closed when ALPN is not `tlschat/1`) and the same frames (4-byte big-endian length +
payload), but it never decodes JSON, validates, stores or routes by address. It reads only the
4-byte length of each frame, and:

- answers the first frame of a connection (the `hello`) with a fixed `welcome`-like frame;
- relays every later frame, byte for byte, to every connection of the same group, the sender
  included (so a `send` gets an "echo" to its sender and a copy to the others, as on tlschat).

A connection's group is fixed at its hello: the nick up to its first `.` (`fan.r17` is in group
`fan`, `dm3.a` and `dm3.b` form the pair `dm3`), found with a byte search in the hello frame;
a nick without a `.` is a group of its own. The frames read from one connection in one
`data_received` call are relayed as one write per peer (one TLS write per loop turn).
No limits, no back-pressure: the lowest CPU per frame a Python asyncio TLS server can reach.

    python benchmarks/bare_relay.py --cert server.pem --key server.key --port 0
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import struct
import sys
from pathlib import Path
from typing import ClassVar

from tlschat import tls
from tlschat.protocol import ALPN

HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024
_WELCOME_BODY = b'{"type":"welcome","v":1,"server":"bare-relay","limits":{"max_frame":65536}}'
WELCOME = HEADER.pack(len(_WELCOME_BODY)) + _WELCOME_BODY
NICK = b'"nick":"'


def group_of(hello: bytes) -> bytes:
    """The group key of a hello frame: its nick up to the first `.` (a byte search, no JSON)."""
    start = hello.find(NICK)
    if start < 0:
        return b""
    start += len(NICK)
    end = hello.find(b'"', start)
    nick = hello[start:end]
    return nick.split(b".", 1)[0] if b"." in nick else nick


class Relay(asyncio.Protocol):
    groups: ClassVar[dict[bytes, list[Relay]]] = {}

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.peers: list[Relay] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None or ssl_object.selected_alpn_protocol() != ALPN:
            transport.abort()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        pos = 0
        size = len(buffer)
        frames: list[bytes] = []
        while size - pos >= 4:
            (length,) = HEADER.unpack_from(buffer, pos)
            if length == 0 or length > MAX_FRAME:
                assert self.transport is not None
                self.transport.abort()
                return
            end = pos + 4 + length
            if end > size:
                break
            if self.peers is None:
                self._hello(bytes(buffer[pos:end]))
            else:
                frames.append(bytes(buffer[pos:end]))
            pos = end
        del buffer[:pos]
        if frames and self.peers is not None:
            out = frames[0] if len(frames) == 1 else b"".join(frames)
            for peer in self.peers:
                if peer.transport is not None:
                    peer.transport.write(out)

    def _hello(self, frame: bytes) -> None:
        self.peers = self.groups.setdefault(group_of(frame), [])
        self.peers.append(self)
        assert self.transport is not None
        self.transport.write(WELCOME)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peers is not None:
            self.peers.remove(self)
        self.transport = None


async def serve(args: argparse.Namespace) -> None:
    ctx = tls.server_context(args.cert, args.key)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        Relay, args.host, args.port, ssl=ctx, backlog=1024, ssl_handshake_timeout=600
    )
    port = server.sockets[0].getsockname()[1]
    print(f"bare-relay: listening on {args.host}:{port}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
