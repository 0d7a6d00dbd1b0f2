"""Signals under load: SIGTERM is never lost while connections come and go by the hundred."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tests.wire import Wire, timeout

from tlschat import tls
from tlschat.server.daemon import listen_port

pytestmark = pytest.mark.store_agnostic  # run once, not again on PostgreSQL

LIMITS = ["--max-conns", "4000", "--max-per-ip", "4000", "--max-unauth", "4000"]


def _start(data_dir: Path) -> tuple[subprocess.Popen[str], int, list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlschat", "serve", "--host", "127.0.0.1", "--port", "0",
         "--data-dir", str(data_dir), *LIMITS],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:
        port = listen_port(line)
        if port is not None:
            return proc, port, _keep_reading(proc)
    raise AssertionError("the daemon did not start")


def _keep_reading(proc: subprocess.Popen[str]) -> list[str]:
    """Read stderr on, so the daemon never blocks on a full pipe; the lines are kept."""
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True).start()
    return lines


async def _churn(port: int, cafile: Path, stop: asyncio.Event, index: int) -> None:
    """Connect, log in, drop the connection, again, until told to stop."""
    ctx = tls.client_context(cafile=cafile)
    n = 0
    while not stop.is_set():
        with contextlib.suppress(Exception):
            wire = await Wire.open(port, ctx)
            await wire.hello(f"c{index}x{n}")
            await wire.close()
        n += 1


@pytest.mark.slow
async def test_sigterm_during_connection_churn_stops_the_daemon(tmp_path: Path) -> None:
    proc, port, lines = await asyncio.to_thread(_start, tmp_path / "d")
    stop = asyncio.Event()
    clients = [
        asyncio.create_task(_churn(port, tmp_path / "d" / "tls" / "ca.pem", stop, i))
        for i in range(200)
    ]
    try:
        await asyncio.sleep(2.0)  # connections coming and going by the hundred
        proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        code = await asyncio.to_thread(proc.wait, timeout(10))
        # PROTOCOL/issue: the daemon stops within 5 s of SIGTERM, whatever the load.
        assert code == 0, "".join(lines[-20:])
        assert time.monotonic() - began < timeout(5)
    finally:
        stop.set()
        await asyncio.wait(clients, timeout=10)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
