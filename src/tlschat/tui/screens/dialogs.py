"""Small modal dialogs: a one-line prompt, a yes/no question, picking a user, answering an invitation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.suggester import Suggester, SuggestFromList
from textual.widgets import Button, Input, Label, OptionList, RadioButton, RadioSet, Static
from textual.widgets.option_list import Option, OptionDoesNotExist

from tlschat.protocol import is_valid_name
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
    """A yes/no question; the safe answer (No) has the focus; left and right move between the
    two buttons, as in other terminal dialogs (Tab works too)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "answer(False)", "No"),
        Binding("left", "app.focus_previous", "Previous", show=False),
        Binding("right", "app.focus_next", "Next", show=False),
    ]

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


@dataclass(frozen=True)
class NewGroup:
    """What the create dialog answers."""

    room: str
    public: bool
    invite: tuple[str, ...]


class CreateGroupDialog(ModalScreen[NewGroup | None]):
    """Create a group: its name, private (invite-only) or public, and whom to invite."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, nicks: Iterable[str] = ()) -> None:
        super().__init__()
        self.nicks = list(nicks)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="create-dialog"):
            yield Label("Create a group", classes="dialog-title")
            # Compact widgets: the whole dialog fits a 60×20 terminal.
            yield Label("Name", classes="dialog-label")
            yield Input(placeholder="e.g. team", id="create-name", max_length=32, compact=True)
            with RadioSet(id="create-kind", compact=True):
                yield RadioButton("Private: invited people only", value=True, id="create-private")
                yield RadioButton("Public: listed, anyone may join", id="create-public")
            yield Label("Invite (optional)", classes="dialog-label")
            yield Input(placeholder="nicks, space-separated", id="create-invite", compact=True)
            yield Static("", id="create-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Create", id="create-ok", variant="primary", compact=True)
                yield Button("Cancel", id="create-cancel", compact=True)

    def on_mount(self) -> None:
        blink = getattr(self.app, "cursor_blink", True)
        for field in self.query(Input):
            field.cursor_blink = blink
        if self.nicks:
            self.query_one("#create-invite", Input).suggester = _LastWordSuggester(self.nicks)
        self.query_one("#create-name", Input).focus()

    @on(Input.Submitted)
    def _enter(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "create-ok":
            self._submit()
        else:
            self.dismiss(None)

    def _submit(self) -> None:
        name = self.query_one("#create-name", Input).value.strip().removeprefix("#")
        error = self.query_one("#create-error", Static)
        if not is_valid_name(name):
            error.update(
                Content("A name is 1-32 of A-Z a-z 0-9 _ - . and starts with a letter, digit or _.")
            )
            self.query_one("#create-name", Input).focus()
            return
        nicks = self.query_one("#create-invite", Input).value.replace(",", " ").split()
        nicks = [n.removeprefix("@") for n in nicks]
        bad = [n for n in nicks if not is_valid_name(n)]
        if bad:
            error.update(Content(f"Not a nick: {bad[0]}"))
            self.query_one("#create-invite", Input).focus()
            return
        public = self.query_one("#create-public", RadioButton).value
        self.dismiss(NewGroup(name, public, tuple(nicks)))

    def action_cancel(self) -> None:
        self.dismiss(None)


class _LastWordSuggester(Suggester):
    """Suggests a nick for the last word typed (a list of nicks, space-separated)."""

    def __init__(self, nicks: list[str]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.nicks = nicks

    async def get_suggestion(self, value: str) -> str | None:
        head, _, word = value.rpartition(" ")
        if not word:
            return None
        for nick in self.nicks:
            if nick.casefold().startswith(word.casefold()):
                return f"{head} {nick}" if head else nick
        return None


class JoinDialog(ModalScreen[str | None]):
    """Join a public group: the groups the server announces, live, with their sizes; or a name."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, rooms: Iterable[tuple[str, int]]) -> None:
        super().__init__()
        self.rooms = list(rooms)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="join-dialog"):
            yield Label("Join a public group", classes="dialog-title")
            yield OptionList(id="join-list")
            yield Static("", id="join-none", classes="dialog-hint")
            yield Input(placeholder="or type a name", id="join-name", max_length=33, compact=True)
            yield Static("Enter joins; Escape cancels.", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#join-name", Input).cursor_blink = getattr(self.app, "cursor_blink", True)
        self.show_rooms(self.rooms)
        listing = self.query_one("#join-list", OptionList)
        (listing if self.rooms else self.query_one("#join-name", Input)).focus()

    def show_rooms(self, rooms: Iterable[tuple[str, int]]) -> None:
        """The public groups we are not in, as the server announces them (called live)."""
        self.rooms = list(rooms)
        listing = self.query_one("#join-list", OptionList)
        keep = listing.highlighted_option.id if listing.highlighted_option else None
        listing.set_options(
            Option(
                Content.assemble(
                    f"#{name}",
                    Content.styled(f"  {count} member{'' if count == 1 else 's'}", "$text-muted"),
                ),
                id=pane_id("public", name),
            )
            for name, count in self.rooms
        )
        if keep is not None:
            with contextlib.suppress(OptionDoesNotExist):
                listing.highlighted = listing.get_option_index(keep)
        if listing.highlighted is None and self.rooms:
            listing.highlighted = 0  # Enter joins the first one at once
        listing.display = bool(self.rooms)
        none = self.query_one("#join-none", Static)
        none.display = not self.rooms
        none.update("No public groups right now: they appear here as they are created.")

    @on(OptionList.OptionSelected, "#join-list")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        index = event.option_index
        if 0 <= index < len(self.rooms):
            self.dismiss(self.rooms[index][0])

    @on(Input.Submitted, "#join-name")
    def _typed(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip().removeprefix("#") or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
