"""PROTOCOL.md "Files and images" (and its limits) end to end, over real TLS."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import itertools
import json
import os
import random
import ssl
import struct
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from tests.integration.helpers_rules import Dialer, assert_error, drain_all, say
from tests.wire import Wire, timeout

PASSWORD = "correct horse battery staple"
_refs = itertools.count(1)


@pytest.fixture
async def dial(client_ctx: ssl.SSLContext) -> AsyncIterator[Dialer]:
    dialer = Dialer(client_ctx)
    yield dialer
    await dialer.close_all()


# --- helpers ------------------------------------------------------------------------------------


def noise(size: int, seed: int = 0) -> bytes:
    """Bytes that look random, the same on every run."""
    return random.Random(seed).randbytes(size)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def image(fmt: str, size: tuple[int, int] = (37, 23), **options: Any) -> bytes:
    """A real image in `fmt`, made with Pillow (noise, so it does not compress to nothing)."""
    width, height = size
    img = Image.frombytes("RGB", size, noise(width * height * 3, seed=width))
    if fmt == "GIF":
        img = img.convert("P")
    out = io.BytesIO()
    img.save(out, format=fmt, **options)
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG header declaring a huge grey canvas (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 4096, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", pixels)
        + png_chunk(b"IEND", b"")
    )


def gif_declaring(width: int, height: int) -> bytes:
    """A GIF whose screen and only frame claim `width` x `height`, with one byte of pixels."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    return screen + frame + b"\x02\x02\x44\x01\x00" + b"\x3b"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def upload(
    wire: Wire,
    data: bytes,
    name: str = "file.bin",
    *,
    digest: str | None = None,
    chunk_refs: bool = True,
) -> dict[str, Any]:
    """Upload `data` as a client would; return the server's last word (`uploaded` or `error`)."""
    ready = await wire.request(
        {"type": "upload", "name": name, "size": len(data), "sha256": digest or sha(data)}
    )
    if ready["type"] != "upload_ready":
        return ready
    assert set(ready) == {"type", "ref", "upload", "chunk"}, ready
    step = ready["chunk"]
    for seq, start in enumerate(range(0, len(data), step)):
        frame = {"type": "chunk", "upload": ready["upload"], "seq": seq}
        frame["data"] = base64.b64encode(data[start : start + step]).decode()
        if chunk_refs:
            frame["ref"] = ready["ref"]
        await wire.send(frame)
    return await wire.recv_match(30, ref=ready["ref"])


async def uploaded(wire: Wire, data: bytes, name: str = "file.bin") -> dict[str, Any]:
    """The FILE_META of a successful upload."""
    reply = await upload(wire, data, name)
    assert reply["type"] == "uploaded", reply
    meta: dict[str, Any] = reply["file"]
    return meta


async def download(wire: Wire, file_id: str, seconds: float = 10) -> bytes | dict[str, Any]:
    """The file's bytes, or the `error` frame."""
    ref = f"dl{next(_refs)}"
    await wire.send({"type": "download", "file": file_id, "ref": ref})
    parts: list[bytes] = []
    while True:
        frame = await wire.recv_match(seconds, ref=ref)
        if frame["type"] == "error":
            return frame
        assert frame["type"] == "file_data", frame
        assert frame["file"] == file_id
        assert frame["seq"] == len(parts)
        parts.append(base64.b64decode(frame["data"], validate=True))
        if frame["last"]:
            return b"".join(parts)


async def download_frames(wire: Wire, file_id: str) -> list[dict[str, Any]]:
    """Every `file_data` frame of a download, as sent."""
    ref = f"dl{next(_refs)}"
    await wire.send({"type": "download", "file": file_id, "ref": ref})
    frames: list[dict[str, Any]] = []
    while not frames or not frames[-1]["last"]:
        frame = await wire.recv_match(10, ref=ref)
        assert frame["type"] == "file_data", frame
        frames.append(frame)
    return frames


def stored_files(server: Any) -> list[Path]:
    """Everything under the data directory's files/ except the (empty) temporary folder."""
    root = Path(server.data_dir) / "files"
    return sorted(p for p in root.rglob("*") if p.is_file())


