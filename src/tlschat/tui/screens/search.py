"""ctrl+f: search the server's history (PROTOCOL.md "Search"), everywhere or in one conversation."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import tzinfo
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from tlschat import protocol
from tlschat.tui.widgets.message_log import local_time

SearchFn = Callable[[str, str | None], Awaitable[protocol.SearchResult]]
"""`(query, with_ or None) -> search reply`: the App's way to ask the server."""

Hit = tuple[str, int]
"""(conversation address, message id): what the screen answers when a result is picked."""

_WORD = re.compile(r"[^\W_]+")


def highlight(text: str, query: str) -> Content:
    """`text` (literally) with every word that starts with a word of `query` in bold."""
    words = {w.casefold() for w in _WORD.findall(query)}
    content = Content(text)
    if not words:
        return content
    for match in _WORD.finditer(text):
        folded = match.group().casefold()
        if any(folded.startswith(w) for w in words):
            content = content.stylize("bold $text-accent", match.start(), match.end())
    return content


class SearchScreen(ModalScreen[Hit | None]):
    """Type words, Enter searches; Enter on a result opens its conversation at that message."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Close")]

    DEFAULT_CSS = """
    SearchScreen { align: center middle; }
    SearchScreen > Vertical {
        width: 90%; height: 80%; border: round $primary; background: $surface; padding: 0 1;
    }
    SearchScreen OptionList { height: 1fr; }
    SearchScreen #search-status { color: $text-muted; height: 1; }
    """

    def __init__(
        self,
        search: SearchFn,
        file_under: Callable[[protocol.Message], str],
        *,
        current: str | None = None,
        tz: tzinfo | None = None,
    ) -> None:
        super().__init__()
        self.search = search
        self.file_under = file_under
        """The conversation a message is shown in (the other party of a DM)."""
        self.current = current
        self.tz = tz
        self.hits: list[Hit] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Content("Search messages"), classes="dialog-title")
            yield Input(
                placeholder='words; "a phrase"; the last word may be cut', id="search-input"
            )
            if self.current is not None:
                yield Checkbox(f"only {self.current}", id="search-here")
            yield Static("", id="search-status")
            yield OptionList(id="search-results")

    def on_mount(self) -> None:
        self.query_one("#search-input", Input).focus()

    @on(Input.Submitted, "#search-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        query = event.value.strip()
        if query:
            here = self.query("#search-here")
            only = bool(here) and self.query_one("#search-here", Checkbox).value
            self._run(query, self.current if only else None)

    @work(exclusive=True, exit_on_error=False)
    async def _run(self, query: str, with_: str | None) -> None:
        status = self.query_one("#search-status", Static)
        status.update("searching…")
        try:
            result = await self.search(query, with_)
        except protocol.RequestFailed as exc:
            status.update(Content(f"{exc.message} ({exc.code})"))
            return
        except Exception as exc:  # shown, never a crash of the app
            status.update(Content(f"search failed: {exc}"))
            return
        self.show_results(result)

    def show_results(self, result: protocol.SearchResult) -> None:
        listing = self.query_one("#search-results", OptionList)
        self.hits = []
        options = []
        for message in result.messages:
            address = self.file_under(message)
            self.hits.append((address, message.id))
            label = Content.assemble(
                Content.styled(f"{address:<16} ", "$text-secondary"),
                Content.styled(f"{local_time(message.ts, self.tz)} ", "$text-muted"),
                Content.styled(f"{message.from_}: ", "bold"),
                highlight(message.text.replace("\n", " "), result.query),
            )
            options.append(Option(label))
        listing.set_options(options)
        count = len(result.messages)
        more = " (more: add words to narrow it)" if result.more else ""
        status = f"{count} found{more}" if count else "nothing found"
        self.query_one("#search-status", Static).update(Content(status))
        if options:
            listing.highlighted = 0
            listing.focus()

    @on(OptionList.OptionSelected, "#search-results")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if 0 <= event.option_index < len(self.hits):
            self.dismiss(self.hits[event.option_index])

    def action_cancel(self) -> None:
        self.dismiss(None)
