"""A conversation pane: the message log and, for a group, its live member list."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import tzinfo

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import OptionList, Static, TabPane
from textual.widgets.option_list import Option

from tlschat.tui.ids import address_pane_id, pane_id
from tlschat.tui.widgets.message_log import MessageLog
from tlschat.tui.widgets.sidebar import presence_dot


def pane_title(address: str, unread: int = 0) -> Content:
    """`@alice` / `#room`, with the unread count when there is one (literal text, never markup)."""
    if unread:
        return Content.assemble(address, Content.styled(f" ({unread})", "bold $text-warning"))
    return Content(address)


class MemberList(OptionList):
    """A group's members with presence dots; Enter on one opens a DM with them."""

    class Picked(Message):
        def __init__(self, nick: str) -> None:
            super().__init__()
            self.nick = nick

    def __init__(self, *, classes: str | None = None) -> None:
        super().__init__(classes=classes)
        self._nicks: dict[str, str] = {}

    def show(
        self,
        members: Iterable[str],
        online: dict[str, bool],
        me: str,
        pending: Iterable[str] = (),
        owner: str | None = None,
    ) -> None:
        """Members, online first (the owner marked); then `pending`: invited, not answered yet
        (dimmed)."""
        names = sorted(members, key=lambda n: (not online.get(n.casefold(), False), n.casefold()))
        options = []
        for nick in names:
            label = Content.assemble(presence_dot(online.get(nick.casefold(), False)), " ", nick)
            if owner is not None and nick.casefold() == owner.casefold():
                label = label.append(Content.styled(" (owner)", "$text-accent"))
            if nick.casefold() == me.casefold():
                label = label.append(Content.styled(" (you)", "$text-muted"))
            options.append(Option(label, id=pane_id("member", nick)))
        invited = [n for n in pending if n.casefold() not in {m.casefold() for m in names}]
        for nick in invited:
            label = Content.styled(f"◌ {nick} (invited)", "italic $text-muted")
            options.append(Option(label, id=pane_id("member", nick)))
        self._nicks = {pane_id("member", n): n for n in [*names, *invited]}
        self.set_options(options)
        self.border_title = f"Members ({len(names)})"

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        nick = self._nicks.get(event.option_id or "")
        if nick is not None:
            self.post_message(self.Picked(nick))


class ConversationPane(TabPane):
    """One tab: `@nick` (a DM filed under the other party) or `#room` (a group)."""

    def __init__(self, address: str, *, me: str, tz: tzinfo | None = None) -> None:
        super().__init__(pane_title(address), id=address_pane_id(address))
        self.address = address
        self.is_group = address.startswith("#")
        self.log_view = MessageLog(address, me=me, tz=tz)
        self.member_list = MemberList(classes="members") if self.is_group else None
        self.topic_line = Static("", classes="topic") if self.is_group else None

        self.new_below = Static("", classes="new-below")
        """"N new messages below": shown while the user is scrolled up and messages arrive."""

    def show_topic(self, topic: str) -> None:
        """The group's topic above its log (literal text); hidden while there is none."""
        if self.topic_line is not None:
            self.topic_line.update(Content(f"Topic: {topic}") if topic else Content(""))
            self.topic_line.display = bool(topic)

    def compose(self) -> ComposeResult:
        if self.topic_line is not None:
            self.topic_line.display = False
            yield self.topic_line
        with Horizontal(classes="conversation-body"):
            with Vertical(classes="log-column"):
                yield self.log_view
                yield self.new_below
            if self.member_list is not None:
                yield self.member_list

    @on(MessageLog.UnseenChanged)
    def _unseen(self, event: MessageLog.UnseenChanged) -> None:
        event.stop()
        count = event.count
        self.new_below.set_class(count > 0, "-visible")
        if count:
            noun = "message" if count == 1 else "messages"
            self.new_below.update(Content(f"↓ {count} new {noun} below (pagedown)"))
