"""A `tlschat serve` subprocess whose stderr is read line by line on a thread (tests of the
daemon as an operator sees it: logs, signals, exit codes)."""

from __future__ import annotations

import os
import queue
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.wire import Wire, timeout

from tlschat import tls
from tlschat.server.daemon import listen_port

TLSCHAT = [sys.executable, "-m", "tlschat"]


class Daemon:
    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [*TLSCHAT, "serve", "--host", "127.0.0.1", "--port", "0", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()
        self.port = 0

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: str, seconds: float = 20) -> str:
        """The first line (from now on, or already seen and not yet matched) matching `pattern`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout(seconds)
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if regex.search(line):
                return line
        raise AssertionError(f"no line matching {pattern!r} in:\n" + "".join(self.lines))

    def started(self) -> int:
        line = self.wait_for(r"listening on")
        port = listen_port(line)
        assert port is not None, line
        self.port = port
        return port

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> tuple[int, str]:
        """SIGTERM, wait; (exit status, every stderr line)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout(20))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._thread.join(timeout(5))
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return code, "".join(self.lines)


def context_for(data_dir: Path) -> ssl.SSLContext:
    """A client context trusting the CA the daemon generated in `data_dir`."""
    return tls.client_context(cafile=data_dir / "tls" / "ca.pem")


def peer_fingerprint(wire: Wire) -> str:
    ssl_object = wire.writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True)
    return tls.fingerprint(der)
