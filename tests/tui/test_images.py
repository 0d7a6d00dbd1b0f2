"""Picture geometry and decoding (no app): sizes that keep the aspect, half blocks, shades."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from tlschat.tui.images import (
    Terminal,
    full_size,
    inline_renderer,
    inline_size,
    render_cells,
    render_sixel,
)

HALF = Terminal("halfcell", 10, 20)


def test_inline_size_fits_width_and_height_keeping_aspect() -> None:
    # Wide: limited by the width; rows = columns × h/w × (cell width / cell height).
    assert inline_size(400, 100, max_columns=40, max_rows=14, terminal=HALF) == (40, 5)
    # Tall: limited by the height, then as narrow as the aspect asks.
    assert inline_size(100, 400, max_columns=40, max_rows=10, terminal=HALF) == (5, 10)
    # Small: never enlarged past one pixel a column.
    assert inline_size(16, 16, max_columns=40, max_rows=14, terminal=HALF) == (16, 8)
    # Kitty graphics: real pixels (10 px a cell), never enlarged.
    kitty = Terminal("tgp", 10, 20)
    assert inline_size(200, 100, max_columns=40, max_rows=14, terminal=kitty) == (20, 5)
    sixel = Terminal("sixel", 10, 20)  # likewise
    assert inline_size(200, 100, max_columns=40, max_rows=14, terminal=sixel) == (20, 5)
    assert inline_size(0, 10, max_columns=40, max_rows=14, terminal=HALF) == (0, 0)


def test_full_size() -> None:
    assert full_size(160, 100, HALF) == (160, 50)
    assert full_size(5000, 100, HALF)[0] == 400  # it scrolls, up to a point
    assert full_size(160, 100, Terminal("sixel", 10, 20)) == (16, 5)


def test_half_blocks_carry_two_pixels_a_cell(tmp_path: Path) -> None:
    picture = Image.new("RGB", (2, 2), (255, 0, 0))
    picture.putpixel((0, 1), (0, 0, 255))
    picture.putpixel((1, 1), (0, 0, 255))
    path = tmp_path / "p.png"
    picture.save(path)
    (strip,) = render_cells(path, 2, 1, mode="halfcell")
    assert strip.text == "▀▀"
    (segment,) = list(strip)  # one style for both cells: simplified
    assert segment.style is not None
    assert segment.style.color is not None
    assert segment.style.bgcolor is not None
    assert segment.style.color.get_truecolor() == (255, 0, 0)
    assert segment.style.bgcolor.get_truecolor() == (0, 0, 255)


def test_transparency_shows_the_background(tmp_path: Path) -> None:
    path = tmp_path / "clear.png"
    Image.new("RGBA", (2, 2), (255, 255, 255, 0)).save(path)
    (strip,) = render_cells(path, 2, 1, mode="halfcell", background=(1, 2, 3))
    style = next(iter(strip)).style
    assert style is not None
    assert style.color is not None
    assert style.color.get_truecolor() == (1, 2, 3)


def test_shades_without_colours(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    picture = Image.new("L", (2, 1), 0)
    picture.putpixel((1, 0), 255)
    picture.save(path)
    (strip,) = render_cells(path, 2, 1, mode="unicode")
    assert strip.text == " █"


def test_inline_renderer_follows_what_the_terminal_can_do() -> None:
    assert inline_renderer(Terminal("tgp")) == "kitty"
    assert inline_renderer(Terminal("sixel")) == "sixel"
    assert inline_renderer(Terminal("halfcell")) == "cells"  # anywhere: SSH, tmux, screen
    assert inline_renderer(Terminal("unicode")) == "cells"


def test_sixel_rows_draw_their_band_over_blank_cells(tmp_path: Path) -> None:
    path = tmp_path / "p.png"
    Image.new("RGB", (40, 40), (255, 0, 0)).save(path)
    strips = render_sixel(path, 4, 2, Terminal("sixel", 10, 20), background=(1, 2, 3))
    assert len(strips) == 2
    for strip in strips:
        assert strip.cell_length == 4
        cells, draw = list(strip)
        assert cells.text == "    "  # the cells the band is drawn over
        assert draw.control  # no width: never padded, measured or styled
        assert draw.style is None
        # back over the 4 cells, one band of 4×10 by 20 pixels, the cursor back where it was
        assert draw.text.startswith('\x1b7\x1b[4D\x1bP0;1;0q"1;1;40;20')
        assert draw.text.endswith("\x1b\\\x1b8")
        assert "#0;2;100;0;0" in draw.text  # red, as a Sixel colour register (in percent)