def all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def temp_files(server: Any) -> list[Path]:
    folder = Path(server.data_dir) / "files" / "tmp"
    return sorted(folder.iterdir()) if folder.exists() else []


async def eventually(check: Any, seconds: float = 5) -> None:
    """Poll `check()` until it is true (cleanup runs in the background)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout(seconds)
    while not check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


# --- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mime", "name"),
    [
        ("PNG", "image/png", "shot.png"),
        ("JPEG", "image/jpeg", "photo.jpg"),
        ("GIF", "image/gif", "anim.gif"),
        ("WEBP", "image/webp", "sticker.webp"),
    ],
)
async def test_image_round_trip(connect: Any, fmt: str, mime: str, name: str) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    data = image(fmt, (37, 23))
    meta = await uploaded(alice, data, name)
    assert meta["name"] == name
    assert meta["size"] == len(data)
    assert meta["sha256"] == sha(data)
    assert (meta["mime"], meta["width"], meta["height"]) == (mime, 37, 23)
    assert isinstance(meta["id"], str)
    assert meta["id"]

    echo = await alice.request({"type": "send", "to": "@bob", "text": "look", "file": meta["id"]})
    assert echo["type"] == "message"
    assert echo["file"] == meta
    received = await bob.recv_type("message")
    assert received["file"] == meta
    assert await download(bob, meta["id"]) == data
    assert await download(alice, meta["id"]) == data


async def test_the_first_file_data_frame_carries_the_metadata(
    start_server: Any, dial: Dialer
) -> None:
    # docs/protocol.md "Files": seq 0 also carries FILE_META, as `uploaded` said it. The
    # smallest max_frame the chunk allows and a long name: the frame must still fit.
    max_frame = 4096
    server = await start_server(max_frame=max_frame, chunk=(max_frame - 256) * 3 // 4)
    alice = await dial.open(server, "alice")
    bob = await dial.open(server, "bob")
    data = image("PNG", (64, 48))  # noise: a few chunks
    meta = await uploaded(alice, data, "é" * 200 + ".png")
    await alice.request({"type": "send", "to": "@bob", "text": "", "file": meta["id"]})

    for wire in (alice, bob):
        frames = await download_frames(wire, meta["id"])
        assert len(frames) > 2
        assert frames[0]["meta"] == meta
        assert all("meta" not in frame for frame in frames[1:])
        assert b"".join(base64.b64decode(frame["data"]) for frame in frames) == data
        sizes = [
            len(json.dumps(frame, separators=(",", ":"), ensure_ascii=False).encode())
            for frame in frames
        ]
        assert max(sizes) <= max_frame

    # An empty file too: its one frame is the first.
    empty = await uploaded(alice, b"", "empty.txt")
    (only,) = await download_frames(alice, empty["id"])
    assert (only["data"], only["last"], only["meta"]) == ("", True, empty)


async def test_animated_gif_is_verified_and_sized(connect: Any) -> None:
    alice = await connect("alice")
    frames = [Image.new("P", (20, 10), color) for color in (1, 2, 3)]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    meta = await uploaded(alice, out.getvalue(), "a.gif")
    assert (meta["mime"], meta["width"], meta["height"]) == ("image/gif", 20, 10)


async def test_non_image_round_trip(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    data = os.urandom(100_000)  # several chunks, the last one partial
    meta = await uploaded(alice, data, "notes.bin")
    assert meta["mime"] == "application/octet-stream"
    assert "width" not in meta
    assert "height" not in meta
    await alice.request({"type": "send", "to": "@bob", "text": "", "file": meta["id"]})
    await bob.recv_type("message")
    assert await download(bob, meta["id"]) == data


async def test_empty_file(connect: Any) -> None:
    alice = await connect("alice")
    meta = await uploaded(alice, b"", "empty.txt")
    assert (meta["size"], meta["mime"]) == (0, "application/octet-stream")
    assert await download(alice, meta["id"]) == b""


async def test_chunks_without_ref_are_answered_under_the_uploads_ref(connect: Any) -> None:
    alice = await connect("alice")
    data = os.urandom(70_000)
    reply = await upload(alice, data, chunk_refs=False)
    assert reply["type"] == "uploaded"
    reply = await upload(alice, data, digest="0" * 64, chunk_refs=False)
    assert_error(reply, "hash_mismatch")


async def test_identical_uploads_are_stored_once(connect: Any, server: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    data = image("PNG")
    first = await uploaded(alice, data, "a.png")
    second = await uploaded(bob, data, "b.png")
    again = await uploaded(alice, data, "c.png")
    assert len({first["id"], second["id"], again["id"]}) == 3
    assert [m["name"] for m in (first, second, again)] == ["a.png", "b.png", "c.png"]
    digest = sha(data)
    assert stored_files(server) == [Path(server.data_dir) / "files" / digest[:2] / digest[2:]]
    assert temp_files(server) == []


# --- refusals -----------------------------------------------------------------------------------


async def test_hash_mismatch(connect: Any, server: Any) -> None:
    alice = await connect("alice")
    data = os.urandom(50_000)
    reply = await upload(alice, data, digest=sha(data + b"!"))
    assert_error(reply, "hash_mismatch")
    await eventually(lambda: temp_files(server) == [])
    assert stored_files(server) == []


async def test_too_large_is_refused_before_any_byte(start_server: Any, dial: Dialer) -> None:
    server = await start_server(max_upload=1000)
    alice = await dial.open(server, "alice")
    assert alice.welcome["limits"]["max_upload"] == 1000  # type: ignore[attr-defined]
    reply = await alice.request(
        {"type": "upload", "name": "big", "size": 1001, "sha256": sha(b"x" * 1001)}
    )
    assert_error(reply, "too_large", reply["ref"])
    assert temp_files(server) == []
    meta = await uploaded(alice, b"y" * 1000)
    assert meta["size"] == 1000


async def test_text_file_named_png_is_not_an_image(connect: Any) -> None:
    alice = await connect("alice")
    meta = await uploaded(alice, b"just some text, honestly\n" * 10, "picture.png")
    assert meta["name"] == "picture.png"
    assert meta["mime"] == "application/octet-stream"
    assert "width" not in meta


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(image("PNG", (64, 64))[:-300], id="truncated-png"),
        pytest.param(image("PNG", (64, 64))[:40], id="png-header-only"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + noise(5000, 1), id="png-signature-then-garbage"),
        pytest.param(image("PNG")[:33] + noise(5000, 2), id="png-ihdr-then-garbage"),
        pytest.param(image("JPEG", (64, 64))[:-2000], id="truncated-jpeg"),
        pytest.param(b"GIF89a" + noise(3000, 3), id="gif-garbage"),
        pytest.param(b"RIFF\x00\x10\x00\x00WEBPVP8 " + noise(3000, 4), id="webp-garbage"),
        pytest.param(png_declaring(100_000, 100_000), id="bomb-png-10-gigapixels"),
        pytest.param(png_declaring(8_000, 8_000), id="bomb-png-64-megapixels"),
        pytest.param(gif_declaring(65_535, 65_535), id="bomb-gif"),
    ],
)
async def test_bad_images_are_refused(connect: Any, server: Any, data: bytes) -> None:
    alice = await connect("alice")
    reply = await upload(alice, data, "image.png")
    assert_error(reply, "bad_file")
    await eventually(lambda: temp_files(server) == [])
    assert stored_files(server) == []
    await alice.request({"type": "ping"})  # the connection goes on


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("../../../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("/absolute/path.txt", "path.txt"),
        ("dir/", "dir"),
        ("  spaced name.txt ", "spaced name.txt"),
        ("ünïcödé 文件.txt", "ünïcödé 文件.txt"),
    ],
)
async def test_names_are_display_names_only(
    connect: Any, server: Any, tmp_path: Path, name: str, shown: str
) -> None:
    alice = await connect("alice")
    data = os.urandom(1000)
    before = all_files(tmp_path)
    meta = await uploaded(alice, data, name)
    assert meta["name"] == shown
    digest = sha(data)
    # The only new file is the content-addressed blob.
    new = all_files(tmp_path) - before
    blob = Path(server.data_dir) / "files" / digest[:2] / digest[2:]
    assert {p for p in new if "tlschat.db" not in p.name} == {blob}


@pytest.mark.parametrize(
    "name",
    ["a\x00b", "line\nbreak", "tab\there", "esc\x1b[31m", "del\x7f", "c1\x85", "evil\u202egnp.exe",
     "..", ".", "/", "a/../", "\\"],
)  # fmt: skip
async def test_bad_names_are_refused(connect: Any, server: Any, name: str) -> None:
    alice = await connect("alice")
    reply = await upload(alice, b"data", name)
    assert_error(reply, "bad_request")
    assert temp_files(server) == []


async def test_bad_chunks_end_the_upload(connect: Any, server: Any) -> None:
    alice = await connect("alice")
    data = os.urandom(100_000)
    cases: list[dict[str, Any]] = [
        {"seq": 1},
        {"data": "%%%"},
        {"data": ""},
        {"data": base64.b64encode(b"x" * 40_000).decode()},
    ]
    for bad in cases:
        ready = await alice.request(
            {"type": "upload", "name": "f", "size": len(data), "sha256": sha(data)}
        )
        frame = {"type": "chunk", "upload": ready["upload"], "seq": 0, "data": "QUJD", "ref": "c"}
        reply = await alice.request({**frame, **bad})
        assert_error(reply, "bad_request")
        # The upload is gone: its next chunk is refused too.
        assert_error(await alice.request(frame), "bad_request")
    assert_error(
        await alice.request({"type": "chunk", "upload": "nope", "seq": 0, "data": "QUJD"}),
        "bad_request",
    )
    await eventually(lambda: temp_files(server) == [])


async def test_more_bytes_than_announced(connect: Any) -> None:
    alice = await connect("alice")
    ready = await alice.request({"type": "upload", "name": "f", "size": 2, "sha256": sha(b"ab")})
    reply = await alice.request(
        {
            "type": "chunk",
            "upload": ready["upload"],
            "seq": 0,
            "data": base64.b64encode(b"abc").decode(),
        }
    )
    assert_error(reply, "bad_request")


async def test_another_sessions_upload_is_not_yours(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    ready = await alice.request({"type": "upload", "name": "f", "size": 3, "sha256": sha(b"abc")})
    chunk = {"type": "chunk", "upload": ready["upload"], "seq": 0, "data": "YWJj"}
    assert_error(await bob.request(chunk), "bad_request")
    assert (await alice.request(chunk))["type"] == "uploaded"


# --- access ---------------------------------------------------------------------------------------


async def test_only_uploader_and_recipients_may_download(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    dave = await connect("dave")
    meta = await uploaded(alice, image("PNG"), "private.png")

    # Before any message: only the uploader.
    unknown = await download(bob, "x" * 22)
    assert isinstance(unknown, dict)
    assert_error(unknown, "no_such_file")
    refused = await download(bob, meta["id"])
    assert isinstance(refused, dict)
    assert_error(refused, "no_such_file")
    # The same answer as for a file that does not exist: its existence is not revealed.
    assert refused["message"] == unknown["message"]
    assert_error(
        await bob.request({"type": "send", "to": "@alice", "text": "mine", "file": meta["id"]}),
        "no_such_file",
    )

    await alice.request({"type": "send", "to": "@bob", "text": "for bob", "file": meta["id"]})
    assert isinstance(await download(bob, meta["id"]), bytes)
    third = await download(carol, meta["id"])
    assert isinstance(third, dict)
    assert_error(third, "no_such_file")

    # A recipient may pass it on; then that recipient's recipient may have it too.
    await bob.request({"type": "send", "to": "@carol", "text": "fwd", "file": meta["id"]})
    assert isinstance(await download(carol, meta["id"]), bytes)
    still = await download(dave, meta["id"])
    assert isinstance(still, dict)
    assert_error(still, "no_such_file")
    assert_error(await alice.request({"type": "download", "file": "y" * 500}), "no_such_file")


async def test_room_members_may_download(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    await alice.request({"type": "create", "room": "team", "invite": ["bob"]})
    await bob.recv_type("invited")
    await bob.request({"type": "accept", "room": "team"})
    meta = await uploaded(alice, os.urandom(5000), "plan.txt")
    await alice.request({"type": "send", "to": "#team", "text": "plan", "file": meta["id"]})
    assert isinstance(await download(bob, meta["id"]), bytes)
    outsider = await download(carol, meta["id"])
    assert isinstance(outsider, dict)
    assert_error(outsider, "no_such_file")


# --- limits ---------------------------------------------------------------------------------------


async def test_two_pending_uploads_per_user(connect: Any, server: Any) -> None:
    alice = await connect("alice", PASSWORD)
    alice2 = await connect("alice", PASSWORD)  # the same user on another terminal
    frame = {"type": "upload", "name": "f", "size": 10, "sha256": sha(b"0123456789")}
    first = await alice.request(frame)
    second = await alice2.request(frame)
    assert first["type"] == second["type"] == "upload_ready"
    third = await alice.request(frame)
    assert_error(third, "rate_limited")
    assert third["retry_after_ms"] > 0
    # Finishing one frees its place.
    chunk = {"type": "chunk", "upload": first["upload"], "seq": 0, "data": "MDEyMzQ1Njc4OQ=="}
    assert (await alice.request(chunk))["type"] == "uploaded"
    assert (await alice.request(frame))["type"] == "upload_ready"
    # Someone else is not counted against alice.
    bob = await connect("bob")
    assert (await bob.request(frame))["type"] == "upload_ready"


async def chunk_reply(wire: Wire, frame: dict[str, Any]) -> dict[str, Any] | None:
    """Send a chunk; return the server's answer to it, or None if it was taken in silently."""
    ref = f"chunk{next(_refs)}"
    await wire.send({**frame, "ref": ref})
    await wire.request({"type": "ping"})  # frames are served in order: any answer came first
    for i, seen in enumerate(wire.backlog):
        if seen.get("ref") == ref:
            return wire.backlog.pop(i)
    return None


