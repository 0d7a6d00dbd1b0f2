"""What a message's file looks like in the log: a picture (loaded lazily) or a card with Save.

Plain data and strips, no network: the log asks for a file's local copy with
`MessageLog.FileWanted`, and its owner answers with `file_ready()` or `file_failed()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

from tlschat.client.attachments import human_size, is_image
from tlschat.protocol import FileMeta
from tlschat.tui.images import Terminal, inline_size

INDENT = 8
"""Cells before the text column of the log (time 5, space, mark 1, space)."""

MAX_ROWS = 14
"""The tallest a picture gets in the log (a full-size view shows more)."""

MIN_ROWS = 4

CARD_WIDTH = 44

SAVE_LABEL = " Save "


@dataclass
class FileState:
    """Where one file stands: not asked for, downloading, here (with its path), or failed."""

    status: str = "new"
    """`new`, `loading`, `ready` or `failed`."""
    path: Path | None = None
    error: str = ""
    pictures: dict[tuple[int, int], list[Strip]] = field(default_factory=dict)
    """Decoded strips by (columns, rows)."""
    decoding: set[tuple[int, int]] = field(default_factory=set)


def picture_box(
    meta: FileMeta, text_width: int, screen_height: int, terminal: Terminal
) -> tuple[int, int]:
    """(columns, rows) of `meta`'s picture in a log `text_width` wide, on a terminal
    `screen_height` rows tall (not the log's height, which changes with the bars around it:
    a picture keeps its size)."""
    width, height = meta.width or 1, meta.height or 1
    max_rows = max(MIN_ROWS, min(MAX_ROWS, screen_height // 2))
    return inline_size(width, height, max_columns=text_width, max_rows=max_rows, terminal=terminal)


def placeholder(columns: int, rows: int, label: str, style: Style) -> list[Strip]:
    """A shaded box the size of the picture, `label` in its middle, while it loads."""
    strips = []
    text = label if cell_len(label) <= columns else label[: max(0, columns - 1)] + "…"
    for row in range(rows):
        if row == rows // 2 and text:
            left = (columns - cell_len(text)) // 2
            line = " " * left + text + " " * (columns - left - cell_len(text))
        else:
            line = " " * columns
        strips.append(Strip([Segment(line, style)], columns))
    return strips


def card(meta: FileMeta, width: int, style: Style, button: Style, error: str = "") -> list[Strip]:
    """A file that is not a picture: its name and a Save button, then its type and size."""
    inner = max(12, min(CARD_WIDTH, width) - 2)
    room = inner - 2  # between "│ " and " │"

    def fit(text: str, cells: int) -> str:
        return text if cell_len(text) <= cells else text[: max(0, cells - 1)] + "…"

    def line(*parts: tuple[str, Style]) -> Strip:
        segments = [Segment(text, part_style) for text, part_style in parts]
        return Strip(segments).adjust_cell_length(inner + 2, style)

    name = fit(meta.name, room - cell_len(SAVE_LABEL) - 1)
    gap = room - cell_len(name) - cell_len(SAVE_LABEL)
    details = fit(f"{meta.mime} · {human_size(meta.size)}", room)
    lines = [
        line(("╭" + "─" * inner + "╮", style)),
        line(
            ("│ ", style),
            (name, style + Style(bold=True)),
            (" " * gap, style),
            (SAVE_LABEL, button),
            (" │", style),
        ),
        line(("│ ", style), (details.ljust(room), style), (" │", style)),
    ]
    if error:
        lines.append(
            line(
                ("│ ", style),
                (fit(error, room).ljust(room), style + Style(italic=True)),
                (" │", style),
            )
        )
    lines.append(line(("╰" + "─" * inner + "╯", style)))
    return lines


def indent(strips: list[Strip], width: int, style: Style) -> list[Strip]:
    """`strips` moved to the log's text column and padded to `width`."""
    pad = Segment(" " * INDENT, style)
    return [Strip([pad, *strip]).adjust_cell_length(width, style) for strip in strips]


def wants_picture(meta: FileMeta) -> bool:
    return is_image(meta)
