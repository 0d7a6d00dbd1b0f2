"""The sidebar: users with presence dots, our groups, pending invitations and public groups."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from tlschat.tui.ids import Kind, pane_id
from tlschat.tui.state import ChatState, dm_address, room_address

ONLINE = "●"
OFFLINE = "○"


def presence_dot(online: bool) -> Content:
    return Content.styled(ONLINE, "$success") if online else Content.styled(OFFLINE, "$text-muted")


def unread_badge(count: int) -> Content:
    return (
        Content.styled(f" {count} ", "bold $text-warning on $warning-muted")
        if count
        else Content("")
    )


def _header(title: str) -> Option:
    return Option(Content.styled(title, "bold $text-secondary"), disabled=True)


class Sidebar(Vertical):
    """Where conversations are picked: Enter or a click opens one."""

    class Opened(Message):
        """Open the conversation `@nick` or `#room`."""

        def __init__(self, address: str) -> None:
            super().__init__()
            self.address = address

    class InvitationChosen(Message):
        """The user picked a pending invitation: ask whether to accept it."""

        def __init__(self, room: str) -> None:
            super().__init__()
            self.room = room

    class JoinChosen(Message):
        """The user picked a public group they are not in."""

        def __init__(self, room: str) -> None:
            super().__init__()
            self.room = room

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._targets: dict[str, tuple[Kind, str]] = {}
        """Option id -> what it stands for."""

    def compose(self) -> ComposeResult:
        yield OptionList(id="sidebar-list")

    @property
    def option_list(self) -> OptionList:
        return self.query_one("#sidebar-list", OptionList)

    def show(self, state: ChatState) -> None:
        """Rebuild the rows from `state`, keeping the highlighted row where it was."""
        options: list[Option] = []
        targets: dict[str, tuple[Kind, str]] = {}

        def row(kind: Kind, name: str, prompt: Content) -> None:
            option_id = pane_id(kind, name)
            targets[option_id] = (kind, name)
            options.append(Option(prompt, id=option_id))

        options.append(_header("People"))
        # Conversations most recent first (welcome.conversations, then each message), then the
        # others as before: online first, by name.
        users = sorted(state.sorted_users(), key=lambda u: -state.recency(dm_address(u.nick)))
        for user in users:
            unread = state.unread_for(dm_address(user.nick))
            row(
                "user",
                user.nick,
                Content.assemble(
                    presence_dot(user.online), " ", user.nick, " ", unread_badge(unread)
                ),
            )
        if not users:
            options.append(
                Option(Content.styled("nobody yet", "italic $text-muted"), disabled=True)
            )

        options.append(_header("Groups"))
        rooms = sorted(
            state.rooms.values(),
            key=lambda r: (-state.recency(room_address(r.name)), r.name.casefold()),
        )
        for room in rooms:
            unread = state.unread_for(room_address(room.name))
            row("group", room.name, Content.assemble("#", room.name, " ", unread_badge(unread)))
        if not rooms:
            options.append(
                Option(Content.styled("none yet (ctrl+g)", "italic $text-muted"), disabled=True)
            )

        if state.invites:
            options.append(_header("Invitations"))
            for invite in sorted(state.invites.values(), key=lambda i: i.room.casefold()):
                prompt = Content.assemble(
                    Content.styled("✉ ", "$warning"),
                    f"#{invite.room}",
                    Content.styled(f" by {invite.by}", "$text-muted"),
                )
                row("invite", invite.room, prompt)

        public = state.joinable_public_rooms()
        if public:
            options.append(_header("Public groups"))
            for name, count in public:
                row(
                    "public",
                    name,
                    Content.assemble(f"#{name}", Content.styled(f" ({count})", "$text-muted")),
                )

        listing = self.option_list
        highlighted = listing.highlighted_option
        keep = highlighted.id if highlighted is not None else None
        listing.set_options(options)
        self._targets = targets
        if keep is not None and keep in targets:
            listing.highlighted = listing.get_option_index(keep)

    @on(OptionList.OptionSelected, "#sidebar-list")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        target = self._targets.get(event.option_id or "")
        if target is None:
            return
        kind, name = target
        if kind == "user":
            self.post_message(self.Opened(dm_address(name)))
        elif kind == "group":
            self.post_message(self.Opened(room_address(name)))
        elif kind == "invite":
            self.post_message(self.InvitationChosen(name))
        elif kind == "public":
            self.post_message(self.JoinChosen(name))
