"""Start `tlschat serve` in its own process for a benchmark (so its memory can be read)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tlschat.server.daemon import listen_port


def _relay(stream: Any) -> None:
    for line in stream:
        if os.environ.get("TLSCHAT_BENCH_LOG"):
            sys.stderr.write(line)


def start_daemon(
    data_dir: Path, *flags: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], int]:
    """A daemon on 127.0.0.1 and an OS-chosen port, with `flags`; returns it and its port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlschat", "serve", "--host", "127.0.0.1", "--port", "0",
         "--data-dir", str(data_dir), "--log-level", os.environ.get("TLSCHAT_BENCH_LOG", "WARNING"), *flags],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:
        port = listen_port(line)
        if port is not None:
            # Keep reading: a daemon whose stderr pipe fills up blocks on its next log line.
            threading.Thread(target=_relay, args=(proc.stderr,), daemon=True).start()
            return proc, port
    raise SystemExit("tlschat serve did not start")
