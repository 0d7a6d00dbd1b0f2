"""The input line: a single-line editor with a history of what was sent (up/down)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input


class Composer(Input):
    """Type a message or a /command; Enter posts `Composer.Submitted`, up/down walk the history."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "history(-1)", "Previous line", show=False),
        Binding("down", "history(1)", "Next line", show=False),
        Binding("escape", "cancel_edit", "Cancel edit", show=False),
    ]

    HISTORY_SIZE: ClassVar[int] = 200
    """How many submitted lines up/down can reach."""

    class Submitted(Message):
        """The user pressed Enter on a non-empty line (already cleared from the input)."""

        def __init__(self, composer: Composer, text: str, editing: int | None = None) -> None:
            super().__init__()
            self.composer = composer
            self.text = text
            self.editing = editing
            """The id of the message this line replaces (up arrow on an empty line), if any."""

        @property
        def control(self) -> Composer:
            return self.composer

    def __init__(self, *, placeholder: str = "", id: str | None = None) -> None:
        super().__init__(placeholder=placeholder, id=id, select_on_focus=False)
        self.history: list[str] = []
        """Lines submitted, oldest first."""
        self._position: int | None = None
        """Index into `history` while walking it, None when editing a fresh line."""
        self._draft = ""
        """The unsent line that was being edited before walking the history."""
        self.last_own: Callable[[], tuple[int, str] | None] | None = None
        """(id, text) of our last message in the conversation in view: up arrow on an empty
        line edits it (set by the screen)."""
        self.editing: int | None = None
        """The message being edited, while the line holds its new text."""

    async def action_submit(self) -> None:
        text = self.value
        editing, self.editing = self.editing, None
        if editing is not None:
            # An emptied line asks to delete the message (the screen confirms first).
            self._end_edit()
            self.value = ""
            self.post_message(self.Submitted(self, text.strip() and text, editing))
            return
        if not text.strip():
            return
        if not self.history or self.history[-1] != text:
            self.history.append(text)
            del self.history[: -self.HISTORY_SIZE]
        self._position = None
        self._draft = ""
        self.value = ""
        self.post_message(self.Submitted(self, text))

    def start_edit(self, msg_id: int, text: str) -> None:
        """Put message `msg_id` on the line to edit it: Enter replaces it, Escape cancels."""
        self.editing = msg_id
        self.value = text
        self.cursor_position = len(text)
        self.border_title = "editing your message · Enter saves · empty deletes · Esc cancels"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_edit":
            return self.editing is not None  # otherwise Escape goes on to the screen
        return super().check_action(action, parameters)

    def action_cancel_edit(self) -> None:
        if self.editing is not None:
            self.editing = None
            self.value = ""
            self._end_edit()

    def _end_edit(self) -> None:
        self.border_title = None

    def action_history(self, step: int) -> None:
        """Move `step` lines through the history (-1 older, +1 newer), as shells do. On an
        empty line, up edits our last message instead (as in most chat programs)."""
        if step < 0 and self._position is None and not self.value and self.editing is None:
            found = self.last_own() if self.last_own is not None else None
            if found is not None:
                self.start_edit(*found)
                return
        if not self.history:
            return
        if self._position is None:
            if step > 0:
                return
            self._draft = self.value
            position = len(self.history) - 1
        else:
            position = self._position + step
        if position < 0:
            position = 0
        if position >= len(self.history):
            self._position = None
            self.value = self._draft
        else:
            self._position = position
            self.value = self.history[position]
        self.cursor_position = len(self.value)
