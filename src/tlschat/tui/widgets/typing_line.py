""" "bob is typing…" under the conversation, and when to tell others that we are typing."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.content import Content
from textual.widgets import Static

SHOW_FOR = 6.0
"""Seconds "N is typing" stays after N's last `typing` (PROTOCOL.md "Messages" → Typing)."""

SEND_EVERY = 3.0
"""We send `typing` at most this often while the user types (PROTOCOL.md)."""


def _key(address: str) -> str:
    return address[:1] + address[1:].casefold()


class TypingLine(Static):
    """Who is typing in the conversation in view; one line, hidden when nobody is."""

    DEFAULT_CSS = """
    TypingLine {
        height: 1;
        padding: 0 1;
        color: $text-muted;
        text-style: italic;
    }
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, id: str | None = None
    ) -> None:
        super().__init__("", id=id, markup=False)
        self.display = False
        self.clock = clock
        self.address: str | None = None
        """The conversation in view."""
        self._typing: dict[str, dict[str, tuple[str, float]]] = {}
        """Conversation key -> folded nick -> (nick, when its indication ends)."""

    def on_mount(self) -> None:
        self.set_interval(1.0, self._refresh_line)

    def noted(self, address: str, nick: str) -> None:
        """`nick` is typing in `address` (a `typing` event arrived)."""
        typers = self._typing.setdefault(_key(address), {})
        typers[nick.casefold()] = (nick, self.clock() + SHOW_FOR)
        self._refresh_line()

    def message_from(self, address: str, nick: str) -> None:
        """A message from `nick` arrived in `address`: they are done typing it."""
        typers = self._typing.get(_key(address))
        if typers is not None and typers.pop(nick.casefold(), None) is not None:
            self._refresh_line()

    def show(self, address: str | None) -> None:
        self.address = address
        self._refresh_line()

    def typers(self, address: str) -> list[str]:
        """Who is typing in `address` now, by name."""
        now = self.clock()
        typers = self._typing.get(_key(address), {})
        for folded, (_nick, until) in list(typers.items()):
            if until <= now:
                del typers[folded]
        return sorted((nick for nick, _ in typers.values()), key=str.casefold)

    def _refresh_line(self) -> None:
        names = self.typers(self.address) if self.address else []
        if not names:
            text = ""
        elif len(names) == 1:
            text = f"{names[0]} is typing…"
        elif len(names) <= 3:
            text = f"{', '.join(names[:-1])} and {names[-1]} are typing…"
        else:
            text = "several people are typing…"
        self.update(Content(text))
        self.display = bool(text)  # takes no row while nobody types


class TypingSender:
    """Decides when a keystroke should send `typing`: at most every 3 s per conversation."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._last: dict[str, float] = {}

    def should_send(self, address: str) -> bool:
        now = self.clock()
        last = self._last.get(_key(address))
        if last is not None and now - last < SEND_EVERY:
            return False
        self._last[_key(address)] = now
        return True

    def sent_message(self, address: str) -> None:
        """A message went out: the next keystroke starts a new indication."""
        self._last.pop(_key(address), None)
