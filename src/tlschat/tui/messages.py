"""App-level Textual messages: facts the network worker reports, posted to the App and routed down."""

from __future__ import annotations

from textual.message import Message

from tlschat import protocol


class Welcomed(Message):
    """The server accepted our `hello` (first connect, or again after a reconnect)."""

    def __init__(self, welcome: protocol.Welcome) -> None:
        super().__init__()
        self.welcome = welcome


class MessageReceived(Message):
    """A chat message arrived: someone else's, or the echo of one of ours."""

    def __init__(self, message: protocol.Message) -> None:
        super().__init__()
        self.message = message


class PresenceChanged(Message):
    """A user's first session started or last session ended."""

    def __init__(self, nick: str, online: bool, gone: bool = False) -> None:
        super().__init__()
        self.nick = nick
        self.online = online
        self.gone = gone
        """A guest's hold ended (PROTOCOL.md "presence" with `gone`): drop it from the lists."""

    def can_replace(self, message: Message) -> bool:
        # A flapping user: only the latest state of the same nick matters.
        return (
            isinstance(message, PresenceChanged) and message.nick.casefold() == self.nick.casefold()
        )


class InvitationReceived(Message):
    """Someone invited us to a group."""

    def __init__(self, room: str, by: str, members: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.room = room
        self.by = by
        self.members = members


class RoomJoined(Message):
    """We are now a member of a group (created, accepted or joined)."""

    def __init__(
        self,
        room: str,
        members: tuple[str, ...],
        public: bool,
        owner: str | None = None,
        topic: str = "",
    ) -> None:
        super().__init__()
        self.room = room
        self.members = members
        self.public = public
        self.owner = owner
        self.topic = topic

    @classmethod
    def of(cls, joined: protocol.Joined) -> RoomJoined:
        return cls(joined.room, joined.members, joined.public, joined.owner, joined.topic)


class MembersChanged(Message):
    """A group we are in has a new member list."""

    def __init__(self, room: str, members: tuple[str, ...], owner: str | None = None) -> None:
        super().__init__()
        self.room = room
        self.members = members
        self.owner = owner


class TopicChanged(Message):
    """A group we are in has a new topic."""

    def __init__(self, room: str, topic: str, by: str) -> None:
        super().__init__()
        self.room = room
        self.topic = topic
        self.by = by


class InvitationDeclined(Message):
    """Someone declined our invitation."""

    def __init__(self, room: str, nick: str) -> None:
        super().__init__()
        self.room = room
        self.nick = nick


class PublicRoomChanged(Message):
    """A public group appeared or changed size (`members == 0`: it is gone)."""

    def __init__(self, room: str, members: int) -> None:
        super().__init__()
        self.room = room
        self.members = members


class RoomLeft(Message):
    """We are no longer a member of a group."""

    def __init__(self, room: str, by: str | None = None, reason: str | None = None) -> None:
        super().__init__()
        self.room = room
        self.by = by
        """Who removed us (a kick), or None when we left."""
        self.reason = reason


class ServerSaidBye(Message):
    """The server is shutting down; the client library reconnects by itself."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class ConnectionStateChanged(Message):
    """The connection moved to another state (see `tlschat.client.ConnectionState`)."""

    def __init__(self, state: str, detail: str = "", retry_in: float | None = None) -> None:
        super().__init__()
        self.state = state
        self.detail = detail
        self.retry_in = retry_in

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ConnectionStateChanged)


class HistoryLoaded(Message):
    """Older messages of one conversation arrived (or the request failed: `failed`)."""

    def __init__(
        self,
        address: str,
        messages: tuple[protocol.Message, ...],
        more: bool,
        *,
        failed: bool = False,
        before: int | None = None,
        purpose: str = "older",
    ) -> None:
        super().__init__()
        self.address = address
        self.messages = messages
        self.more = more
        self.failed = failed
        self.before = before
        """The `before` it was asked with."""
        self.purpose = purpose
        """Why it was asked: `older` (scrolled to the top), `window` (around a message to show)
        or `gap` (the gap row left by a window came into view)."""


class ReadElsewhere(Message):
    """Another session of ours moved a read marker (PROTOCOL.md "Conversations and read
    markers"): `address` is read up to message `id`."""

    def __init__(self, address: str, id: int) -> None:
        super().__init__()
        self.address = address
        self.id = id


class TypingReceived(Message):
    """`nick` is typing in `address` (`to` as they wrote it; PROTOCOL.md "Messages" → Typing)."""

    def __init__(self, nick: str, address: str) -> None:
        super().__init__()
        self.nick = nick
        self.address = address

    def can_replace(self, message: Message) -> bool:
        return (
            isinstance(message, TypingReceived)
            and message.nick.casefold() == self.nick.casefold()
            and message.address.casefold() == self.address.casefold()
        )


class ConversationWanted(Message):
    """Open (and show) the pane of `@nick` or `#room`, e.g. after a request succeeded."""

    def __init__(self, address: str, activate: bool = True) -> None:
        super().__init__()
        self.address = address
        self.activate = activate


def translate(frame: object) -> Message | None:
    """The App message for one pushed server frame, or None for frames the UI ignores."""
    match frame:
        case protocol.Message():
            return MessageReceived(frame)
        case protocol.Presence(nick=nick, online=online, gone=gone):
            return PresenceChanged(nick, online, bool(gone))
        case protocol.Invited(room=room, by=by, members=members):
            return InvitationReceived(room, by, members)
        case protocol.Joined():
            return RoomJoined.of(frame)
        case protocol.Members(room=room, members=members, owner=owner):
            return MembersChanged(room, members, owner)
        case protocol.TopicEvent(room=room, topic=topic, by=by):
            return TopicChanged(room, topic, by)
        case protocol.Declined(room=room, nick=nick):
            return InvitationDeclined(room, nick)
        case protocol.RoomEvent(room=room, members=count):
            return PublicRoomChanged(room, count)
        case protocol.Left(room=room, by=by, reason=reason):
            return RoomLeft(room, by, reason)
        case protocol.Read(with_=address, id=message_id):
            return ReadElsewhere(address, message_id)
        case protocol.Bye(reason=reason):
            return ServerSaidBye(reason)
        case protocol.Welcome():
            return Welcomed(frame)
        case protocol.TypingEvent(from_=nick, to=to):
            return TypingReceived(nick, to)
    return None
