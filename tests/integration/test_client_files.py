"""ChatClient file transfer against a real server over real TLS: uploads (with the byte rate's
retries), downloads, access rules, and chat flowing during a download."""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import random
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from tests.events import EventLog
from tests.wire import timeout

from tlschat.client import ChatClient
from tlschat.client import connection as client_connection
from tlschat.client.connection import UnverifiableDownload
from tlschat.protocol import (
    Chunk,
    FileData,
    FileMeta,
    ProtocolError,
    Request,
    RequestFailed,
    Upload,
)
from tlschat.server.files import FileStore

HOST = "127.0.0.1"
PASSWORD = "correct horse battery staple"
MiB = 1024 * 1024


def noise(size: int, seed: int = 0) -> bytes:
    """Bytes that look random (so nothing compresses them away), the same on every run."""
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def png(width: int, height: int) -> bytes:
    img = Image.frombytes("RGB", (width, height), noise(width * height * 3, seed=width))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


Inbox = EventLog


class Spy:
    """Records the frames a client writes (it wraps the client's single write path)."""

    def __init__(self, client: ChatClient, monkeypatch: pytest.MonkeyPatch) -> None:
        self.frames: list[Request] = []
        self.chunk_written = asyncio.Event()
        original = client._write

        def write(link: Any, frame: Request) -> None:
            original(link, frame)
            self.frames.append(frame)
            if isinstance(frame, Chunk):
                self.chunk_written.set()

        monkeypatch.setattr(client, "_write", write)

    def chunks(self, upload: str | None = None) -> list[Chunk]:
        return [
            f
            for f in self.frames
            if isinstance(f, Chunk) and f.data and (upload is None or f.upload == upload)
        ]


Login = Callable[..., Any]


@pytest.fixture
async def login(client_ctx: ssl.SSLContext) -> AsyncIterator[Login]:
    """`await login(server, "alice")`: a connected ChatClient, closed at teardown."""
    made: list[ChatClient] = []

    async def factory(server: Any, nick: str, **options: Any) -> ChatClient:
        options.setdefault("ssl_context", client_ctx)
        client = ChatClient(HOST, server.port, nick, **options)
        made.append(client)
        async with asyncio.timeout(timeout(15)):
            await client.connect()
        return client

    yield factory
    for client in made:
        await client.close()


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".part")]


# --- round trips --------------------------------------------------------------------------------


async def test_png_round_trip(server: Any, login: Login) -> None:
    alice = await login(server, "alice")
    data = png(37, 23)
    meta = await alice.upload("picture.png", data)
    assert (meta.name, meta.size, meta.sha256) == ("picture.png", len(data), sha(data))
    assert (meta.mime, meta.width, meta.height) == ("image/png", 37, 23)
    assert await alice.download(meta.id) == data


async def test_upload_file_and_download_to(server: Any, login: Login, tmp_path: Path) -> None:
    alice = await login(server, "alice")
    data = png(64, 48)
    source = tmp_path / "holiday photo.png"
    source.write_bytes(data)
    meta = await alice.upload_file(source)
    assert (meta.name, meta.size, meta.sha256, meta.mime) == (
        "holiday photo.png",
        len(data),
        sha(data),
        "image/png",
    )
    assert (meta.width, meta.height) == (64, 48)

    target = tmp_path / "out" / "copy.png"
    target.parent.mkdir()
    await alice.download_to(meta.id, target)
    assert target.read_bytes() == data
    assert leftovers(target.parent) == []


async def test_six_mib_at_the_default_upload_rate(server: Any, login: Login) -> None:
    # The `server` fixture leaves upload_rate at its default (4 MiB/s, burst 4 MiB): the
    # chunks past the burst are refused with `rate_limited` and must be sent again.
    alice = await login(server, "alice")
    data = noise(6 * MiB, seed=6)
    meta = await alice.upload("six.bin", data)
    assert (meta.size, meta.sha256, meta.mime) == (len(data), sha(data), "application/octet-stream")
    assert await alice.download(meta.id) == data


