"""Pictures as terminal cells: which renderer the terminal supports, and decoding off the loop.

`detect()` imports textual-image, which asks the terminal what it supports (Sixel, the Kitty
graphics protocol) and how large a cell is; that only works before Textual owns the terminal,
so `run_tui` calls it before the app starts. Everything that decodes or scales runs in a worker
thread (`render_cells` is blocking: call it through `asyncio.to_thread`).
"""

from __future__ import annotations

import base64
import io
import itertools
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rich.color import Color
from rich.color_triplet import ColorTriplet
from rich.segment import ControlType, Segment
from rich.style import Style
from textual.strip import Strip

log = logging.getLogger(__name__)

Mode = Literal["halfcell", "unicode", "sixel", "tgp"]
"""How pictures reach the screen: colored half blocks, grey shades, Sixel or Kitty graphics."""

MODES: tuple[Mode, ...] = ("halfcell", "unicode", "sixel", "tgp")

MAX_DECODE_PIXELS = 64_000_000
"""Larger pictures are not decoded (the server refuses more than that too)."""

FULL_SIZE_MAX_COLUMNS = 400
"""A full-size view never gets wider than this (it scrolls)."""


@dataclass(frozen=True)
class Terminal:
    """What the terminal can show: the renderer, and a cell's size in pixels."""

    mode: Mode = "halfcell"
    cell_width: int = 10
    cell_height: int = 20

    @property
    def cell_aspect(self) -> float:
        """A cell's width over its height (about 0.5)."""
        return self.cell_width / self.cell_height if self.cell_height else 0.5

    @property
    def graphics(self) -> bool:
        """True with real pixels (Sixel or Kitty) in the full-size view."""
        return self.mode in ("sixel", "tgp")


Renderer = Literal["kitty", "sixel", "cells"]
"""How a picture in the log is drawn: Kitty placeholders, Sixel bands, or cells (half blocks,
or grey shades)."""


def inline_renderer(terminal: Terminal) -> Renderer:
    """The renderer for pictures in the log on `terminal`: real pixels where it has graphics,
    half blocks (or shades) otherwise, which work anywhere (plain SSH, tmux, screen)."""
    if terminal.mode == "tgp":
        return "kitty"
    if terminal.mode == "sixel":
        return "sixel"
    return "cells"


_detected: Terminal | None = None


def detect() -> Terminal:
    """The terminal's renderer (`TLSCHAT_IMAGES` overrides it) and cell size; asks once.

    Call before the Textual app starts: textual-image queries the terminal on import.
    """
    global _detected
    if _detected is not None:
        return _detected
    forced = os.environ.get("TLSCHAT_IMAGES", "").strip().lower()
    mode: Mode = "halfcell"
    cell_width, cell_height = 10, 20
    try:
        import textual_image.renderable as renderable
        import textual_image.widget  # noqa: F401 - fills the cell-size cache while it still can
        from textual_image._terminal import get_cell_size

        chosen = renderable.Image
        if chosen is renderable.SixelImage:
            mode = "sixel"
        elif chosen is renderable.TGPImage:
            mode = "tgp"
        elif chosen is renderable.UnicodeImage:
            mode = "unicode"
        size = get_cell_size()
        cell_width, cell_height = size.width, size.height
    except Exception as exc:  # no terminal, or one that answers oddly: half blocks work anywhere
        log.debug("textual-image terminal detection failed: %r", exc)
    if forced in MODES:
        mode = forced
    _detected = Terminal(mode, cell_width, cell_height)
    return _detected


