"""Several `tlschat serve` subprocesses serving one chat: one PostgreSQL database, one Redis.

Each node has its own data directory and a port of 127.0.0.1 chosen once, so a node killed
(`kill()`, SIGKILL: a crash) or stopped comes back on the same address with `start()` — what
clients given every node's address expect. Every node presents the same certificate (the tests'
trustme one), so one client context trusts them all. A files directory is shared by the nodes
when the daemon has the option (`--files-dir`).

    cluster = Cluster(root, database=dsn, redis=url, cert=..., key=..., nodes=3)
    cluster.start()            # all nodes at once, returns when each listens
    cluster.nodes[0].kill()    # kill -9
    cluster.nodes[0].start()   # again, same port, same data directory
    cluster.stop()             # SIGTERM each, by PID

Nothing here is pytest-specific except the timeouts' factor (tests/wire.py).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.integration.daemon_proc import Daemon
from tests.wire import timeout
from tlschat.config import ServerConfig

HOST = "127.0.0.1"

HEARTBEAT = 0.5
"""`--node-heartbeat` of the test nodes: a killed node is declared dead within 4 heartbeats (2 s)
rather than 20 s, so a test of a crash takes seconds."""

LIMITS = {
    "--rate-burst": "10000",
    "--rate-per-sec": "10000",
    "--max-per-ip": "1000",
    "--max-unauth": "1000",
    "--max-unauth-per-ip": "1000",
    "--max-nick-failures": "1000",
    "--max-registrations": "1000",
    "--max-conns": "2000",
    "--max-login-failures": "1000",
    "--max-queue": str(4 * 1024 * 1024),
}
"""The abuse limits the cluster tests are not about, raised (as tests/conftest.py GENEROUS)."""


def has_files_dir_option() -> bool:
    """True once the daemon takes `--files-dir` (blobs shared by the nodes)."""
    return "files_dir" in {f.name for f in dataclasses.fields(ServerConfig)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class Node:
    """One `tlschat serve` of the cluster: `start()`, `kill()` / `stop()`, `start()` again."""

    def __init__(self, index: int, data_dir: Path, args: Sequence[str]) -> None:
        self.index = index
        self.data_dir = data_dir
        self.port = free_port()
        self.args = list(args)
        self.daemon: Daemon | None = None
        self.starts = 0

    @property
    def address(self) -> tuple[str, int]:
        return HOST, self.port

    @property
    def running(self) -> bool:
        return self.daemon is not None and self.daemon.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.daemon is not None
        return self.daemon.proc.pid

    def spawn(self) -> None:
        """Start the process; `wait_listening()` then waits for it to listen."""
        assert not self.running, f"node {self.index} is already running"
        # Daemon passes `--port 0`; the later `--port` wins (click keeps an option's last value).
        self.daemon = Daemon(
            ["--data-dir", str(self.data_dir), "--port", str(self.port), *self.args]
        )
        self.starts += 1

    def wait_listening(self) -> None:
        """Until the start-up line (Daemon.started: 20 s, scaled by the tests' factor)."""
        assert self.daemon is not None
        port = self.daemon.started()
        assert port == self.port, (port, self.port)

    def start(self) -> None:
        self.spawn()
        self.wait_listening()

    def kill(self) -> None:
        """kill -9 by PID, as a crash: no `bye`, no leaving the cluster, keys left to expire."""
        assert self.daemon is not None
        os.kill(self.daemon.proc.pid, signal.SIGKILL)
        self.daemon.proc.wait(timeout(10))

    def stop(self) -> tuple[int, str]:
        """SIGTERM and wait: (exit status, the log)."""
        assert self.daemon is not None
        return self.daemon.stop()

    def log(self) -> str:
        return "".join(self.daemon.lines) if self.daemon is not None else ""


class Cluster:
    """N nodes sharing `database` (a PostgreSQL DSN) and `redis` (a URL)."""

    def __init__(
        self,
        root: Path,
        *,
        database: str,
        redis: str,
        cert: Path,
        key: Path,
        nodes: int = 3,
        extra: Sequence[str] = (),
        heartbeat: float = HEARTBEAT,
    ) -> None:
        self.root = root
        self.database = database
        self.redis = redis
        common = [
            "--database", database,
            "--redis", redis,
            "--cert", str(cert),
            "--key", str(key),
            "--node-heartbeat", str(heartbeat),
            "--log-level", "INFO",
        ]  # fmt: skip
        for flag, value in LIMITS.items():
            common += [flag, value]
        self.files_dir: Path | None = None
        if has_files_dir_option():
            self.files_dir = root / "files"
            self.files_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            common += ["--files-dir", str(self.files_dir)]
        common += list(extra)
        self.nodes = [Node(i, root / f"node{i}", common) for i in range(nodes)]

    def start(self) -> None:
        """Every node not running, started together (they migrate and join concurrently)."""
        waiting = [node for node in self.nodes if not node.running]
        for node in waiting:
            node.spawn()
        for node in waiting:
            node.wait_listening()

    def stop(self) -> None:
        for node in self.nodes:
            if node.daemon is not None and node.daemon.proc.poll() is None:
                node.daemon.proc.send_signal(signal.SIGTERM)
        for node in self.nodes:
            if node.daemon is not None:
                try:
                    node.daemon.proc.wait(timeout(20))
                except subprocess.TimeoutExpired:
                    node.daemon.proc.kill()
                    node.daemon.proc.wait()

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def addresses(self, first: int) -> list[tuple[str, int]]:
        """Every node's address, node `first` first, then the others in order (a client's list)."""
        order = [first, *(i for i in range(len(self.nodes)) if i != first)]
        return [self.nodes[i].address for i in order]

    def logs(self) -> str:
        return "\n".join(f"--- node {n.index} (pid {n.pid})\n{n.log()}" for n in self.nodes)
