"""Small modal dialogs: a one-line prompt, a yes/no question, picking a user, answering an invitation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from tlschat.tui.ids import pane_id
from tlschat.tui.state import Invitation
from tlschat.tui.widgets.sidebar import presence_dot


class PromptDialog(ModalScreen[str | None]):
    """Ask for one line of text; Enter answers it, Escape answers None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self, title: str, *, hint: str = "", placeholder: str = "", suggestions: Iterable[str] = ()
    ) -> None:
        super().__init__()
        self.title_text = title
        self.hint = hint
        self.placeholder = placeholder
        self.suggestions = list(suggestions)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Content(self.title_text), classes="dialog-title")
            suggester = (
                SuggestFromList(self.suggestions, case_sensitive=False)
                if self.suggestions
                else None
            )
            yield Input(placeholder=self.placeholder, suggester=suggester, id="prompt-input")
            if self.hint:
                yield Static(Content(self.hint), classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#prompt-input", Input).cursor_blink = getattr(
            self.app, "cursor_blink", True
        )

    @on(Input.Submitted, "#prompt-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmDialog(ModalScreen[bool]):
    """A yes/no question; the safe answer (No) has the focus."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "answer(False)", "No")]

    def __init__(self, question: str, *, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.question = question
        self.yes = yes
        self.no = no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Content(self.question), classes="dialog-title")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.yes, id="confirm-yes", variant="warning")
                yield Button(self.no, id="confirm-no")

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "confirm-yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class InviteDialog(ModalScreen[str | None]):
    """Pick who to invite to a group: only users who are not members yet are offered."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self, room: str, candidates: Iterable[tuple[str, bool]], *, pending: Iterable[str] = ()
    ) -> None:
        super().__init__()
        self.room = room
        self.candidates = list(candidates)
        """(nick, online) of everyone who could be invited."""
        self.pending = list(pending)
        """Invited already (this session) and not answered yet: listed, not offered."""
        self._nicks = {pane_id("user", nick): nick for nick, _ in self.candidates}

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Content(f"Invite to #{self.room}"), classes="dialog-title")
            if self.candidates:
                options = [
                    Option(
                        Content.assemble(presence_dot(online), " ", nick), id=pane_id("user", nick)
                    )
                    for nick, online in self.candidates
                ]
                yield OptionList(*options, id="invite-list")
            else:
                everyone = "a member or invited" if self.pending else "a member"
                yield Static(
                    Content(
                        f"Everyone you know is already {everyone}. "
                        "/invite NICK invites anyone by name."
                    ),
                    classes="dialog-hint",
                )
            if self.pending:
                yield Static(
                    Content("Invited, no answer yet: " + ", ".join(self.pending)),
                    id="invite-pending",
                    classes="dialog-hint",
                )
            if self.candidates:
                yield Static("Enter invites, Escape cancels.", classes="dialog-hint")
            else:
                yield Button("Close", id="invite-close")

    @on(OptionList.OptionSelected, "#invite-list")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self._nicks.get(event.option_id or ""))

    @on(Button.Pressed, "#invite-close")
    def _close(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class InvitationDialog(ModalScreen[str | None]):
    """Answer a pending invitation: "accept", "decline", or None (decide later)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "later", "Later")]

    def __init__(self, invitation: Invitation) -> None:
        super().__init__()
        self.invitation = invitation

    def compose(self) -> ComposeResult:
        invitation = self.invitation
        with Vertical(classes="dialog"):
            yield Static(
                Content.assemble(
                    (invitation.by, "bold"), " invited you to ", (f"#{invitation.room}", "bold")
                ),
                classes="dialog-title",
            )
            if invitation.members:
                yield Static(
                    Content("Members: " + ", ".join(invitation.members)), classes="dialog-hint"
                )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Accept", id="answer-accept", variant="success")
                yield Button("Decline", id="answer-decline", variant="error")
                yield Button("Later", id="answer-later")

    def on_mount(self) -> None:
        self.query_one("#answer-later", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        answer = (event.button.id or "").removeprefix("answer-")
        self.dismiss(answer if answer in ("accept", "decline") else None)

    def action_later(self) -> None:
        self.dismiss(None)
