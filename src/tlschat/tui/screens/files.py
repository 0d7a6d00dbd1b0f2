"""Dialogs for files: pick one to send, choose where to save one, view a picture full size."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar

import platformdirs
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.geometry import Size
from textual.screen import ModalScreen
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Button, DirectoryTree, Input, Label, Static

from tlschat.client.attachments import safe_name, summary
from tlschat.protocol import FileMeta

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp"})


def downloads_dir() -> Path:
    """The user's downloads folder (platformdirs), or home when there is none."""
    try:
        return Path(platformdirs.user_downloads_dir())
    except Exception:
        return Path.home()


def parse_path(text: str) -> Path | None:
    """A path the user typed or pasted: quotes, `file://` and `~` handled; None if empty."""
    from urllib.parse import unquote, urlparse

    value = text.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    if value.startswith("file://"):
        value = unquote(urlparse(value).path)
    value = value.replace("\\ ", " ")  # shells and drag-and-drop escape spaces
    return Path(value).expanduser() if value else None


class _Tree(DirectoryTree):
    """Hidden files left out; with `images_only`, only pictures (and folders)."""

    def __init__(self, path: Path, *, images_only: bool, id: str | None = None) -> None:
        super().__init__(path, id=id)
        self.images_only = images_only

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        for path in paths:
            if path.name.startswith("."):
                continue
            if self.images_only and path.suffix.lower() not in IMAGE_SUFFIXES:
                # Folders keep showing; is_dir is a stat, already done by DirectoryTree itself.
                if not path.is_dir():
                    continue
            yield path


class FilePicker(ModalScreen[Path | None]):
    """Choose a file to send: type a path, or walk the folders; Enter or a click picks it."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, *, start: Path | None = None, images_only: bool = False) -> None:
        super().__init__()
        self.title_text = title
        self.start = start or Path.cwd()
        self.images_only = images_only

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="file-picker"):
            yield Label(self.title_text, classes="dialog-title", markup=False)
            yield Input(value=f"{self.start}/", placeholder="path of the file", id="picker-path")
            yield _Tree(self.start, images_only=self.images_only, id="picker-tree")
            yield Label(
                "Enter sends the path typed; or pick a file below. Esc cancels.",
                classes="dialog-hint",
            )

    def on_mount(self) -> None:
        field = self.query_one("#picker-path", Input)
        field.focus()
        field.cursor_position = len(field.value)

    @on(Input.Submitted, "#picker-path")
    def _typed(self, event: Input.Submitted) -> None:
        path = parse_path(event.value)
        if path is not None:
            self.dismiss(path)

    @on(DirectoryTree.FileSelected)
    def _picked(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        self.dismiss(Path(event.path))

    @on(DirectoryTree.DirectorySelected)
    def _folder(self, event: DirectoryTree.DirectorySelected) -> None:
        event.stop()
        field = self.query_one("#picker-path", Input)
        field.value = f"{event.path}/"

    def action_cancel(self) -> None:
        self.dismiss(None)


class SaveDialog(ModalScreen[Path | None]):
    """Where to save a file: the downloads folder by default; an existing file is never
    replaced without asking (a second Save on the same path replaces it)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, meta: FileMeta, *, folder: Path | None = None) -> None:
        super().__init__()
        self.meta = meta
        self.folder = folder if folder is not None else downloads_dir()
        self._confirmed: Path | None = None
        """The existing path the user was warned about (saving it again replaces it)."""
        self.replace = False
        """True when the user chose to replace an existing file."""

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="save-dialog"):
            yield Label(f"Save {summary(self.meta)}", classes="dialog-title", markup=False)
            yield Input(value=str(self.folder / safe_name(self.meta.name)), id="save-path")
            yield Static("", id="save-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="save-cancel")
                yield Button("Save", id="save-ok", variant="primary")

    def on_mount(self) -> None:
        self._say("")
        self.query_one("#save-path", Input).focus()

    @on(Input.Changed, "#save-path")
    def _changed(self, event: Input.Changed) -> None:
        self._confirmed = None
        self._say("")
        self.query_one("#save-ok", Button).label = "Save"

    @on(Input.Submitted, "#save-path")
    async def _submitted(self, event: Input.Submitted) -> None:
        await self._save()

    @on(Button.Pressed, "#save-ok")
    async def _ok(self, event: Button.Pressed) -> None:
        await self._save()

    @on(Button.Pressed, "#save-cancel")
    def _cancel(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    async def _save(self) -> None:
        path = parse_path(self.query_one("#save-path", Input).value)
        if path is None:
            self._say("Type where to save it.")
            return
        is_dir, exists, parent_ok = await asyncio.to_thread(_look, path)
        if is_dir:
            path = path / safe_name(self.meta.name)
            exists = await asyncio.to_thread(path.exists)
        elif not parent_ok:
            self._say(f"There is no folder {path.parent}.")
            return
        if exists and self._confirmed != path:
            self._confirmed = path
            self._say(f"{path.name} already exists there. Save again to replace it.")
            self.query_one("#save-ok", Button).label = "Replace"
            return
        self.replace = exists
        self.dismiss(path)

    def _say(self, text: str) -> None:
        error = self.query_one("#save-error", Static)
        error.update(text)
        error.display = bool(text)


class PictureView(ScrollView, can_focus=True):
    """Strips of a picture at full size, scrollable both ways."""

    DEFAULT_CSS = """
    PictureView { height: 1fr; width: 1fr; overflow: auto; }
    """

    def __init__(self, strips: list[Strip], columns: int, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.strips = strips
        self.virtual_size = Size(columns, len(strips))

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        if index >= len(self.strips):
            return Strip.blank(width, self.rich_style)
        return self.strips[index].crop_extend(scroll_x, scroll_x + width, self.rich_style)


class PictureViewer(ModalScreen[None]):
    """A picture full size (scrolls when larger than the screen); `s` saves it, Esc closes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,enter", "close", "Close"),
        Binding("s", "save", "Save"),
    ]

    DEFAULT_CSS = """
    PictureViewer { align: center middle; }
    #viewer-box { width: 100%; height: 100%; background: $surface; border: thick $primary; }
    #viewer-title { height: auto; max-height: 2; width: 100%; color: $text-muted; padding: 0 1; }
    """

    def __init__(self, meta: FileMeta, body: Widget, on_save: Callable[[FileMeta], object]) -> None:
        super().__init__()
        self.meta = meta
        self.body = body
        """The picture: a PictureView of strips, or textual-image's widget (Sixel, Kitty)."""
        self.on_save = on_save

    def compose(self) -> ComposeResult:
        with Vertical(id="viewer-box"):
            yield Label(
                f"{summary(self.meta)}    s save · esc close",
                id="viewer-title",
                markup=False,
            )
            yield self.body

    def on_mount(self) -> None:
        if self.body.can_focus:
            self.body.focus()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_save(self) -> None:
        self.on_save(self.meta)


def _look(path: Path) -> tuple[bool, bool, bool]:
    """(is a folder, exists, its folder exists): blocking, for a worker thread."""
    return path.is_dir(), path.exists(), path.parent.is_dir()
