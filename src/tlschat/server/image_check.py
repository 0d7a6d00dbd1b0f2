"""Check an uploaded file in a child process (server/imaging.py), off the daemon's memory and time.

Each check is a fresh `python -m tlschat.server.imaging PATH` with an address-space and a CPU
limit of its own and a wall-clock deadline here; what it allocates goes when it exits. At most
`CHECKS_AT_ONCE` run at once, and one at a time per user, so one user's uploads never hold up
another user's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path

from tlschat.server.imaging import Analysis, BadImage

CHECKS_AT_ONCE = 4
DEADLINE = 15.0
"""Seconds a check may take (the child's CPU limit is lower: this covers a loaded machine)."""


class ImageChecker:
    def __init__(self, at_once: int = CHECKS_AT_ONCE, deadline: float = DEADLINE) -> None:
        self._slots = asyncio.Semaphore(at_once)
        self._per_user: dict[str, asyncio.Lock] = {}
        self._deadline = deadline

    async def analyse(self, path: Path, owner: str) -> Analysis:
        """What the file is; raise BadImage if it claims to be an image and is not one."""
        lock = self._per_user.setdefault(owner, asyncio.Lock())
        try:
            async with lock, self._slots:
                return await self._run(path)
        finally:
            if not lock.locked() and self._per_user.get(owner) is lock:
                del self._per_user[owner]

    async def _run(self, path: Path) -> Analysis:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tlschat.server.imaging",
            str(path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            async with asyncio.timeout(self._deadline):
                out, _ = await proc.communicate()
        except TimeoutError:
            raise BadImage("the image takes too long to check") from None
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        try:
            found = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            # Killed by its CPU or memory limit, or crashed inside a decoder.
            raise BadImage("the image could not be checked (too costly to decode)") from None
        if "error" in found:
            raise BadImage(str(found["error"]))
        return Analysis(found["mime"], found.get("width"), found.get("height"))
