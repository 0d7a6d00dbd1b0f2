"""The input line: a single-line editor with a history of what was sent (up/down)."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input


class Composer(Input):
    """Type a message or a /command; Enter posts `Composer.Submitted`, up/down walk the history."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "history(-1)", "Previous line", show=False),
        Binding("down", "history(1)", "Next line", show=False),
    ]

    HISTORY_SIZE: ClassVar[int] = 200
    """How many submitted lines up/down can reach."""

    class Submitted(Message):
        """The user pressed Enter on a non-empty line (already cleared from the input)."""

        def __init__(self, composer: Composer, text: str) -> None:
            super().__init__()
            self.composer = composer
            self.text = text

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

    async def action_submit(self) -> None:
        text = self.value
        if not text.strip():
            return
        if not self.history or self.history[-1] != text:
            self.history.append(text)
            del self.history[: -self.HISTORY_SIZE]
        self._position = None
        self._draft = ""
        self.value = ""
        self.post_message(self.Submitted(self, text))

    def action_history(self, step: int) -> None:
        """Move `step` lines through the history (-1 older, +1 newer), as shells do."""
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
