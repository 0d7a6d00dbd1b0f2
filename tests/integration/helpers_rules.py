"""Helpers shared by the test_rules_* integration tests (the PROTOCOL.md rule-by-rule suite)."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import socket
import ssl
import struct
from typing import Any

from tests.wire import Closed, Wire, timeout

from tlschat.protocol import InvalidFrame, decode_server_frame

TS_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
SERVER_RE = re.compile(r"tlschat/\d+\.\d+\.\d+\S*")
PASSWORD = "correct horse battery staple"

# Small deadlines so the rule tests stay fast; each test raises what it needs.
FAST = {
    "login_timeout": 5.0,
    "idle_timeout": 60.0,
    "frame_timeout": 5.0,
    "handshake_timeout": 5.0,
}


class Dialer:
    """Opens Wire clients to any server (the `connect` fixture only knows the default one)."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.opened: list[Wire] = []

    async def open(
        self, server: Any, nick: str | None = None, password: str | None = None, **extra: Any
    ) -> Wire:
        wire = await Wire.open(server.port, self.ctx)
        self.opened.append(wire)
        if nick is not None:
            welcome = await wire.hello(nick, password, **extra)
            assert welcome["type"] == "welcome", welcome
            wire.welcome = welcome  # type: ignore[attr-defined]
        return wire

    async def close_all(self) -> None:
        for wire in self.opened:
            await wire.close()
        self.opened.clear()


async def drain(wire: Wire, quiet: float = 0.3) -> list[dict[str, Any]]:
    """Every frame already received or arriving until `quiet` seconds pass without one."""
    frames = list(wire.backlog)
    wire.backlog.clear()
    while True:
        try:
            frames.append(await wire._read_frame(quiet))
        except TimeoutError:
            return frames


async def drain_all(*wires: Wire, quiet: float = 0.3) -> None:
    await asyncio.gather(*(drain(w, quiet) for w in wires))


async def recv_raw(wire: Wire, seconds: float = 5) -> tuple[int, dict[str, Any]]:
    """The next frame straight off the stream, with its declared length."""
    assert not wire.backlog, wire.backlog
    head = await asyncio.wait_for(wire.reader.readexactly(4), timeout(seconds))
    (length,) = struct.unpack(">I", head)
    body = await asyncio.wait_for(wire.reader.readexactly(length), timeout(seconds))
    return length, json.loads(body)


def is_error(frame: dict[str, Any], code: str, ref: str | None = None) -> bool:
    ok = frame.get("type") == "error" and frame.get("code") == code
    ok = ok and isinstance(frame.get("message"), str) and frame["message"] != ""
    if ref is not None:
        ok = ok and frame.get("ref") == ref
    return ok


def assert_error(frame: dict[str, Any], code: str, ref: str | None = None) -> None:
    assert is_error(frame, code, ref), f"expected error {code} (ref {ref}), got {frame}"


def without(frame: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in frame.items() if k not in keys}


async def send_ref(wire: Wire, obj: dict[str, Any], ref: str) -> None:
    await wire.send({**obj, "ref": ref})


async def say(wire: Wire, to: str, text: str, ref: str | None = None) -> dict[str, Any]:
    """Send a message and return its echo (or the error), matched by `ref`."""
    ref = ref or f"say-{next(_counter)}"
    await wire.send({"type": "send", "to": to, "text": text, "ref": ref})
    return await wire.recv_match(ref=ref)


_counter = itertools.count(1)


async def messages(wire: Wire, n: int, seconds: float = 5) -> list[dict[str, Any]]:
    """The next `n` `message` frames (other frames go to the backlog)."""
    return [await wire.recv_type("message", seconds) for _ in range(n)]


async def wait_presence(wire: Wire, nick: str, online: bool, seconds: float = 5) -> None:
    frame = await wire.recv_match(seconds, type="presence", nick=nick, online=online)
    assert frame == {"type": "presence", "nick": nick, "online": online}, frame


async def tcp_closed_without_reply(port: int, seconds: float = 3) -> bool:
    """Open a plain TCP connection, send nothing: True if the server hangs up within `seconds`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        data = await asyncio.wait_for(reader.read(1024), timeout(seconds))
        return data == b""
    except TimeoutError:  # before OSError: TimeoutError is one
        return False
    except (ConnectionError, OSError):
        return True
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 1)
        except (TimeoutError, Exception):
            pass


async def tls_refused(port: int, ctx: ssl.SSLContext, seconds: float = 3) -> bool:
    """True if a TLS connection fails, or is closed by the server without a frame."""
    try:
        wire = await asyncio.wait_for(Wire.open(port, ctx), timeout(seconds))
    except TimeoutError:  # before OSError: TimeoutError is one
        return False
    except (ssl.SSLError, ConnectionError, OSError, asyncio.IncompleteReadError, EOFError):
        return True
    try:
        try:
            frame = await wire._read_frame(seconds)
        except Closed:
            return True
        except TimeoutError:
            return False
        raise AssertionError(f"refused connection got a frame: {frame}")
    finally:
        await wire.close()


async def open_small_rcvbuf(port: int, ctx: ssl.SSLContext, rcvbuf: int = 4096) -> Wire:
    """A Wire whose socket has a small receive buffer (a slow reader fills up sooner)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(sock=sock, ssl=ctx, server_hostname="localhost"), timeout(10)
    )
    return Wire(reader, writer)


async def reconnect_until_welcome(
    dialer: Dialer, server: Any, nick: str, password: str | None = None, seconds: float = 5
) -> Wire:
    """Log in, retrying while the server still sees the previous session (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout(seconds)
    while True:
        wire = await dialer.open(server)
        reply = await wire.hello(nick, password)
        if reply["type"] == "welcome":
            wire.welcome = reply  # type: ignore[attr-defined]
            return wire
        await wire.close()
        if loop.time() > deadline:
            raise AssertionError(f"could not log in again as {nick}: {reply}")
        await asyncio.sleep(0.05)


ERROR_CODES = frozenset(
    "bad_frame frame_too_large bad_request unknown_type not_logged_in version_unsupported "
    "nick_invalid nick_taken auth_required auth_failed no_such_user no_such_room room_exists "
    "room_invalid not_member already_member no_invite text_too_long too_large bad_file "
    "hash_mismatch no_such_file no_such_message forbidden banned registration_closed unavailable "
    "rate_limited internal".split()
)


def check_server_frame(frame: dict[str, Any]) -> None:
    """Every frame the server sends must be a valid PROTOCOL.md server frame."""
    try:
        decode_server_frame(json.dumps(frame).encode())
    except InvalidFrame as exc:
        raise AssertionError(f"server sent an invalid frame ({exc.code}: {exc}): {frame}") from None
    if "ref" in frame:
        assert isinstance(frame["ref"], str), frame
        assert len(frame["ref"]) <= 64, frame
    if frame["type"] == "error":
        assert frame["code"] in ERROR_CODES, frame
        assert isinstance(frame["message"], str), frame
        assert frame["message"], frame
        if frame["code"] == "rate_limited":
            assert isinstance(frame.get("retry_after_ms"), int), frame
    found = [frame] if frame["type"] == "message" else frame.get("messages", [])
    for message in found:
        assert TS_RE.fullmatch(message["ts"]), message


def install_conformance_check(monkeypatch: Any) -> None:
    """Check every frame any Wire reads during the test (see check_server_frame)."""
    original = Wire._read_frame

    async def checked(self: Wire, seconds: float) -> dict[str, Any]:
        frame = await original(self, seconds)
        check_server_frame(frame)
        return frame

    monkeypatch.setattr(Wire, "_read_frame", checked)