async def test_chunk_bytes_are_billed_to_a_byte_rate(start_server: Any, dial: Dialer) -> None:
    step = 32 * 1024
    server = await start_server(upload_rate=2 * step, chunk=step)
    alice = await dial.open(server, "alice")
    data = noise(5 * step)
    ready = await alice.request(
        {"type": "upload", "name": "f", "size": len(data), "sha256": sha(data)}
    )
    frames = [
        {"type": "chunk", "upload": ready["upload"], "seq": seq, "data": b64(data[i : i + step])}
        for seq, i in enumerate(range(0, len(data), step))
    ]
    # All at once: the burst (two chunks) passes, the third does not...
    for frame in frames:
        await alice.send({**frame, "ref": f"c{frame['seq']}"})
    refused = await alice.recv_match(ref="c2")
    assert_error(refused, "rate_limited")
    assert refused["retry_after_ms"] > 0
    # ...nor those sent behind it; the upload itself goes on.
    for seq in (3, 4):
        assert_error(await alice.recv_match(ref=f"c{seq}"), "rate_limited")
    assert not [f for f in alice.backlog if f.get("ref") in {"c0", "c1"}]
    seq = 2
    reply: dict[str, Any] | None = refused
    while reply is None or reply["type"] != "uploaded":
        if reply is not None:
            assert_error(reply, "rate_limited")
            await asyncio.sleep(reply["retry_after_ms"] / 1000)
        reply = await chunk_reply(alice, frames[seq])
        if reply is None:
            seq += 1  # taken in
    assert seq == 4
    assert reply["file"]["sha256"] == sha(data)


