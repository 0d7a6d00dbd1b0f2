"""The invitation notification: who invited us to which group, with Accept / Decline / Later."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Button, Static

from tlschat.tui.state import Invitation


class InvitationBar(Vertical):
    """Shown above the input line while an invitation is waiting; never steals the focus."""

    class Answered(Message):
        """`answer` is "accept", "decline" or "later"."""

        def __init__(self, room: str, answer: str) -> None:
            super().__init__()
            self.room = room
            self.answer = answer

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.invitation: Invitation | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="invitation-text")
        with Horizontal(id="invitation-buttons"):
            yield Static("f2 / f3", id="invitation-keys")
            yield Button("Accept", id="invitation-accept", variant="success", compact=True)
            yield Button("Decline", id="invitation-decline", variant="error", compact=True)
            yield Button("Later", id="invitation-later", compact=True)

    def show(self, invitation: Invitation | None) -> None:
        """Show `invitation` (None hides the bar)."""
        self.invitation = invitation
        self.display = invitation is not None
        if invitation is None:
            return
        text = Content.assemble(
            Content.styled("✉ ", "$warning"),
            (invitation.by, "bold"),
            " invited you to ",
            (f"#{invitation.room}", "bold"),
        )
        others = [m for m in invitation.members if m.casefold() != invitation.by.casefold()]
        if others:
            text = text.append(Content.styled(f" (with {', '.join(others)})", "$text-muted"))
        self.query_one("#invitation-text", Static).update(text)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if self.invitation is None or event.button.id is None:
            return
        answer = event.button.id.removeprefix("invitation-")
        self.post_message(self.Answered(self.invitation.room, answer))
