"""The help screen: commands of the input line and keys of the main screen."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tlschat.tui.commands import USAGE

KEYS: list[tuple[str, str]] = [
    ("ctrl+n", "message someone"),
    ("ctrl+g", "create a group"),
    ("ctrl+t", "invite to the current group"),
    ("ctrl+o", "join a public group"),
    ("ctrl+l", "leave the current group"),
    ("alt+w", "close the current pane"),
    ("alt+left / alt+right", "previous / next pane"),
    ("ctrl+b / escape", "focus the sidebar / the input line"),
    ("pageup / pagedown", "scroll the conversation (older history loads at the top)"),
    ("up / down", "input history; up on an empty line edits your last message"),
    ("ctrl+f", "search messages on the server"),
    ("f2 / f3", "accept / decline the invitation shown"),
    ("ctrl+p", "command palette"),
    ("ctrl+r", "reconnect, once the connection has closed for good"),
    ("ctrl+q", "quit"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,f1,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="help-dialog"):
            yield Static("Help (escape closes)", classes="dialog-title")
            with VerticalScroll():
                yield Static(self._table("Commands", list(USAGE.values())))
                yield Static(self._table("Keys", KEYS), classes="help-keys")

    @staticmethod
    def _table(title: str, rows: list[tuple[str, str]]) -> Table:
        """Two columns; long explanations wrap under themselves, not under the key."""
        table = Table.grid(padding=(0, 2))
        table.add_column(no_wrap=True, style="bold")
        table.add_column(ratio=1)
        table.add_row(Text(title, style="bold underline"), "")
        for key, text in rows:
            table.add_row(Text(key), Text(text))
        return table
