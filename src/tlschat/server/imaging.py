"""What an upload is, from its bytes alone; images verified by decoding.

Blocking and, for hostile bytes, costly: the daemon runs `analyse` in a child process of its
own (`python -m tlschat.server.imaging PATH`, see server/image_check.py) with a memory and a
CPU limit, so an image bomb can cost neither the daemon's memory nor its time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import filetype
from PIL import Image

OCTET_STREAM = "application/octet-stream"
"""The type of every file that is not one of the images below (PROTOCOL.md "Files and images")."""

IMAGE_FORMATS: dict[str, tuple[str, str]] = {
    "image/png": ("image/png", "PNG"),
    "image/apng": ("image/png", "PNG"),  # an animated PNG is still a PNG
    "image/jpeg": ("image/jpeg", "JPEG"),
    "image/gif": ("image/gif", "GIF"),
    "image/webp": ("image/webp", "WEBP"),
}
"""Sniffed type -> (the `mime` we report, the only Pillow decoder allowed to open it)."""

SNIFF_BYTES = 8192
"""How much of the head `filetype` looks at."""

MAX_PIXELS = 16 * 1024 * 1024
"""Refuse larger canvases before decoding a single pixel: a few bytes may declare a huge image
(a decompression bomb). 16 megapixels decode to at most 64 MiB (4 bytes a pixel): the bound on
what checking one image may cost (a 4900x3300 photo still fits)."""

ANIMATION_BUDGET = 4 * MAX_PIXELS
"""Pixels decoded in all of an animation's frames; past it the rest is not checked."""

MAX_FRAMES = 256
"""Frames of an animation checked at most; the rest is not decoded (a GIF of 300 000 one-pixel
frames would otherwise take seconds of CPU). Never asks for `n_frames`, which reads them all."""


class BadImage(Exception):
    """The bytes start like an image, but they are not one we can decode."""


@dataclass(frozen=True)
class Analysis:
    mime: str
    width: int | None = None
    height: int | None = None


def sniff(head: bytes) -> str | None:
    """The image type the first bytes announce (a key of IMAGE_FORMATS), or None."""
    mime = filetype.guess_mime(head)
    return mime if mime in IMAGE_FORMATS else None


def analyse(path: Path, max_pixels: int = MAX_PIXELS) -> Analysis:
    """The type of the file at `path` and, for an image, its size from a full decode.

    Raise BadImage when the bytes announce an image that does not decode (truncated, garbage,
    too many pixels). The name of the file plays no part: only its bytes.
    """
    with path.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
    sniffed = sniff(head)
    if sniffed is None:
        return Analysis(OCTET_STREAM)
    mime, fmt = IMAGE_FORMATS[sniffed]
    width, height = decode(path, fmt, max_pixels)
    return Analysis(mime, width, height)


def decode(path: Path, fmt: str, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Decode the image with the `fmt` decoder only; return (width, height). Raise BadImage."""
    try:
        # verify() reads a PNG to its end and checks every chunk's CRC; it spends the image.
        with Image.open(path, formats=[fmt]) as img:
            _check_size(img.size, max_pixels)
            img.verify()
        with Image.open(path, formats=[fmt]) as img:
            width, height = img.size
            img.load()
            budget = ANIMATION_BUDGET - width * height
            for index in range(1, MAX_FRAMES):
                if budget < width * height or not getattr(img, "is_animated", False):
                    break
                try:
                    img.seek(index)
                except EOFError:
                    break
                img.load()
                budget -= width * height
    except BadImage:
        raise
    except Exception as exc:
        # Pillow's parsers raise many kinds (OSError, SyntaxError, ValueError, struct.error,
        # DecompressionBombError...): for untrusted bytes every one means "not a valid image".
        raise BadImage(f"not a valid {fmt} image") from exc
    return width, height


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise BadImage("the image has no pixels")
    if width * height > max_pixels:
        raise BadImage(f"the image is too large ({width}x{height} pixels)")


# --- the child process: `python -m tlschat.server.imaging PATH` -------------------------------

CHILD_MEMORY = 512 * 1024 * 1024
"""Address space the checking process may use: Python, Pillow and one 64 MiB image fit."""
CHILD_CPU_SECONDS = 10


def _child(path: str) -> None:
    """Print the analysis of `path` as one JSON line: `{"mime",...}` or `{"error": TEXT}`."""
    import json
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))
    resource.setrlimit(resource.RLIMIT_CPU, (CHILD_CPU_SECONDS, CHILD_CPU_SECONDS))
    try:
        found = analyse(Path(path))
    except BadImage as exc:
        print(json.dumps({"error": str(exc)}))
    except MemoryError:
        print(json.dumps({"error": "the image needs too much memory to check"}))
    else:
        print(json.dumps({"mime": found.mime, "width": found.width, "height": found.height}))


if __name__ == "__main__":
    import sys

    _child(sys.argv[1])