async def test_idle_upload_is_discarded(start_server: Any, dial: Dialer) -> None:
    server = await start_server(upload_idle_timeout=0.3, max_pending_uploads=1)
    alice = await dial.open(server, "alice")
    data = os.urandom(40_000)
    ready = await alice.request(
        {"type": "upload", "name": "f", "size": len(data), "sha256": sha(data)}
    )
    piece = base64.b64encode(data[: ready["chunk"]]).decode()
    await alice.send({"type": "chunk", "upload": ready["upload"], "seq": 0, "data": piece})
    assert len(temp_files(server)) == 1
    await eventually(lambda: temp_files(server) == [])
    late = {"type": "chunk", "upload": ready["upload"], "seq": 1, "data": "QUJD"}
    assert_error(await alice.request(late), "bad_request")
    # Its place is free again.
    assert (await alice.request({"type": "upload", "name": "g", "size": 1, "sha256": sha(b"g")}))[
        "type"
    ] == "upload_ready"


async def test_disconnect_mid_upload_leaves_nothing(connect: Any, server: Any) -> None:
    alice = await connect("alice")
    data = os.urandom(200_000)
    ready = await alice.request(
        {"type": "upload", "name": "f", "size": len(data), "sha256": sha(data)}
    )
    step = ready["chunk"]
    for seq in range(3):
        piece = base64.b64encode(data[seq * step : (seq + 1) * step]).decode()
        await alice.send({"type": "chunk", "upload": ready["upload"], "seq": seq, "data": piece})
    await alice.request({"type": "ping"})  # the chunks have been taken in
    assert len(temp_files(server)) == 1
    await alice.close()
    await eventually(lambda: temp_files(server) == [])
    assert stored_files(server) == []
    # alice's pending uploads ended with the connection (she comes back with her token).
    again = await connect()
    assert (await again.hello("alice", resume=alice.welcome["resume"]))["type"] == "welcome"
    for name in ("a", "b"):
        reply = await again.request(
            {"type": "upload", "name": name, "size": 1, "sha256": sha(b"a")}
        )
        assert reply["type"] == "upload_ready"


