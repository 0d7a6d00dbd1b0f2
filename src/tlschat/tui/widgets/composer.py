"""The input box: multi-line text, Tab completion, a history and a draft per conversation, and
editing one's last message (up arrow on an empty box)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import TextArea

Completer = Callable[[str, str], list[str]]
"""`(word before the cursor, the text of the input before that word) -> candidates, best first`.

A candidate replaces the word as it is; the composer adds `: ` after a nick completed at the
very start of the input (the mention form) and a space after anything else.
"""


@dataclass
class _Cycle:
    """Where the last Tab put a completion, so that the next Tab replaces it with the next one."""

    row: int
    start: int
    """Column where the completed word starts."""
    candidates: list[str]
    index: int
    inserted: str
    """The text the last Tab inserted (candidate and suffix)."""


class Composer(TextArea):
    """Type a message or a /command. Enter posts `Composer.Submitted`; shift+enter and ctrl+j
    add a line; a paste keeps its lines. Up on the first line and down on the last walk the
    history of the conversation shown (`conversation`), as shells do.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        # The log scrolls with these, even while typing (the box itself is only a few lines).
        Binding("pageup", "screen.scroll_log('page_up')", "Older", show=False),
        Binding("pagedown", "screen.scroll_log('page_down')", "Newer", show=False),
        Binding("escape", "cancel_edit", "Cancel edit", show=False),
    ]

    HISTORY_SIZE: ClassVar[int] = 200
    """How many submitted texts up/down can reach, per conversation."""

    class Submitted(Message):
        """The user pressed Enter on a non-empty text (already cleared from the box)."""

        def __init__(self, composer: Composer, text: str, editing: int | None = None) -> None:
            super().__init__()
            self.composer = composer
            self.text = text
            self.editing = editing
            """The id of the message this text replaces (up arrow on an empty box), if any; the
            text is empty to delete it."""

        @property
        def control(self) -> Composer:
            return self.composer

    def __init__(self, *, placeholder: str = "", id: str | None = None) -> None:
        super().__init__(
            placeholder=placeholder,
            id=id,
            soft_wrap=True,
            tab_behavior="focus",
            show_line_numbers=False,
            highlight_cursor_line=False,
        )
        self.conversation = ""
        """Key of the conversation shown: the history and the draft are kept per conversation."""
        self.histories: dict[str, list[str]] = {}
        """Texts submitted, oldest first, per conversation."""
        self._drafts: dict[str, str] = {}
        self._position: int | None = None
        """Index into the current history while walking it, None when editing a fresh text."""
        self._draft = ""
        """The unsent text that was being edited before walking the history."""
        self.completer: Completer | None = None
        """Set by the screen: where Tab finds candidates."""
        self._cycle: _Cycle | None = None
        self.last_own: Callable[[], tuple[int, str] | None] | None = None
        """(id, text) of our last message in the conversation in view: up arrow on an empty
        box edits it (set by the screen)."""
        self.editing: int | None = None
        """The message being edited, while the box holds its new text."""

    @property
    def sent(self) -> list[str]:
        """The current conversation's history."""
        return self.histories.setdefault(self.conversation, [])

    @property
    def value(self) -> str:
        """The text being written (an alias of `text`, as for an `Input`)."""
        return self.text

    @value.setter
    def value(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)

    # --- switching conversations -----------------------------------------------------------

    def switch_to(self, conversation: str) -> None:
        """Show another conversation's draft; this one's unsent text waits for it."""
        if conversation == self.conversation:
            return
        if self.editing is not None:
            self.action_cancel_edit()  # an edit belongs to the conversation it started in
        if self.text:
            self._drafts[self.conversation] = self.text
        else:
            self._drafts.pop(self.conversation, None)
        self.conversation = conversation
        self._position = None
        self._draft = ""
        self._cycle = None
        self.value = self._drafts.pop(conversation, "")

    # --- keys ------------------------------------------------------------------------------

    async def _on_key(self, event: events.Key) -> None:
        key = event.key
        if key != "tab":
            self._cycle = None
        if key == "enter":
            event.stop()
            event.prevent_default()
            self.submit()
            return
        if key in ("shift+enter", "ctrl+j", "alt+enter"):
            event.stop()
            event.prevent_default()
            start, end = self.selection
            self._replace_via_keyboard("\n", start, end)
            return
        if key == "tab" and self.complete():
            event.stop()
            event.prevent_default()
            return
        if key.startswith("alt+"):
            return  # a shortcut (bound or not), never the letter typed into the message
        await super()._on_key(event)

    def check_consume_key(self, key: str, character: str | None = None) -> bool:
        if key == "tab":
            return True  # completion, not focus movement
        return super().check_consume_key(key, character)

    def submit(self) -> None:
        text = self.text
        editing, self.editing = self.editing, None
        if editing is not None:
            # An emptied box asks to delete the message (the screen confirms first).
            self._end_edit()
            self.clear()
            self.post_message(self.Submitted(self, text if text.strip() else "", editing))
            return
        if not text.strip():
            return
        history = self.sent
        if not history or history[-1] != text:
            history.append(text)
            del history[: -self.HISTORY_SIZE]
        self._position = None
        self._draft = ""
        self.clear()
        self.post_message(self.Submitted(self, text))

    def start_edit(self, msg_id: int, text: str) -> None:
        """Put message `msg_id` in the box to edit it: Enter replaces it, Escape cancels."""
        self._position = None
        self._draft = ""
        self.editing = msg_id
        self.value = text
        self.border_title = "editing your message · Enter saves · empty deletes · Esc cancels"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_edit":
            return self.editing is not None  # otherwise Escape goes on to the screen
        return super().check_action(action, parameters)

    def action_cancel_edit(self) -> None:
        if self.editing is not None:
            self.editing = None
            self.clear()
            self._end_edit()

    def _end_edit(self) -> None:
        self.border_title = None

    def action_cursor_up(self, select: bool = False) -> None:
        if (
            not select
            and not self.text
            and self._position is None
            and self.editing is None
            and self.last_own is not None
        ):
            found = self.last_own()
            if found is not None:
                self.start_edit(*found)
                return
        if not select and self.cursor_location[0] == 0 and self._walk(-1):
            return
        super().action_cursor_up(select)

    def action_cursor_down(self, select: bool = False) -> None:
        last = self.document.line_count - 1
        if not select and self.cursor_location[0] == last and self._walk(1):
            return
        super().action_cursor_down(select)

    def _walk(self, step: int) -> bool:
        """Move `step` texts through the history (-1 older, +1 newer); False if it cannot."""
        history = self.sent
        if not history or self.editing is not None:
            return False
        if self._position is None:
            if step > 0:
                return False
            self._draft = self.text
            position = len(history) - 1
        else:
            position = self._position + step
        if position < 0:
            return True  # the oldest: stay there
        if position >= len(history):
            self._position = None
            self.value = self._draft
        else:
            self._position = position
            self.value = history[position]
        return True

    # --- completion ------------------------------------------------------------------------

    def complete(self) -> bool:
        """Complete the word before the cursor, or the next candidate on a repeated Tab."""
        if self.completer is None:
            return False
        row, column = self.cursor_location
        line = self.document.get_line(row)
        cycle = self._cycle
        if (
            cycle is not None
            and cycle.row == row
            and line[cycle.start : column] == cycle.inserted
            and len(cycle.candidates) > 1
        ):
            cycle.index = (cycle.index + 1) % len(cycle.candidates)
            self._put(cycle, column)
            return True
        start = column
        while start > 0 and not line[start - 1].isspace():
            start -= 1
        word = line[start:column]
        if not word:
            return False
        before = "\n".join([*(self.document.get_line(r) for r in range(row)), line[:start]])
        candidates = self.completer(word, before)
        if not candidates:
            self.app.bell()
            return True  # nothing to complete, but Tab never leaves the box
        cycle = _Cycle(row, start, candidates, 0, word)
        self._put(cycle, column)
        self._cycle = cycle
        return True

    def _put(self, cycle: _Cycle, end: int) -> None:
        candidate = cycle.candidates[cycle.index]
        mention = cycle.row == 0 and cycle.start == 0 and candidate[:1] not in "/#@"
        inserted = candidate + (": " if mention else " ")
        self.replace(inserted, (cycle.row, cycle.start), (cycle.row, end))
        self.move_cursor((cycle.row, cycle.start + len(inserted)))
        cycle.inserted = inserted
