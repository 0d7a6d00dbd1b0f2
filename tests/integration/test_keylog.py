"""TLS key logs for debugging: `tlschat serve --keylog FILE` and the client's SSLKEYLOGFILE.

Both run as real processes, the way an operator uses them. The two key logs of one connection
must hold the same secrets: either one decrypts a capture (test_capture.py does it with tshark).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.conftest import CertFiles
from tests.wire import timeout

from tlschat.server.daemon import listen_port

pytestmark = pytest.mark.store_agnostic  # run once, not again on PostgreSQL

TLSCHAT = [sys.executable, "-m", "tlschat"]

TLS13_LABELS = {
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    "CLIENT_TRAFFIC_SECRET_0",
    "SERVER_TRAFFIC_SECRET_0",
}
"""What Wireshark needs to decrypt a TLS 1.3 connection (NSS key log format)."""


class Daemon:
    """`tlschat serve` on 127.0.0.1, port 0; its stderr is collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [*TLSCHAT, "serve", "--host", "127.0.0.1", "--port", "0", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, env=env,
        )  # fmt: skip
        self.lines: list[str] = []
        self._eof = False
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.port = self._wait_listening()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._queue.put(line)
        self._queue.put(None)

    def _next_line(self) -> str | None:
        if self._eof:
            return None
        try:
            line = self._queue.get(timeout=timeout(30))
        except queue.Empty:
            raise AssertionError("daemon is silent: " + "".join(self.lines)) from None
        if line is None:
            self._eof = True
        else:
            self.lines.append(line)
        return line

    def _wait_listening(self) -> int:
        # One start-up line says the address and the fingerprint (daemon.py `start_line`).
        while (line := self._next_line()) is not None:
            port = listen_port(line)
            if port is not None:
                return port
        raise AssertionError("daemon did not start: " + "".join(self.lines))

    def stop(self) -> str:
        """SIGTERM, wait, and return all of stderr (safe to call twice)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout(20))
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        while self._next_line() is not None:
            pass
        return "".join(self.lines)


@pytest.fixture
def env() -> dict[str, str]:
    """The environment of the processes, without any key log setting inherited from the user."""
    clean = {k: v for k, v in os.environ.items() if k != "SSLKEYLOGFILE"}
    clean.pop("TLSCHAT_KEYLOG", None)
    return clean


Serve = Callable[..., Daemon]


@pytest.fixture
def serve(cert_files: CertFiles, tmp_path: Path, env: dict[str, str]) -> Iterator[Serve]:
    """`serve(*args, env=...)` starts `tlschat serve` with the test certificate; stopped at teardown."""
    started: list[Daemon] = []

    def factory(*args: str, env: dict[str, str] = env) -> Daemon:
        files = ["--cert", str(cert_files.cert), "--key", str(cert_files.key)]
        daemon = Daemon([*files, "--data-dir", str(tmp_path / "data"), *args], env)
        started.append(daemon)
        return daemon

    yield factory
    for daemon in started:
        daemon.stop()


def send(port: int, cert_files: CertFiles, env: dict[str, str], text: str) -> None:
    """`tlschat send` one message to oneself: one TLS connection of tlschat's own client."""
    result = subprocess.run(
        [*TLSCHAT, "send", f"127.0.0.1:{port}", "carol", "--to", "@carol",
         "--cafile", str(cert_files.ca), text],
        capture_output=True, text=True, env=env, timeout=timeout(60), check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def read_keylog(path: Path) -> dict[str, dict[str, str]]:
    """{client_random: {label: secret}} from an NSS key log file."""
    entries: dict[str, dict[str, str]] = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        label, client_random, secret = line.split()
        entries.setdefault(client_random, {})[label] = secret
    return entries


def test_serve_keylog_and_client_sslkeylogfile_log_the_same_secrets(
    serve: Serve, cert_files: CertFiles, tmp_path: Path, env: dict[str, str]
) -> None:
    server_log = tmp_path / "server-keys.txt"
    client_log = tmp_path / "client-keys.txt"
    daemon = serve("--keylog", str(server_log))

    send(daemon.port, cert_files, {**env, "SSLKEYLOGFILE": str(client_log)}, "logged")

    server_keys = read_keylog(server_log)
    client_keys = read_keylog(client_log)
    assert len(client_keys) == 1, client_keys  # one connection
    (client_random, secrets) = next(iter(client_keys.items()))
    assert TLS13_LABELS <= set(secrets), secrets
    assert server_keys.get(client_random) == secrets

    stderr = daemon.stop()
    warnings = [line for line in stderr.splitlines() if "--keylog is on" in line]
    assert len(warnings) == 1, stderr
    assert "WARNING" in warnings[0]
    assert str(server_log) in warnings[0]


def test_serve_writes_no_secrets_without_keylog(
    serve: Serve, cert_files: CertFiles, tmp_path: Path, env: dict[str, str]
) -> None:
    # SSLKEYLOGFILE is for clients: the daemon writes secrets only when told with --keylog.
    server_env_log = tmp_path / "server-env-keys.txt"
    daemon = serve(env={**env, "SSLKEYLOGFILE": str(server_env_log)})

    send(daemon.port, cert_files, env, "not logged")

    stderr = daemon.stop()
    assert not server_env_log.exists()
    assert "--keylog is on" not in stderr, stderr


def test_serve_keylog_file_is_private(
    serve: Serve, cert_files: CertFiles, tmp_path: Path, env: dict[str, str]
) -> None:
    server_log = tmp_path / "server-keys.txt"
    daemon = serve("--keylog", str(server_log))
    send(daemon.port, cert_files, env, "private")
    daemon.stop()
    assert server_log.stat().st_size > 0
    assert server_log.stat().st_mode & 0o077 == 0, oct(server_log.stat().st_mode)