async def test_concurrent_uploads_from_several_users(connect: Any, server: Any) -> None:
    nicks = ["u1", "u2", "u3", "u4", "u5"]
    wires = [await connect(nick) for nick in nicks]
    shared = image("JPEG", (80, 60))
    own = {nick: noise(150_000, seed=i) for i, nick in enumerate(nicks)}

    async def two(wire: Wire, nick: str) -> tuple[dict[str, Any], dict[str, Any]]:
        # One connection reads one reply at a time: the users run at once, not their files.
        return await uploaded(wire, own[nick], f"{nick}.bin"), await uploaded(wire, shared, "s.jpg")

    results = await asyncio.gather(*(two(w, n) for w, n in zip(wires, nicks, strict=True)))
    ids = set()
    for wire, nick, (mine, common) in zip(wires, nicks, results, strict=True):
        assert mine["sha256"] == sha(own[nick])
        assert (common["mime"], common["width"], common["height"]) == ("image/jpeg", 80, 60)
        ids |= {mine["id"], common["id"]}
        assert await download(wire, mine["id"]) == own[nick]
        assert await download(wire, common["id"]) == shared
    assert len(ids) == 2 * len(nicks)
    assert len(stored_files(server)) == len(nicks) + 1  # the shared one is stored once
    assert temp_files(server) == []