def inline_size(
    width: int, height: int, *, max_columns: int, max_rows: int, terminal: Terminal
) -> tuple[int, int]:
    """Cells (columns, rows) for a `width`×`height` picture in the log: never wider than
    `max_columns` nor taller than `max_rows`, never enlarged past one pixel per half cell
    (with Kitty graphics: past its real size), keeping the aspect ratio (a cell is
    `terminal.cell_aspect` as wide as it is tall)."""
    if width <= 0 or height <= 0 or max_columns <= 0 or max_rows <= 0:
        return 0, 0
    natural = width
    if terminal.graphics:
        natural = max(1, -(-width // max(1, terminal.cell_width)))
    columns = min(max_columns, natural, len(_DIACRITICS) if _DIACRITICS else max_columns)
    rows = _rows_for(columns, width, height, terminal)
    if rows > max_rows:
        rows = min(max_rows, len(_DIACRITICS)) if _DIACRITICS else max_rows
        columns = max(1, min(max_columns, round(rows * width / height / terminal.cell_aspect)))
    return columns, max(1, rows)


def full_size(width: int, height: int, terminal: Terminal) -> tuple[int, int]:
    """Cells for the full-size view: real pixels with graphics, one pixel a half cell otherwise."""
    if terminal.graphics:
        columns = max(1, round(width / max(1, terminal.cell_width)))
    else:
        columns = width
    columns = min(columns, FULL_SIZE_MAX_COLUMNS)
    return columns, max(1, _rows_for(columns, width, height, terminal))


def _rows_for(columns: int, width: int, height: int, terminal: Terminal) -> int:
    return max(1, round(columns * height / width * terminal.cell_aspect))


def open_picture(path: Path, size: tuple[int, int] | None = None) -> object:
    """Decode a picture fully (first frame), in RGBA or RGB: blocking, for a worker thread.

    With `size`, a JPEG may be decoded at a reduced scale that still covers it (much faster
    for a camera's photo shown in a few dozen cells).
    """
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_DECODE_PIXELS
    with Image.open(path) as img:
        img.seek(0)
        if size is not None:
            img.draft("RGB", size)
        img.load()
        mode = "RGBA" if img.mode in ("RGBA", "LA", "P", "PA") else "RGB"
        return img.convert(mode)


def render_cells(
    path: Path,
    columns: int,
    rows: int,
    *,
    mode: Mode,
    background: tuple[int, int, int] = (0, 0, 0),
) -> list[Strip]:
    """The picture at `path` as `rows` strips of `columns` cells: blocking, for a worker thread.

    Half blocks (`▀`, top pixel in the foreground colour, bottom in the background) in every
    mode but `unicode` (grey shades, for terminals without colours). Transparent parts show
    `background`.
    """
    from PIL import Image

    picture = open_picture(path, (columns, rows * 2))
    assert isinstance(picture, Image.Image)
    if picture.mode == "RGBA":
        flat = Image.new("RGB", picture.size, background)
        flat.paste(picture, mask=picture.getchannel("A"))
        picture = flat
    if mode == "unicode":
        return _shades(picture.convert("L").resize((columns, rows), Image.Resampling.LANCZOS))
    scaled = picture.resize((columns, rows * 2), Image.Resampling.LANCZOS)
    pixels = scaled.load()
    assert pixels is not None
    styles: dict[tuple[object, object], Style] = {}
    strips: list[Strip] = []
    for row in range(rows):
        segments: list[Segment] = []
        for column in range(columns):
            top = pixels[column, row * 2]
            bottom = pixels[column, row * 2 + 1]
            key = (top, bottom)
            style = styles.get(key)
            if style is None:
                style = Style(color=_color(top), bgcolor=_color(bottom))
                styles[key] = style
            segments.append(Segment("▀", style))
        strips.append(Strip(Segment.simplify(segments), columns))
    return strips


_SHADES = " ░▒▓█"
"""From dark to light: light text on a dark terminal draws the bright parts."""


def _shades(picture: object) -> list[Strip]:
    from PIL import Image

    assert isinstance(picture, Image.Image)
    pixels = picture.load()
    assert pixels is not None
    strips = []
    for row in range(picture.height):
        line = "".join(
            _SHADES[min(4, _grey(pixels[column, row]) * 5 // 256)]
            for column in range(picture.width)
        )
        strips.append(Strip([Segment(line)], picture.width))
    return strips


def _grey(pixel: object) -> int:
    return int(pixel[0]) if isinstance(pixel, tuple) else int(pixel)  # type: ignore[call-overload]


def _color(pixel: object) -> Color:
    if isinstance(pixel, tuple):
        r, g, b = (int(v) for v in pixel[:3])
    else:
        r = g = b = int(pixel)  # type: ignore[call-overload]
    return Color.from_triplet(ColorTriplet(r, g, b))


# --- the Kitty graphics protocol, inline ---------------------------------------------------------
#
# The picture is sent to the terminal once, with a "virtual placement" of columns×rows cells;
# the log then draws ordinary text cells (U+10EEEE plus combining marks naming the row and the
# column, the foreground colour naming the picture), so it scrolls, wraps and crops like text.
# The same scheme as textual-image's TGP renderable, whose table of marks it uses.

_PLACEHOLDER = "\U0010eeee"

try:
    from textual_image.renderable.tgp import _NUMBER_TO_DIACRITIC as _MARKS

    _DIACRITICS: tuple[str, ...] = tuple(chr(code) for code in _MARKS)
except Exception:  # pragma: no cover - textual-image is a dependency
    _DIACRITICS = ()

_kitty_ids = itertools.count(random.randint(1, 2**24))


@dataclass(frozen=True)
class KittyPicture:
    """What the log needs for one picture: the escape codes that send it, and its cells."""

    image_id: int
    transmit: str
    """Write once to the terminal (the Textual driver's `write`) before the strips show."""
    strips: list[Strip]


def render_kitty(path: Path, columns: int, rows: int, terminal: Terminal) -> KittyPicture:
    """The picture at `path` scaled to columns×rows cells of real pixels: blocking (decoding,
    scaling and PNG encoding), for a worker thread."""
    from PIL import Image

    size = (max(1, columns * terminal.cell_width), max(1, rows * terminal.cell_height))
    picture = open_picture(path, size)
    assert isinstance(picture, Image.Image)
    buffer = io.BytesIO()
    picture.resize(size, Image.Resampling.LANCZOS).save(buffer, format="PNG", compress_level=2)
    payload = base64.b64encode(buffer.getvalue()).decode("ascii")
    image_id = next(_kitty_ids) % (2**24 - 1) + 1
    parts = []
    while payload:
        chunk, payload = payload[:4096], payload[4096:]
        more = 1 if payload else 0
        parts.append(f"\x1b_Gi={image_id},m={more},f=100,q=2;{chunk}\x1b\\")
    parts.append(f"\x1b_Ga=p,i={image_id},c={columns},r={rows},U=1,q=2\x1b\\")
    style = Style(color=f"rgb({(image_id >> 16) & 255},{(image_id >> 8) & 255},{image_id & 255})")
    strips = []
    for row in range(rows):
        text = "".join(
            f"{_PLACEHOLDER}{_DIACRITICS[row]}{_DIACRITICS[column]}" for column in range(columns)
        )
        strips.append(Strip([Segment(text, style)], columns))
    return KittyPicture(image_id, "".join(parts), strips)


# --- Sixel, inline -------------------------------------------------------------------------------
#
# A Sixel picture is pixels drawn from the cursor on, over whatever cells were there; text
# written later over those cells erases it. So the log draws a picture row by row: each line
# holds blank cells, then (a zero-width control segment) "back to the first of those cells,
# this row's band of pixels, cursor back". A line redrawn (scrolling, a partial refresh)
# redraws its own band, and a picture scrolled half out of view shows its visible rows.

_SIXEL_OPAQUE = "\x1bP0;0;0q"
_SIXEL_CLEAR = "\x1bP0;1;0q"
"""P2=1: pixels a band does not set are left alone. A cell is seldom a multiple of 6 pixels
tall, the height of a sixel row: the rest of the last sixel row must not paint the cell
below."""

_NO_MOVE = ((ControlType.CURSOR_FORWARD, 0),)
"""Marks a segment as a control code of no width, so that nothing pads or measures it."""


def render_sixel(
    path: Path,
    columns: int,
    rows: int,
    terminal: Terminal,
    background: tuple[int, int, int] = (0, 0, 0),
) -> list[Strip]:
    """The picture at `path` scaled to columns×rows cells of real pixels, as `rows` lines of
    blank cells that each draw their band of the picture: blocking (decoding, scaling and
    Sixel encoding), for a worker thread."""
    from PIL import Image
    from textual_image._sixel import image_to_sixels

    width = max(1, columns * terminal.cell_width)
    band = max(1, terminal.cell_height)
    picture = open_picture(path, (width, band * rows))
    assert isinstance(picture, Image.Image)
    if picture.mode == "RGBA":
        flat = Image.new("RGB", picture.size, background)
        flat.paste(picture, mask=picture.getchannel("A"))
        picture = flat
    scaled = picture.resize((width, band * rows), Image.Resampling.LANCZOS)
    blank = Style(bgcolor=_color(background))
    strips = []
    for row in range(rows):
        pixels = scaled.crop((0, row * band, width, (row + 1) * band))
        sixels = image_to_sixels(pixels, background=(*background, 1.0))
        sixels = sixels.replace(_SIXEL_OPAQUE, _SIXEL_CLEAR, 1)
        draw = f"\x1b7\x1b[{columns}D{sixels}\x1b8"  # save, back, draw, restore the cursor
        strips.append(
            Strip([Segment(" " * columns, blank), Segment(draw, None, _NO_MOVE)], columns)
        )
    return strips
