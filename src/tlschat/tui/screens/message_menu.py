"""The small menu of one message (a right click, or `m` on the selected message): Edit, Delete,
Open picture, Save file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.geometry import Offset
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from tlschat.tui.widgets import attachments
from tlschat.tui.widgets.message_log import Entry


@dataclass(frozen=True)
class MenuItem:
    action: str
    """What the screen does when it is picked: `edit`, `delete`, `open` or `save`."""
    label: str
    enabled: bool = True


def menu_items(entry: Entry) -> list[MenuItem]:
    """What can be done with `entry`: Edit and Delete are there for every message (greyed out
    when it is not ours, or deleted), so that the menu always looks the same."""
    mine = entry.own and not entry.deleted
    items = [MenuItem("edit", "Edit", mine), MenuItem("delete", "Delete", mine)]
    if entry.file is not None:
        if attachments.wants_picture(entry.file):
            items.append(MenuItem("open", "Open picture"))
        items.append(MenuItem("save", "Save file"))
    return items


def menu_hint(entry: Entry) -> str:
    """One line under the menu saying why Edit and Delete are greyed out, if they are."""
    if entry.deleted:
        return "This message is deleted."
    if not entry.own:
        return f"Only {entry.nick} can edit or delete this message."
    return ""


class MessageMenu(ModalScreen[str | None]):
    """Picks one action for a message; Escape (or a click outside) picks none."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Close")]

    DEFAULT_CSS = """
    MessageMenu { align: center middle; background: $background 30%; }
    MessageMenu > #message-menu {
        width: 34;
        height: auto;
        border: round $accent;
        background: $panel;
        padding: 0 1;
    }
    MessageMenu #message-menu-list { height: auto; border: none; background: $panel; }
    MessageMenu .dialog-hint { color: $text-muted; }
    """

    def __init__(self, entry: Entry, at: Offset | None = None) -> None:
        super().__init__()
        self.entry = entry
        self.at = at

    def compose(self) -> ComposeResult:
        with Vertical(id="message-menu"):
            options = [
                Option(item.label, id=item.action, disabled=not item.enabled)
                for item in menu_items(self.entry)
            ]
            yield OptionList(*options, id="message-menu-list")
            hint = menu_hint(self.entry)
            if hint:
                yield Static(Content(hint), classes="dialog-hint")

    def on_mount(self) -> None:
        menu = self.query_one("#message-menu")
        if self.at is not None:  # a right click: the menu opens where the pointer is
            self.styles.align = ("left", "top")  # inline: over the app's centring of dialogs
            width, height = self.app.size
            x = max(0, min(self.at.x, width - 34))
            y = max(0, min(self.at.y, height - len(menu_items(self.entry)) - 4))
            menu.styles.offset = (x, y)
        listing = self.query_one("#message-menu-list", OptionList)
        listing.focus()
        first = next((i for i, o in enumerate(listing.options) if not o.disabled), None)
        listing.highlighted = first

    @on(OptionList.OptionSelected, "#message-menu-list")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option_id)

    def on_click(self, event: events.Click) -> None:
        # A click outside the menu closes it (inside, the option list takes the click).
        if self.get_widget_at(event.screen_x, event.screen_y)[0] is self:
            self.dismiss(None)
