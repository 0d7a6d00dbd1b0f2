"""server/imaging.py: what a file is, from its bytes; images verified by decoding (no sockets)."""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from tlschat.server import imaging


def picture(fmt: str, size: tuple[int, int] = (31, 17)) -> bytes:
    width, height = size
    pixels = random.Random(width).randbytes(width * height * 3)
    img = Image.frombytes("RGB", size, pixels)
    if fmt == "GIF":
        img = img.convert("P")
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
        + chunk(b"IEND", b"")
    )


def write(tmp_path: Path, data: bytes, name: str = "upload.part") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("WEBP", "image/webp")],
)
def test_images_are_sniffed_and_measured(tmp_path: Path, fmt: str, mime: str) -> None:
    data = picture(fmt)
    assert imaging.sniff(data[: imaging.SNIFF_BYTES]) == mime
    assert imaging.analyse(write(tmp_path, data)) == imaging.Analysis(mime, 31, 17)


def test_animated_png_is_a_png(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 6), color) for color in ("red", "blue")]
    out = io.BytesIO()
    frames[0].save(out, format="PNG", save_all=True, append_images=frames[1:])
    assert imaging.analyse(write(tmp_path, out.getvalue())) == imaging.Analysis("image/png", 8, 6)


@pytest.mark.parametrize(
    "data",
    [
        b"hello, world\n" * 100,
        b"",
        b"%PDF-1.7\n" + b"0" * 100,  # a known type, but not an image we show: bytes
        b"BM" + b"\0" * 100,  # BMP is not one of the four
        b"\x89PN",  # too short to be anything
    ],
)
def test_everything_else_is_octet_stream(tmp_path: Path, data: bytes) -> None:
    assert imaging.analyse(write(tmp_path, data)) == imaging.Analysis("application/octet-stream")


def test_name_plays_no_part(tmp_path: Path) -> None:
    text = write(tmp_path, b"not a picture", "picture.png")
    assert imaging.analyse(text).mime == "application/octet-stream"
    png = write(tmp_path, picture("PNG"), "notes.txt")
    assert imaging.analyse(png).mime == "image/png"


@pytest.mark.parametrize(
    "data",
    [
        picture("PNG", (64, 64))[:-100],
        picture("PNG", (64, 64))[:60],
        b"\x89PNG\r\n\x1a\n" + random.Random(1).randbytes(4000),
        picture("JPEG", (64, 64))[:-1500],
        b"\xff\xd8\xff\xe0" + random.Random(2).randbytes(4000),
        picture("GIF", (64, 64))[:-200],
        picture("WEBP", (64, 64))[:-200],
    ],
    ids=["png-cut", "png-head", "png-garbage", "jpeg-cut", "jpeg-garbage", "gif-cut", "webp-cut"],
)
def test_broken_images_are_bad(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(imaging.BadImage):
        imaging.analyse(write(tmp_path, data))


def test_too_many_pixels_is_refused_before_decoding(tmp_path: Path) -> None:
    bomb = write(tmp_path, png_declaring(8_000, 8_000))  # 64 MP: under Pillow's own limit
    with pytest.raises(imaging.BadImage, match="too large"):
        imaging.analyse(bomb)
    with pytest.raises(imaging.BadImage):
        imaging.analyse(write(tmp_path, png_declaring(100_000, 100_000), "huge"))
    small = write(tmp_path, picture("PNG", (40, 40)), "small")
    with pytest.raises(imaging.BadImage, match="too large"):
        imaging.analyse(small, max_pixels=1000)
    assert imaging.analyse(small, max_pixels=1600).width == 40


def test_decoder_is_the_sniffed_one(tmp_path: Path) -> None:
    # A JPEG signature in front of PNG bytes: only the JPEG decoder may look at it.
    data = b"\xff\xd8\xff" + picture("PNG")
    with pytest.raises(imaging.BadImage):
        imaging.analyse(write(tmp_path, data))
