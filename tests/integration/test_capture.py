"""Encryption evidence: capture a real chat on loopback and show no message crosses it in clear.

The capture is read with Wireshark's tshark. The positive control decrypts the very same capture
with the server's `--keylog` file and must find the messages, so the negative checks cannot pass
because the capture missed the traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import struct
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.wire import Wire, timeout

TSHARK = shutil.which("tshark")
DUMPCAP = shutil.which("dumpcap")

pytestmark = [
    pytest.mark.skipif(
        TSHARK is None or DUMPCAP is None,
        reason="needs tshark and dumpcap (Debian package tshark; .ci/run installs it)",
    ),
    pytest.mark.store_agnostic,
]

TLS13 = "0x0304"
TLS13_SUITES = {"0x1301", "0x1302", "0x1303"}
GROUPS = {"29", "23", "24"}  # x25519, secp256r1, secp384r1 (IANA code points, in decimal)


# --- capturing ----------------------------------------------------------------------------------


class Capture:
    """dumpcap on the loopback interface, limited to one TCP port.

    dumpcap writes to a pipe (`-w -`), where it flushes every packet, so the test can tell when a
    packet has been captured: it waits for its own probe connections to show up.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.data = bytearray()
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._stderr = b""

    async def start(self) -> None:
        assert DUMPCAP is not None
        self._proc = await asyncio.create_subprocess_exec(
            DUMPCAP, "-q", "-i", "lo", "-f", f"tcp port {self.port}", "-w", "-",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())
        # The file header comes once the interface is open; then a probe proves packets flow.
        await self._wait_for(lambda: len(self.data) > 0, "the pcapng header")
        await self.mark()

    async def _read(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        while chunk := await self._proc.stdout.read(65536):
            self.data.extend(chunk)

    async def mark(self) -> None:
        """Open and close a TCP connection to the port; return once dumpcap has written it.

        Packets are written in the order they are captured, so everything sent before the
        probe is in `data` afterwards. The probe is recognised by its TCP header's two ports.
        """
        before = len(self.data)
        _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        ports = struct.pack(">HH", writer.get_extra_info("sockname")[1], self.port)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        await self._wait_for(lambda: ports in self.data[before:], "the probe connection")

    async def _wait_for(self, condition: Any, what: str) -> None:
        assert self._proc is not None
        async with asyncio.timeout(timeout(20)):
            while not condition():
                if self._proc.returncode is not None or (self._reader and self._reader.done()):
                    await self.stop()
                    raise AssertionError(f"dumpcap stopped before {what}: {self._stderr!r}")
                await asyncio.sleep(0.02)

    async def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(timeout(20)):
                if self._reader is not None:
                    await self._reader
                assert proc.stderr is not None
                self._stderr = await proc.stderr.read()
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    def save(self, path: Path) -> Path:
        path.write_bytes(bytes(self.data))
        return path


# --- reading the capture with tshark -------------------------------------------------------------


def tshark(pcap: Path, port: int, *args: str) -> str:
    """Run tshark on the capture; the port is decoded as TLS (it is not a well-known TLS port)."""
    assert TSHARK is not None
    result = subprocess.run(
        [TSHARK, "-r", str(pcap), "-d", f"tcp.port=={port},tls", *args],
        capture_output=True, text=True, timeout=timeout(60), check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


@dataclass(frozen=True)
class ServerHello:
    stream: int
    supported_version: str
    suite: str
    group: str


def server_hellos(pcap: Path, port: int) -> list[ServerHello]:
    out = tshark(
        pcap, port,
        "-Y", "tls.handshake.type == 2",
        "-T", "fields",
        "-e", "tcp.stream",
        "-e", "tls.handshake.extensions.supported_version",
        "-e", "tls.handshake.ciphersuite",
        "-e", "tls.handshake.extensions_key_share_group",
    )  # fmt: skip
    return [
        ServerHello(int(s), v, c, g)
        for s, v, c, g in (line.split("\t") for line in out.splitlines())
    ]


def tcp_streams(pcap: Path, port: int) -> list[int]:
    out = tshark(pcap, port, "-T", "fields", "-e", "tcp.stream")
    return sorted({int(line) for line in out.split()})


_FILTER = re.compile(r"^Filter: tcp\.stream eq (\d+)$")
_HEX = re.compile(r"^\t?([0-9a-f]+)$")


def follow(pcap: Path, port: int, kind: str, streams: list[int], *options: str) -> dict[int, bytes]:
    """The payload of each stream as `tshark -z follow,KIND,raw` shows it (both directions)."""
    args = [*options, "-q"]
    for stream in streams:
        args += ["-z", f"follow,{kind},raw,{stream}"]
    found: dict[int, bytearray] = {}
    current: bytearray | None = None
    for line in tshark(pcap, port, *args).splitlines():
        if match := _FILTER.match(line):
            current = found.setdefault(int(match.group(1)), bytearray())
        elif line.startswith("====="):
            current = None
        elif current is not None and (match := _HEX.match(line)):
            current.extend(bytes.fromhex(match.group(1)))
    assert sorted(found) == sorted(streams), f"tshark followed {sorted(found)}, not {streams}"
    return {stream: bytes(data) for stream, data in found.items()}


# --- the test ------------------------------------------------------------------------------------


async def chat(port: int, ctx: Any, dm_marker: str, group_marker: str) -> None:
    """alice sends bob a DM and a group message; bob receives both."""
    alice = await Wire.open(port, ctx)
    bob = await Wire.open(port, ctx)
    try:
        assert (await alice.hello("alice"))["type"] == "welcome"
        assert (await bob.hello("bob"))["type"] == "welcome"
        echo = await alice.request({"type": "send", "to": "@bob", "text": dm_marker})
        assert echo["type"] == "message", echo
        assert (await bob.recv_match(type="message", to="@bob"))["text"] == dm_marker
        joined = await alice.request({"type": "create", "room": "den", "invite": ["bob"]})
        assert joined["type"] == "joined", joined
        await bob.recv_type("invited")
        assert (await bob.request({"type": "accept", "room": "den"}))["type"] == "joined"
        echo = await alice.request({"type": "send", "to": "#den", "text": group_marker})
        assert echo["type"] == "message", echo
        assert (await bob.recv_match(type="message", to="#den"))["text"] == group_marker
    finally:
        await alice.close()
        await bob.close()


async def test_chat_on_the_wire_is_tls13_and_unreadable_without_the_key_log(
    start_server: Any, client_ctx: Any, tmp_path: Path
) -> None:
    keylog = tmp_path / "keylog.txt"
    server = await start_server(keylog=keylog)
    dm_marker = f"dm-marker-{uuid.uuid4().hex}"
    group_marker = f"group-marker-{uuid.uuid4().hex}"

    capture = Capture(server.port)
    await capture.start()
    try:
        await chat(server.port, client_ctx, dm_marker, group_marker)
        await capture.mark()  # everything above is now in the capture
    finally:
        await capture.stop()
    pcap = capture.save(tmp_path / "chat.pcapng")
    port = server.port

    # (a) Both TLS connections negotiated TLS 1.3, an allowed suite and an allowed group.
    hellos = await asyncio.to_thread(server_hellos, pcap, port)
    assert len(hellos) == 2, hellos  # alice and bob; the probes never start TLS
    for hello in hellos:
        assert hello.supported_version == TLS13, hello
        assert hello.suite in TLS13_SUITES, hello
        assert hello.group in GROUPS, hello
    tls_streams = sorted(hello.stream for hello in hellos)

    # (b) Neither the raw packets nor the reassembled TCP streams hold a message or a frame.
    raw = pcap.read_bytes()
    streams = await asyncio.to_thread(tcp_streams, pcap, port)
    reassembled = await asyncio.to_thread(follow, pcap, port, "tcp", streams)
    for stream in tls_streams:
        assert len(reassembled[stream]) > 1000, "the TLS stream was not captured"
    for marker in (dm_marker, group_marker):
        needle = marker.encode()
        assert needle not in raw, f"{marker} is in clear in the raw packets"
        for stream, data in reassembled.items():
            assert needle not in data, f"{marker} is in clear in TCP stream {stream}"
    assert b'"type"' not in raw, "a JSON frame is in clear in the raw packets"

    # (c) Positive control: with the key log, tshark decrypts the same capture and finds both
    # messages, in alice's stream (sent) and in bob's (received).
    assert keylog.stat().st_size > 0
    decrypted = await asyncio.to_thread(
        follow, pcap, port, "tls", tls_streams, "-o", f"tls.keylog_file:{keylog}"
    )
    for marker in (dm_marker, group_marker):
        holders = sorted(s for s, data in decrypted.items() if marker.encode() in data)
        assert holders == tls_streams, f"{marker} decrypted in streams {holders}"
