"""The data directory: created private (0700), and locked so that one daemon serves it."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from tlschat.protocol import TlsChatError

LOCK_NAME = "tlschat.lock"


class DataDirBusy(TlsChatError):
    """Another daemon holds the data directory's lock."""


class DataDirLock:
    """An exclusive `flock` on DATA/tlschat.lock, held while the daemon runs. The kernel drops it
    when the process ends, however it ends (kill -9 included): no stale lock to clean up."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise DataDirBusy (OSError if the file cannot be made)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirBusy(
                f"another tlschat is serving {self.path.parent} (it holds {self.path})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def make_private_dir(path: Path) -> None:
    """Create `path` (and parents) as 0700; an existing directory is left as its owner set it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
