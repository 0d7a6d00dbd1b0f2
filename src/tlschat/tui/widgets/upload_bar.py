"""The line above the input while a file is being sent: name, progress, Cancel (alt+c)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Button, Label, ProgressBar

from tlschat.client.attachments import human_size

CANCEL_KEY = "alt+c"
"""Cancels the upload from anywhere on the main screen (Escape already means "back to the
input", ctrl+c copies): bound by `FileActions`, named on the button."""


class UploadBar(Horizontal):
    """Hidden until `start()`; `advance()` moves the bar; Cancel posts `UploadBar.Cancelled`."""

    DEFAULT_CSS = """
    UploadBar {
        display: none;
        height: 1;
        padding: 0 1;
        background: $boost;
    }
    UploadBar.-active { display: block; }
    UploadBar > Label { width: 1fr; height: 1; color: $text; text-wrap: nowrap; text-overflow: ellipsis; }
    UploadBar > ProgressBar { width: auto; height: 1; padding: 0 1; }
    UploadBar > ProgressBar Bar { width: 16; }
    UploadBar > Button { width: auto; min-width: 8; height: 1; }
    """

    class Cancelled(Message):
        """The user asked to stop the upload in progress."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.name_shown = ""
        """The file being sent ("" when idle)."""

    def compose(self) -> ComposeResult:
        yield Label("", id="upload-label", markup=False)
        yield ProgressBar(total=100, show_eta=False, id="upload-progress")
        yield Button(f"Cancel ({CANCEL_KEY})", id="upload-cancel", compact=True, variant="warning")

    @property
    def active(self) -> bool:
        return self.has_class("-active")

    def start(self, name: str, size: int, to: str) -> None:
        self.name_shown = name
        self.query_one("#upload-label", Label).update(
            f"Sending {name} ({human_size(size)}) to {to}"
        )
        self.query_one("#upload-progress", ProgressBar).update(total=max(1, size), progress=0)
        self.add_class("-active")
        self.screen.refresh_bindings()  # the footer shows the cancel key while this shows

    def advance(self, done: int, total: int) -> None:
        self.query_one("#upload-progress", ProgressBar).update(total=max(1, total), progress=done)

    def finish(self) -> None:
        self.name_shown = ""
        self.remove_class("-active")
        self.screen.refresh_bindings()

    @on(Button.Pressed, "#upload-cancel")
    def _cancel(self, event: Button.Pressed) -> None:
        event.stop()
        self.cancel()

    def cancel(self) -> None:
        """Ask to stop the upload shown (the button, or the key)."""
        if self.active:
            self.post_message(self.Cancelled())
