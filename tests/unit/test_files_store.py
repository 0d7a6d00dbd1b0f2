"""server/files.py without sockets: display names and the start-up sweep."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlschat.protocol import ErrorCode
from tlschat.server.connection import RequestError
from tlschat.server.files import _sweep, display_name


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

    removed = _sweep(root, temp, {"ab" + "c" * 62})

    assert removed == 3
    assert kept.exists()
    assert not orphan.exists()
    assert other.exists()
    assert list(temp.iterdir()) == []


def test_sweep_creates_the_folders(tmp_path: Path) -> None:
    root = tmp_path / "data" / "files"
    assert _sweep(root, root / "tmp", set()) == 0
    assert (root / "tmp").is_dir()
