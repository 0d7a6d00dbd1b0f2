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
    ("enter", "send"),
    ("shift+enter / ctrl+j", "a new line in the message (a paste keeps its lines)"),
    ("tab", "complete a nick (bob: at the start), #group or /command; again: the next one"),
    ("up / down", "this conversation's earlier messages (on the first / last line)"),
    ("ctrl+k", "go to any conversation by typing part of its name"),
    ("alt+1 … alt+9", "the first … ninth tab"),
    ("alt+left / alt+right", "previous / next tab"),
    ("ctrl+n", "message someone"),
    ("ctrl+g", "create a group (private or public)"),
    ("ctrl+t", "invite to the current group"),
    ("ctrl+o", "join a public group (listed live)"),
    ("alt+w", "close the current pane"),
    ("ctrl+b", "the sidebar (below 100 columns it shows over the conversation)"),
    ("alt+m", "the member list of the group (likewise)"),
    ("escape", "back to the input box"),
    ("pageup / pagedown", "scroll the conversation (older history loads at the top)"),
    ("ctrl+l", "redraw the screen"),
    ("up (empty input)", "edit your last message here (enter saves, esc cancels)"),
    (
        "alt+up / click",
        "select a message: up / down move, e edits and d deletes yours, "
        "m, enter or a right click its menu, esc back to the input",
    ),
    ("ctrl+f", "search messages on the server (enter opens the conversation there)"),
    ("f2 / f3", "accept / decline the invitation shown"),
    ("ctrl+u", "send a file: pick one (or /image PATH, /file PATH, or paste a path)"),
    ("alt+c", "cancel the file being sent"),
    ("f4", "open the lowest picture in view full size (a file: save it)"),
    ("click / enter on a file", "open a picture full size, where s saves it; save a file"),
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
