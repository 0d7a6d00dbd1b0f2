"""The download cache: by SHA-256, verified, fetched once, bounded with LRU eviction."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from tlschat.client.cache import FileCache
from tlschat.protocol import FileMeta, ProtocolError


def meta_for(data: bytes, file_id: str = "f1") -> FileMeta:
    return FileMeta(
        id=file_id,
        name="x.bin",
        size=len(data),
        mime="application/octet-stream",
        sha256=hashlib.sha256(data).hexdigest(),
    )


class Server:
    """A fake `download_to`: counts requests; writes the bytes it holds (verified like the client)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[str] = []
        self.gate: asyncio.Event | None = None

    async def download_to(self, file_id: str, path: Path, *, meta: FileMeta | None = None) -> None:
        self.requests.append(file_id)
        if self.gate is not None:
            await self.gate.wait()
        data = self.files[file_id]
        if meta is not None and hashlib.sha256(data).hexdigest() != meta.sha256:
            raise ProtocolError("bytes that do not match")
        await asyncio.to_thread(path.write_bytes, data)


async def test_fetched_once_even_by_a_new_cache(tmp_path: Path) -> None:
    data = b"picture" * 100
    server = Server({"f1": data})
    meta = meta_for(data)
    cache = FileCache(tmp_path)
    path = await cache.fetch(server, meta)
    assert path.read_bytes() == data
    assert path == cache.path_for(meta.sha256)
    assert await cache.fetch(server, meta) == path
    # A restart: a new cache over the same folder.
    assert await FileCache(tmp_path).fetch(server, meta) == path
    assert server.requests == ["f1"]


async def test_concurrent_fetches_share_one_download(tmp_path: Path) -> None:
    data = b"abc"
    server = Server({"f1": data})
    server.gate = asyncio.Event()
    cache = FileCache(tmp_path)
    tasks = [asyncio.create_task(cache.fetch(server, meta_for(data))) for _ in range(3)]
    await asyncio.sleep(0.05)
    server.gate.set()
    paths = await asyncio.gather(*tasks)
    assert len(set(paths)) == 1
    assert server.requests == ["f1"]


async def test_damaged_copy_is_fetched_again(tmp_path: Path) -> None:
    data = b"original bytes"
    server = Server({"f1": data})
    cache = FileCache(tmp_path)
    path = await cache.fetch(server, meta_for(data))
    path.write_bytes(b"original byteZ")  # same size, other bytes
    assert (await cache.fetch(server, meta_for(data))).read_bytes() == data
    assert server.requests == ["f1", "f1"]


async def test_wrong_bytes_are_not_kept(tmp_path: Path) -> None:
    server = Server({"f1": b"not what was announced"})
    cache = FileCache(tmp_path)
    meta = meta_for(b"announced")
    with pytest.raises(ProtocolError):
        await cache.fetch(server, meta)
    assert not cache.path_for(meta.sha256).exists()


async def test_least_recently_used_goes_first(tmp_path: Path) -> None:
    blobs = {f"f{n}": bytes([n]) * 400 for n in range(3)}
    server = Server(blobs)
    cache = FileCache(tmp_path, max_bytes=1000)
    metas = {k: meta_for(v, k) for k, v in blobs.items()}
    first = await cache.fetch(server, metas["f0"])
    second = await cache.fetch(server, metas["f1"])
    os.utime(first, (1, 1))
    os.utime(second, (2, 2))
    await cache.fetch(server, metas["f0"])  # used again: now the most recent
    third = await cache.fetch(server, metas["f2"])
    assert first.exists()
    assert not second.exists()
    assert third.exists()
