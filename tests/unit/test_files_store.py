"""server/files.py without sockets: display names, the start-up sweep, garbage collection."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tlschat.protocol import ErrorCode, RequestError
from tlschat.server.files import _sweep, _unlink_blobs, display_name
from tlschat.server.sqlite_store import SqliteStore
from tlschat.server.store import NewMessage, StoredBlob


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("photo.png", "photo.png"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\cat.jpg", "cat.jpg"),
        ("dir/sub/", "sub"),
        (" spaced .txt ", "spaced .txt"),
        (".hidden", ".hidden"),
        ("名前.txt", "名前.txt"),
    ],
)
def test_display_name_keeps_the_last_component(raw: str, shown: str) -> None:
    assert display_name(raw) == shown


@pytest.mark.parametrize(
    "raw",
    ["a\x00b", "a\nb", "a\tb", "\x1b[2J", "x\x7f", "x\x9b", "cat\u202egnp.exe", "x\u2066y",
     ".", "..", "/", "a/..", "\\\\", "  "],
)  # fmt: skip
def test_display_name_refuses(raw: str) -> None:
    with pytest.raises(RequestError) as caught:
        display_name(raw)
    assert caught.value.code is ErrorCode.BAD_REQUEST


def test_sweep_removes_partial_uploads_and_unrecorded_blobs(tmp_path: Path) -> None:
    root = tmp_path / "files"
    temp = root / "tmp"
    temp.mkdir(parents=True)
    (temp / "x.part").write_bytes(b"partial")
    (temp / "stray").mkdir()
    kept = root / "ab" / ("c" * 62)
    orphan = root / "ab" / ("d" * 62)
    kept.parent.mkdir()
    kept.write_bytes(b"kept")
    orphan.write_bytes(b"orphan")
    other = root / "README"
    other.write_text("not ours to judge")

    young = root / "ab" / ("f" * 62)  # another node placing it, sharing the folder
    long_ago = time.time() - 3600
    for path in (temp / "x.part", temp / "stray", kept, orphan, other):
        os.utime(path, (long_ago, long_ago))
    young.write_bytes(b"being placed")

    removed = _sweep(root, temp, {"ab" + "c" * 62}, before=time.time() - 60)

    assert removed == 3
    assert young.exists()
    assert kept.exists()
    assert not orphan.exists()
    assert other.exists()
    assert list(temp.iterdir()) == []


def test_sweep_creates_the_folders(tmp_path: Path) -> None:
    root = tmp_path / "data" / "files"
    assert _sweep(root, root / "tmp", set(), before=time.time()) == 0
    assert (root / "tmp").is_dir()


# --- garbage collection ---------------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    db = SqliteStore(tmp_path / "t.db")
    await db.open()
    yield db
    await db.close()


async def _access(store: SqliteStore) -> set[tuple[str, str]]:
    return {
        (row[0], row[1]) for row in await store.read("SELECT file_id, identity FROM file_access")
    }


async def test_unsent_files_go_with_their_access_rows_and_sent_ones_stay(
    store: SqliteStore,
) -> None:
    for sha in ("a" * 64, "b" * 64):
        await store.add_blob(StoredBlob(sha, 1, "application/octet-stream", None, None))
    await store.add_file("unsent", "a" * 64, "u.bin", "alice")
    await store.add_file("sent", "a" * 64, "s.bin", "alice")
    await store.add_file("kept", "b" * 64, "k.bin", "alice")
    await store.add_message(
        NewMessage(ts="t", sender="alice", to_addr="@bob", text="", file_id="sent")
    )
    await store.grant_file("unsent", ["bob"])
    await store.grant_file("sent", ["bob"])

    # Too young: nothing goes.
    assert await store.delete_unsent_files(time.time() - 60) == []
    deleted = await store.delete_unsent_files(time.time() + 1, keep=["kept"])

    assert deleted == ["unsent"]
    assert set(await store.files(["unsent", "sent", "kept"])) == {"sent", "kept"}
    assert await _access(store) == {("sent", "bob")}
    # Both blobs are still named by a file.
    assert await store.delete_unused_blobs() == []
    assert await store.delete_unsent_files(time.time() + 1) == ["kept"]
    assert await store.delete_unused_blobs() == ["b" * 64]
    assert await store.blob_hashes() == {"a" * 64}


async def test_files_of_a_deleted_room_become_unsent(store: SqliteStore) -> None:
    await store.add_blob(StoredBlob("c" * 64, 1, "text/plain", None, None))
    await store.add_file("f", "c" * 64, "f.txt", "alice")
    await store.create_room("crew", "crew", False, None)
    await store.add_message(
        NewMessage(ts="t", sender="alice", to_addr="#crew", text="", room_key="crew", file_id="f")
    )
    assert await store.delete_unsent_files(time.time() + 1) == []

    await store.delete_room("crew")

    assert await store.delete_unsent_files(time.time() + 1) == ["f"]
    assert await store.delete_unused_blobs() == ["c" * 64]


def test_unlink_blobs_removes_content_and_skips_what_is_gone(tmp_path: Path) -> None:
    root = tmp_path / "files"
    gone = "ab" + "c" * 62
    kept = "ab" + "d" * 62
    (root / "ab").mkdir(parents=True)
    (root / "ab" / gone[2:]).write_bytes(b"x")
    (root / "ab" / kept[2:]).write_bytes(b"y")

    assert _unlink_blobs(root, [gone, "ef" + "0" * 62]) == 1

    assert not (root / "ab" / gone[2:]).exists()
    assert (root / "ab" / kept[2:]).exists()
