"""The quick switcher (ctrl+k): every conversation, narrowed by a fuzzy match as you type."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option


@dataclass(frozen=True)
class Destination:
    """One thing the switcher can go to."""

    address: str
    """`@nick` or `#room`."""
    hint: str = ""
    """Why it is listed (`3 unread`, `online`, `public, 4 members`), dimmed."""
    unread: int = 0


def fuzzy_score(query: str, name: str) -> int | None:
    """How well `query` matches `name` as a subsequence (higher is better), or None.

    Case-insensitive. A match at the start, at a word start and consecutive letters score
    more, so `te` prefers `#team` to `#the-best`, and `tb` still finds `#the-best`.
    """
    q = query.casefold().lstrip("@#")
    n = name.casefold()
    if not q:
        return 0
    score = 0
    position = 0
    previous = -2
    body = n.lstrip("@#")
    offset = len(n) - len(body)
    for char in q:
        found = body.find(char, position)
        if found < 0:
            return None
        score += 1
        if found == previous + 1:
            score += 3  # consecutive
        if found == 0:
            score += 5  # at the start
        elif not body[found - 1].isalnum():
            score += 2  # at a word start (after `-`, `_`, `.`)
        previous = found
        position = found + 1
    return score * 10 - len(body) - offset


class QuickSwitcher(ModalScreen[str | None]):
    """Type part of a name; Enter opens the best match (or the one picked with up/down)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,ctrl+k", "cancel", "Cancel"),
        Binding("down", "move(1)", "Next", show=False, priority=True),
        Binding("up", "move(-1)", "Previous", show=False, priority=True),
    ]

    def __init__(self, destinations: Iterable[Destination]) -> None:
        super().__init__()
        self.destinations = list(destinations)
        self.shown: list[Destination] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="switcher"):
            yield Label("Go to…", classes="dialog-title")
            yield Input(
                placeholder="part of a nick or group name", id="switcher-input", compact=True
            )
            yield OptionList(id="switcher-list")
            yield Static("Enter opens, up/down pick, Escape cancels.", classes="dialog-hint")

    def on_mount(self) -> None:
        field = self.query_one("#switcher-input", Input)
        field.cursor_blink = getattr(self.app, "cursor_blink", True)
        field.focus()
        self._filter("")

    @on(Input.Changed, "#switcher-input")
    def _changed(self, event: Input.Changed) -> None:
        self._filter(event.value)

    def _filter(self, query: str) -> None:
        scored = []
        for order, destination in enumerate(self.destinations):
            score = fuzzy_score(query, destination.address)
            if score is not None:
                scored.append((-score if query else 0, order, destination))
        scored.sort(key=lambda item: (item[0], item[1]))
        self.shown = [item[2] for item in scored]
        listing = self.query_one("#switcher-list", OptionList)
        listing.set_options(
            Option(
                Content.assemble(
                    d.address,
                    Content.styled(f"  {d.hint}", "$text-muted") if d.hint else "",
                )
            )
            for d in self.shown
        )
        if self.shown:
            listing.highlighted = 0

    def action_move(self, step: int) -> None:
        listing = self.query_one("#switcher-list", OptionList)
        if not self.shown:
            return
        current = listing.highlighted or 0
        listing.highlighted = max(0, min(len(self.shown) - 1, current + step))

    @on(Input.Submitted, "#switcher-input")
    def _enter(self, event: Input.Submitted) -> None:
        event.stop()
        listing = self.query_one("#switcher-list", OptionList)
        index = listing.highlighted
        if self.shown and index is not None:
            self.dismiss(self.shown[index].address)

    @on(OptionList.OptionSelected, "#switcher-list")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self.shown[event.option_index].address)

    def action_cancel(self) -> None:
        self.dismiss(None)
