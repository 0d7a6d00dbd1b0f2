"""Downloaded files, kept by SHA-256 under the user's cache dir: fetched once, bounded, LRU."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import platformdirs

from tlschat.protocol import FileMeta

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 500 * 1024 * 1024
"""The cache's bound: beyond it, the least recently used files go."""

_SHA256 = re.compile(r"[0-9a-f]{64}")


class Downloader(Protocol):
    """What the cache needs of a client: `ChatClient.download_to`."""

    def download_to(
        self, file_id: str, path: Path, *, meta: FileMeta | None = None
    ) -> Awaitable[None]: ...


def default_root() -> Path:
    """`~/.cache/tlschat/files` on Linux (platformdirs elsewhere)."""
    return Path(platformdirs.user_cache_dir("tlschat", appauthor=False)) / "files"


class FileCache:
    """Files by SHA-256: `await fetch(client, meta)` returns a local path to verified bytes.

    A file is downloaded at most once, even across restarts and by concurrent callers; every
    disk operation runs in a worker thread. After each download the cache is trimmed to
    `max_bytes`, least recently used first (use bumps a file's modification time).
    """

    def __init__(self, root: Path | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = root if root is not None else default_root()
        self.max_bytes = max_bytes
        self._inflight: dict[str, asyncio.Future[Path]] = {}
        self.downloads = 0
        """Files this cache downloaded (the rest were hits)."""

    def path_for(self, sha256: str) -> Path:
        key = sha256.lower()
        if not _SHA256.fullmatch(key):
            raise ValueError(f"not a SHA-256: {sha256!r}")
        return self.root / key[:2] / key

    async def lookup(self, meta: FileMeta) -> Path | None:
        """The cached copy of `meta`'s bytes (verified, and marked as used), or None."""
        return await asyncio.to_thread(self._lookup, meta)

    async def fetch(
        self,
        client: Downloader,
        meta: FileMeta,
        *,
        on_download: Callable[[], None] | None = None,
    ) -> Path:
        """A local path to `meta`'s bytes, downloading them through `client` unless cached.

        Raise as `ChatClient.download_to` does (RequestFailed `no_such_file`, ConnectionClosed,
        TimeoutError, ProtocolError for bytes that do not match) or OSError for the disk.
        """
        key = meta.sha256.lower()
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            path = await self.lookup(meta)
            if path is None:
                if on_download is not None:
                    on_download()
                path = self.path_for(key)
                await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True, mode=0o700)
                self.downloads += 1
                await client.download_to(meta.id, path, meta=meta)
                await asyncio.to_thread(self.trim, keep=path)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        else:
            future.set_result(path)
            return path
        finally:
            self._inflight.pop(key, None)

    async def adopt(self, source: Path, meta: FileMeta) -> None:
        """Keep a copy of a file we sent ourselves, so that its echo needs no download (the
        copy is checked against `meta` when used, like every cached file)."""
        await asyncio.to_thread(self._adopt, source, meta)

    # --- blocking parts (worker threads) -------------------------------------------------------

    def _adopt(self, source: Path, meta: FileMeta) -> None:
        from tlschat.client.attachments import copy_atomically

        path = self.path_for(meta.sha256)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            copy_atomically(source, path)
        except FileExistsError:
            return
        self.trim(keep=path)

    def _lookup(self, meta: FileMeta) -> Path | None:
        path = self.path_for(meta.sha256)
        try:
            if path.stat().st_size != meta.size or _hash_of(path) != meta.sha256.lower():
                log.warning("cached %s is damaged: fetching it again", path.name)
                path.unlink(missing_ok=True)
                return None
            os.utime(path)  # most recently used
        except FileNotFoundError:
            return None
        return path

    def trim(self, keep: Path | None = None) -> int:
        """Remove least recently used files until the cache fits `max_bytes`; bytes removed."""
        entries: list[tuple[float, int, Path]] = []
        total = 0
        try:
            folders = list(self.root.iterdir())
        except FileNotFoundError:
            return 0
        for folder in folders:
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                try:
                    info = path.stat()
                except FileNotFoundError:
                    continue
                if path.name.endswith(".part"):
                    continue  # a download in progress
                entries.append((info.st_mtime, info.st_size, path))
                total += info.st_size
        removed = 0
        for _, size, path in sorted(entries, key=lambda e: e[0]):
            if total <= self.max_bytes:
                break
            if keep is not None and path == keep:
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            total -= size
            removed += size
        return removed


def _hash_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()