async def test_refused_chunks_are_sent_again_from_the_refused_seq(
    start_server: Any, login: Login, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A byte rate of 8 chunks a second with a burst of 8 chunks, and 20 chunks to send at once:
    # refusals are certain, whatever the machine's speed.
    step = 8 * 1024
    server = await start_server(upload_rate=8 * step, chunk=step)
    alice = await login(server, "alice")
    spy = Spy(alice, monkeypatch)
    data = noise(20 * step - 100, seed=20)
    meta = await alice.upload("paced.bin", data)
    assert (meta.size, meta.sha256) == (len(data), sha(data))

    sent = [c.seq for c in spy.chunks()]
    assert len(sent) > 20  # some went twice...
    assert sorted(set(sent)) == list(range(20))  # ...every one went...
    assert all(b <= a + 1 for a, b in itertools.pairwise(sent))  # ...in order or rewound
    assert len({c.ref for c in spy.chunks()}) == len(sent)  # each time under a fresh ref
    assert await alice.download(meta.id) == data


async def test_empty_file(server: Any, login: Login, tmp_path: Path) -> None:
    alice = await login(server, "alice")
    meta = await alice.upload("empty.txt", b"")
    assert (meta.name, meta.size, meta.sha256) == ("empty.txt", 0, sha(b""))
    assert await alice.download(meta.id) == b""

    source = tmp_path / "nothing"
    source.write_bytes(b"")
    again = await alice.upload_file(source)
    assert (again.name, again.size, again.sha256) == ("nothing", 0, sha(b""))
    target = tmp_path / "nothing.copy"
    await alice.download_to(again.id, target)
    assert target.read_bytes() == b""
    # Nothing was left pending: the two uploads above would have used both slots otherwise.
    assert (await alice.upload("after.txt", b"after")).size == 5


# --- access rules ---------------------------------------------------------------------------------


async def test_file_in_a_direct_message(server: Any, login: Login, tmp_path: Path) -> None:
    alice = await login(server, "alice")
    bob = await login(server, "bob")
    carol = await login(server, "carol")
    bob_inbox = Inbox(bob)
    data = png(20, 10)
    meta = await alice.upload("for-bob.png", data)
    await alice.send_message("@bob", "look", file=meta.id)

    got = await bob_inbox.message(lambda m: m.text == "look")
    assert got.file is not None
    assert got.file.id == meta.id
    assert await bob.download(got.file.id) == data
    await bob.download_to(got.file.id, tmp_path / "from-alice.png")
    assert (tmp_path / "from-alice.png").read_bytes() == data

    with pytest.raises(RequestFailed) as refused:
        await carol.download(meta.id)
    assert refused.value.code == "no_such_file"
    target = tmp_path / "stolen.png"
    with pytest.raises(RequestFailed) as refused_again:
        await carol.download_to(meta.id, target)
    assert refused_again.value.code == "no_such_file"
    assert not target.exists()
    assert leftovers(tmp_path) == []
    await carol.ping()  # still connected


async def test_download_is_verified_against_the_metadata(server: Any, login: Login) -> None:
    alice = await login(server, "alice")
    data = noise(100_000, seed=1)
    meta = await alice.upload("data.bin", data)
    wrong = meta.model_copy(update={"sha256": sha(b"something else")})
    with pytest.raises(ProtocolError):
        await alice.download(meta.id, meta=wrong)
    shorter = meta.model_copy(update={"size": 1000})
    with pytest.raises(ProtocolError):
        await alice.download(meta.id, meta=shorter)
    assert await alice.download(meta.id, meta=meta) == data


async def test_download_is_verified_against_the_first_frames_metadata(
    server: Any, login: Login, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # docs/protocol.md "Files": a client that never saw the file's message verifies the bytes by
    # the metadata the download's first frame carries; a mismatch writes nothing.
    uploader = await login(server, "alice", password=PASSWORD)
    data = noise(100_000, seed=2)
    meta = await uploader.upload("data.bin", data)
    fresh = await login(server, "alice", password=PASSWORD)  # has seen no metadata of it
    target = tmp_path / "data.bin"
    await fresh.download_to(meta.id, target, require_verification=True)
    assert target.read_bytes() == data

    send_file_data = FileStore._file_data

    def lying(store: FileStore, frame: FileData, meta: FileMeta | None) -> bytes:
        if meta is not None:
            meta = meta.model_copy(update={"sha256": sha(b"something else")})
        return send_file_data(store, frame, meta)

    monkeypatch.setattr(FileStore, "_file_data", lying)
    other = tmp_path / "other.bin"
    with pytest.raises(ProtocolError):
        await fresh.download_to(meta.id, other)
    with pytest.raises(ProtocolError):
        await fresh.download(meta.id)
    assert not other.exists()
    assert leftovers(tmp_path) == []

    # A server that sends no metadata (older than the extension): the caller's SHA-256 stands
    # in for it, and without one a download that must be verified is refused before writing.
    def silent(store: FileStore, frame: FileData, meta: FileMeta | None) -> bytes:
        return send_file_data(store, frame, None)

    monkeypatch.setattr(FileStore, "_file_data", silent)
    with pytest.raises(UnverifiableDownload):
        await fresh.download_to(meta.id, other, require_verification=True)
    assert not other.exists()
    assert leftovers(tmp_path) == []
    with pytest.raises(ProtocolError):
        await fresh.download(meta.id, sha256=sha(b"something else"))
    await fresh.download_to(meta.id, other, sha256=meta.sha256, require_verification=True)
    assert other.read_bytes() == data


# --- limits -------------------------------------------------------------------------------------


async def test_too_large_is_refused_before_any_data(
    start_server: Any, login: Login, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = await start_server(max_upload=1000)
    alice = await login(server, "alice")
    spy = Spy(alice, monkeypatch)
    with pytest.raises(RequestFailed) as refused:
        await alice.upload("big.bin", noise(1001))
    assert refused.value.code == "too_large"

    big = tmp_path / "big.bin"
    big.write_bytes(noise(1001))
    with pytest.raises(RequestFailed) as refused_file:
        await alice.upload_file(big)
    assert refused_file.value.code == "too_large"
    assert not [f for f in spy.frames if isinstance(f, Upload | Chunk)]

    meta = await alice.upload("fits.bin", noise(1000))
    assert meta.size == 1000


async def test_an_abandoned_upload_frees_its_slot(
    start_server: Any, login: Login, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One pending upload per user, and a byte rate slow enough that the first never finishes.
    step = 4 * 1024
    server = await start_server(upload_rate=step, chunk=step, max_pending_uploads=1)
    alice = await login(server, "alice")
    spy = Spy(alice, monkeypatch)
    slow = asyncio.create_task(alice.upload("slow.bin", noise(64 * step)))
    async with asyncio.timeout(timeout(10)):
        await spy.chunk_written.wait()
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    # Without the client discarding it, this would be `rate_limited` for the next 60 s.
    meta = await alice.upload("next.bin", b"next")
    assert meta.size == 4


async def test_an_upload_cancelled_before_its_answer_frees_its_slot(
    start_server: Any, login: Login, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start_server(max_pending_uploads=1)
    alice = await login(server, "alice")
    original = alice._write

    def write(link: Any, frame: Request) -> None:
        original(link, frame)
        if isinstance(frame, Upload) and frame.name == "cancelled.bin":
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # at the next await: before `upload_ready` can have been read

    monkeypatch.setattr(alice, "_write", write)
    with pytest.raises(asyncio.CancelledError):
        await alice.upload("cancelled.bin", noise(10_000))
    await alice.ping()  # `upload_ready` arrives before the pong: the upload is discarded
    meta = await alice.upload("next.bin", b"next")
    assert meta.size == 4


# --- chat goes on during a download ---------------------------------------------------------------


async def test_chat_reaches_events_during_a_large_download(
    start_server: Any, login: Login, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = await start_server(upload_rate=1 << 30)
    alice = await login(server, "alice")
    bob = await login(server, "bob")
    inbox = Inbox(alice)
    data = noise(8 * MiB, seed=8)
    meta: FileMeta = await alice.upload("big.bin", data)

    # Hold alice's download in its first disk write, so that it is surely still running
    # when bob speaks; the client's reader must go on serving events meanwhile.
    entered = threading.Event()
    release = threading.Event()
    append = client_connection._append_to

    def held_append(temp: Path, chunk: bytes) -> None:
        entered.set()
        release.wait(timeout(30))
        append(temp, chunk)

    monkeypatch.setattr(client_connection, "_append_to", held_append)
    target = tmp_path / "big.bin"
    download = asyncio.create_task(alice.download_to(meta.id, target))
    try:
        assert await asyncio.to_thread(entered.wait, timeout(10))
        await bob.send_message("@alice", "while you download")
        got = await inbox.message(lambda m: m.text == "while you download")
        assert got.from_ == "bob"
        assert not download.done()
    finally:
        release.set()
    async with asyncio.timeout(timeout(30)):
        await download
    assert target.read_bytes() == data