# --- durability -----------------------------------------------------------------------------------


async def test_restart_keeps_files_and_access_rules(start_server: Any, dial: Dialer) -> None:
    server = await start_server()
    alice = await dial.open(server, "alice", PASSWORD)
    bob = await dial.open(server, "bob", PASSWORD)
    carol = await dial.open(server, "carol", PASSWORD)
    dave = await dial.open(server, "dave", PASSWORD)
    await alice.request({"type": "create", "room": "crew", "invite": ["dave"]})
    await dave.recv_type("invited")
    await dave.request({"type": "accept", "room": "crew"})
    await dave.close()  # offline when the file is sent to the room: still a recipient
    photo = image("WEBP", (50, 40))
    notes = os.urandom(70_000)
    photo_meta = await uploaded(alice, photo, "p.webp")
    notes_meta = await uploaded(alice, notes, "n.bin")
    await alice.request({"type": "send", "to": "@bob", "text": "photo", "file": photo_meta["id"]})
    await alice.request({"type": "send", "to": "#crew", "text": "notes", "file": notes_meta["id"]})
    await drain_all(alice, bob, carol)
    await server.close()

    server = await start_server()
    alice = await dial.open(server, "alice", PASSWORD)
    bob = await dial.open(server, "bob", PASSWORD)
    carol = await dial.open(server, "carol", PASSWORD)
    dave = await dial.open(server, "dave", PASSWORD)
    await drain_all(alice, bob, carol, dave)
    assert await download(bob, photo_meta["id"]) == photo
    assert await download(alice, notes_meta["id"]) == notes
    assert await download(dave, notes_meta["id"]) == notes
    for wire, file_id in [
        (carol, photo_meta["id"]),
        (carol, notes_meta["id"]),
        (bob, notes_meta["id"]),
    ]:
        refused = await download(wire, file_id)
        assert isinstance(refused, dict)
        assert_error(refused, "no_such_file")
    history = await bob.request({"type": "history", "with": "@alice"})
    assert history["messages"][-1]["file"] == photo_meta


