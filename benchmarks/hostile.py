"""What the hardening of issue 9 buys, measured against a real daemon (loopback only).

Prints: how long a prompt login takes during a silent-connection flood from 40 addresses;
how many password checks 15 parallel guessing connections get in a minute; the daemon's peak
memory while checking a 7071x7071 PNG (alone and two at once); how long another user's small
image waits behind two GIF bombs.

    python benchmarks/hostile.py
"""

from __future__ import annotations

import asyncio
import io
import resource
import signal
import socket
import struct
import tempfile
import time
from pathlib import Path

from daemon_process import start_daemon
from PIL import Image

from tlschat import tls
from tlschat.client import ChatClient, Trust
from tlschat.protocol import RequestFailed

PASSWORD = "correct horse battery staple"


def peak_rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, KiB."""
    found = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
    return found["VmRSS"], found["VmHWM"]


def client(port: int, cafile: Path, nick: str, password: str | None = None) -> ChatClient:
    return ChatClient(
        "127.0.0.1", port, nick, password=password, trust=Trust(cafile=cafile), reconnect=False
    )


def flood(port: int, addresses: int, per_address: int) -> list[socket.socket]:
    socks = []
    for n in range(addresses):
        for _ in range(per_address):
            s = socket.socket()
            s.bind((f"127.0.0.{2 + n}", 0))
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            socks.append(s)
    return socks


async def login_during_flood(port: int, cafile: Path) -> list[float]:
    socks: list[socket.socket] = []
    stop = asyncio.Event()

    async def attack() -> None:
        while not stop.is_set():
            for s in socks:
                s.close()
            socks[:] = await asyncio.to_thread(flood, port, 40, 8)
            await asyncio.sleep(0.3)

    attacker = asyncio.create_task(attack())
    await asyncio.sleep(1.0)
    times = []
    for n in range(10):
        began = time.monotonic()
        c = client(port, cafile, f"prompt{n}")
        await c.connect()
        times.append(time.monotonic() - began)
        await c.close()
    stop.set()
    await attacker
    for s in socks:
        s.close()
    return times


async def parallel_guesses(port: int, cafile: Path) -> tuple[int, int]:
    owner = client(port, cafile, "dave", PASSWORD)
    await owner.connect()
    await owner.close()

    async def guess(n: int) -> str:
        c = client(port, cafile, "dave", f"guess{n}")
        try:
            await c.connect()
            return "in"
        except RequestFailed as exc:
            return exc.code
        finally:
            await c.close()

    codes = await asyncio.gather(*(guess(n) for n in range(15)))
    return codes.count("auth_failed"), codes.count("rate_limited")


def big_png() -> bytes:
    out = io.BytesIO()
    Image.new("L", (7071, 7071)).save(out, format="PNG", optimize=True)
    return out.getvalue()


def gif_of_frames(count: int) -> bytes:
    screen = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame * count + b"\x3b"


async def upload(c: ChatClient, name: str, data: bytes) -> str:
    try:
        await c.upload(name, data)
        return "stored"
    except RequestFailed as exc:
        return exc.code


async def bombs(port: int, cafile: Path, pid: int) -> None:
    bomber = client(port, cafile, "bomber", PASSWORD)
    bomber2 = client(port, cafile, "bomber", PASSWORD)
    other = client(port, cafile, "other")
    for c in (bomber, bomber2, other):
        await c.connect()
    png = big_png()
    rss0, _ = peak_rss_kib(pid)
    print(f"7071x7071 PNG: {len(png) / 1024:.0f} KiB; daemon RSS before {rss0 / 1024:.1f} MiB")
    result = await upload(bomber, "big.png", png)
    rss1, hwm1 = peak_rss_kib(pid)
    print(f"  one:  {result}; daemon RSS {rss1 / 1024:.1f} MiB, peak so far {hwm1 / 1024:.1f} MiB")
    results = await asyncio.gather(upload(bomber, "a.png", png), upload(bomber2, "b.png", png))
    rss2, hwm2 = peak_rss_kib(pid)
    print(f"  two at once: {results}; daemon RSS {rss2 / 1024:.1f} MiB, peak {hwm2 / 1024:.1f} MiB")
    gif = gif_of_frames(300_000)
    print(f"GIF of 300 000 frames: {len(gif) / 1024 / 1024:.1f} MiB, two at once from one user")
    began = time.monotonic()
    tasks = [
        asyncio.create_task(upload(bomber, "g1.gif", gif)),
        asyncio.create_task(upload(bomber2, "g2.gif", gif)),
    ]
    await asyncio.sleep(0.5)
    small = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(small, format="PNG")
    asked = time.monotonic()
    result = await upload(other, "red.png", small.getvalue())
    waited = time.monotonic() - asked
    gifs = await asyncio.gather(*tasks)
    print(f"  another user's 16x16 PNG: {result} after {waited:.2f} s")
    print(f"  the GIFs: {gifs} after {time.monotonic() - began:.1f} s")
    for c in (bomber, bomber2, other):
        await c.close()


async def main() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_daemon(
            Path(tmp), "--max-upload", str(20 << 20), "--upload-rate", str(64 << 20)
        )
        cafile = Path(tmp) / "tls" / "ca.pem"
        tls.client_context(cafile=cafile)
        try:
            times = sorted(await login_during_flood(port, cafile))
            print(
                f"prompt login during a silent flood from 40 addresses (8 each, re-opened):"
                f" median {times[len(times) // 2] * 1000:.0f} ms, worst {times[-1] * 1000:.0f} ms"
            )
            failed, limited = await parallel_guesses(port, cafile)
            print(
                f"15 parallel guesses from one address: {failed} checked (auth_failed),"
                f" {limited} refused before checking (rate_limited)"
            )
            await bombs(port, cafile, proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


if __name__ == "__main__":
    asyncio.run(main())