async def test_crash_leftovers_are_removed_at_start(
    start_server: Any, dial: Dialer, server_config: Any
) -> None:
    server = await start_server(guest_hold=0)
    alice = await dial.open(server, "alice")
    keep = await uploaded(alice, os.urandom(3000))
    await server.close()

    root = Path(server_config.data_dir) / "files"
    (root / "tmp" / "abc.part").write_bytes(b"half an upload")
    orphan = root / "ee" / ("e" * 62)  # renamed into place, then the crash came before the database
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"orphan")
    long_ago = time.time() - 3600
    for path in (root / "tmp" / "abc.part", orphan):
        os.utime(path, (long_ago, long_ago))
    # Written a moment ago: maybe another node's upload, sharing the folder (--files-dir).
    (root / "tmp" / "young.part").write_bytes(b"another node's upload")

    server = await start_server(guest_hold=0)
    await eventually(
        lambda: [p.name for p in temp_files(server)] == ["young.part"] and not orphan.exists()
    )
    alice = await dial.open(server, "alice")
    assert len([p for p in stored_files(server) if p.parent.name != "tmp"]) == 1
    reply = await download(alice, keep["id"])
    assert isinstance(reply, dict)  # a guest's files do not outlive its hold
    assert_error(reply, "no_such_file")


# --- downloads do not starve chat ---------------------------------------------------------------


async def test_chat_flows_while_a_large_file_downloads(start_server: Any, dial: Dialer) -> None:
    size = 16 * 1024 * 1024  # far more than the socket buffers hold once base64-encoded
    server = await start_server(max_upload=size, upload_rate=1 << 30)
    alice = await dial.open(server, "alice")
    bob = await dial.open(server, "bob")
    carol = await dial.open(server, "carol")
    data = os.urandom(size)
    meta = await uploaded(alice, data, "big.bin")
    await alice.request({"type": "send", "to": "@bob", "text": "big one", "file": meta["id"]})
    await drain_all(alice, bob, carol)

    ref = "big"
    await bob.send({"type": "download", "file": meta["id"], "ref": ref})
    first = await bob.recv_match(ref=ref)
    assert first["type"] == "file_data"
    assert first["seq"] == 0
    # bob reads nothing more for now: his download is stuck behind his own socket.
    echo = await say(carol, "@bob", "while you download")
    assert echo["type"] == "message"
    assert (await say(alice, "@carol", "others are not slowed"))["type"] == "message"
    # bob's own requests are still served, and his chat arrives before the file is done.
    mine = await say(bob, "@carol", "me too", ref="bob-says")
    assert mine["type"] == "message"
    assert not any(f.get("last") for f in bob.backlog)
    assert any(f.get("text") == "while you download" for f in bob.backlog)
    assert (await carol.recv_match(text="me too"))["from"] == "bob"

    parts = [base64.b64decode(first["data"])]
    while True:
        frame = await bob.recv_match(ref=ref)
        assert frame["type"] == "file_data", frame
        parts.append(base64.b64decode(frame["data"]))
        if frame["last"]:
            break
    assert hashlib.sha256(b"".join(parts)).hexdigest() == meta["sha256"]
