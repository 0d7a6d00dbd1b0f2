"""What the terminal client knows: users, groups, invitations and unread counts; plain data, no widgets."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from tlschat.protocol import ConversationInfo, Message, Welcome


def fold(name: str) -> str:
    """The identity of a nick or room: names compare case-insensitively (PROTOCOL.md)."""
    return name.casefold()


def conversation_key(address: str) -> str:
    """`@Bob` and `@bob` are one conversation: the kind character plus the folded name."""
    return address[:1] + fold(address[1:])


def mention_pattern(nick: str) -> re.Pattern[str]:
    """Where `nick` appears as a word of a text: not inside a longer name (`bobby`, `x.bob`)."""
    return re.compile(rf"(?<![\w.-]){re.escape(nick)}(?![\w-]|\.\w)", re.IGNORECASE)


def dm_address(nick: str) -> str:
    return f"@{nick}"


def room_address(room: str) -> str:
    return f"#{room}"


@dataclass
class User:
    nick: str
    """As the server spells it (first written)."""
    online: bool
    known: bool = False
    """Someone we have a conversation with (listed offline by `welcome`, or a DM came or went).

    Such a user stays listed while offline; a stranger who was only online (a guest passing
    by, say) is dropped from the lists when it goes offline, unless it shares a group with us.
    """


@dataclass
class Room:
    name: str
    members: tuple[str, ...] = ()
    public: bool = False
    owner: str | None = None
    """The member who may kick (the earliest joiner); None when the server did not say."""
    topic: str = ""


@dataclass(frozen=True)
class Invitation:
    room: str
    by: str
    members: tuple[str, ...] = ()


@dataclass
class ChatState:
    """The client's picture of the server, kept up to date from `welcome` and pushed frames."""

    me: str = ""
    """Our nick as the server spells it (`welcome.nick`)."""
    users: dict[str, User] = field(default_factory=dict)
    rooms: dict[str, Room] = field(default_factory=dict)
    """Groups we are a member of."""
    public_rooms: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Public groups the server announced: folded name -> (name, member count)."""
    invites: dict[str, Invitation] = field(default_factory=dict)
    """Pending invitations, by folded room name."""
    unread: dict[str, int] = field(default_factory=dict)
    """Unread message counts by conversation key."""
    read: dict[str, int] = field(default_factory=dict)
    """Our read marker of each conversation (PROTOCOL.md "Conversations and read markers"):
    the id of the newest message read, by conversation key; it never moves back."""
    last_ids: dict[str, int] = field(default_factory=dict)
    """The newest message id of each conversation we know of: sorts the sidebar, most recent
    first."""
    counted_until: dict[str, int] = field(default_factory=dict)
    """Per conversation, the `last_id` of `welcome.conversations`: its `unread` already counts
    the messages up to it, so their replay does not count them again."""
    gone: set[str] = field(default_factory=set)
    """Folded nicks of guests whose hold ended (`presence` with `gone`): their DM panes say so."""
    replayed_until: int = 0
    """`welcome.last_id`: messages up to it are the replay of what came while we were away,
    counted unread but never rung for (a bell per old message would be a storm)."""
    max_text: int = 4000
    """The server's `limits.max_text`: longer texts are refused before they are sent."""
    guest_hold: int | None = None
    """The server's `limits.guest_hold`: how long a guest who left is kept (None: not said)."""
    invited: dict[str, dict[str, str]] = field(default_factory=dict)
    """Invitations we sent that are still unanswered: folded room -> folded nick -> nick.

    Only this session's: the server does not list them. One goes when a `members` event shows
    the nick joined, or a `declined` event arrives.
    """

    # --- identity and addressing -------------------------------------------------------------

    def is_me(self, nick: str) -> bool:
        return fold(nick) == fold(self.me)

    def conversation_of(self, message: Message) -> str:
        """The address a message is filed under: the group, or the OTHER party of a DM.

        A DM keeps `to` as written in every copy (PROTOCOL.md "Messages"), so alice's message
        to `@bob` is filed under `@alice` in bob's client and under `@bob` in alice's.
        """
        if message.to.startswith("#"):
            return message.to
        if self.is_me(message.from_):
            return message.to  # our own message (or a note to self)
        return dm_address(message.from_)

    def gone_sentence(self, nick: str) -> str:
        """What to say of a guest whose hold ended, with the server's own hold."""
        return (
            f"{nick} has left: guests are kept {duration_words(self.guest_hold)} after they leave."
        )

    # --- welcome -----------------------------------------------------------------------------

    def apply_welcome(self, welcome: Welcome) -> list[Invitation]:
        """Replace what we know with `welcome`; return the invitations we had not seen before."""
        self.me = welcome.nick
        self.max_text = welcome.limits.max_text
        self.guest_hold = welcome.limits.guest_hold
        self.replayed_until = welcome.last_id
        previous = self.users
        self.users = {}
        for listed in welcome.users:
            before = previous.get(fold(listed.nick))
            known = not listed.online or (before is not None and before.known)
            self.users[fold(listed.nick)] = User(listed.nick, listed.online, known)
        self.rooms = {
            fold(r.room): Room(r.room, r.members, r.public, r.owner, r.topic) for r in welcome.rooms
        }
        self.public_rooms = {fold(p.room): (p.room, p.members) for p in welcome.public_rooms}
        for room in list(self.invited):
            if room in self.rooms:
                self._forget_invited(room, self.rooms[room].members)
            else:
                del self.invited[room]  # we are no longer in it
        fresh: list[Invitation] = []
        invites: dict[str, Invitation] = {}
        for info in welcome.invites:
            key = fold(info.room)
            old = self.invites.get(key)
            invites[key] = old if old is not None else Invitation(info.room, info.by)
            if old is None:
                fresh.append(invites[key])
        self.invites = invites
        return fresh

    # --- users -------------------------------------------------------------------------------

    def set_online(self, nick: str, online: bool, gone: bool = False) -> bool:
        """Record a `presence` event; False if the user was dropped from the lists.

        Dropped: a guest whose hold ended (`gone`), and anyone offline we share nothing with.
        """
        key = fold(nick)
        user = self.users.get(key)
        if gone:
            self.users.pop(key, None)
            self.gone.add(key)
            self.unread.pop(conversation_key(dm_address(nick)), None)
            return False
        if online:
            self.gone.discard(key)  # a new guest of that nick, or a registered user
        if not online and not self.keeps(nick):
            self.users.pop(key, None)
            return False
        if user is None:
            self.users[key] = User(nick, online)
        else:
            user.online = online
        return True

    def keeps(self, nick: str) -> bool:
        """Whether `nick` stays listed while offline: we talked, or we share a group."""
        user = self.users.get(fold(nick))
        if user is not None and user.known:
            return True
        return any(fold(nick) in {fold(m) for m in room.members} for room in self.rooms.values())

    def note_user(self, nick: str, *, known: bool = False) -> None:
        """Remember a nick we heard from (a DM, a member list) without changing its presence.

        `known`: we have a conversation with it (a DM), so it stays listed when offline.
        """
        user = self.users.get(fold(nick))
        if user is None:
            self.users[fold(nick)] = User(nick, False, known)
        elif known:
            user.known = True

    def knows(self, nick: str) -> bool:
        """Whether `nick` is a user we know exists (listed, a member, a DM partner)."""
        return fold(nick) in self.users

    def mentions_me(self, text: str) -> bool:
        """Whether `text` names our nick as a word (`bob:`, `hi bob.`), case-insensitively."""
        return bool(self.me) and mention_pattern(self.me).search(text) is not None

    def is_online(self, nick: str) -> bool:
        user = self.users.get(fold(nick))
        return user is not None and user.online

    def display_nick(self, nick: str) -> str:
        """The nick as the server spells it, when we know it."""
        user = self.users.get(fold(nick))
        return user.nick if user is not None else nick

    def sorted_users(self) -> list[User]:
        """Others first by presence (online first), then by name; we are not listed."""
        others = [u for u in self.users.values() if not self.is_me(u.nick)]
        return sorted(others, key=lambda u: (not u.online, fold(u.nick)))

    # --- groups ------------------------------------------------------------------------------

    def join(
        self,
        room: str,
        members: Iterable[str],
        public: bool,
        owner: str | None = None,
        topic: str = "",
    ) -> None:
        self.rooms[fold(room)] = Room(room, tuple(members), public, owner, topic)
        self.invites.pop(fold(room), None)
        self._forget_invited(room, self.rooms[fold(room)].members)
        for nick in self.rooms[fold(room)].members:
            self.note_user(nick)

    def set_members(self, room: str, members: Iterable[str], owner: str | None = None) -> None:
        current = self.rooms.get(fold(room))
        if current is None:
            self.rooms[fold(room)] = Room(room, tuple(members), owner=owner)
        else:
            current.members = tuple(members)
            if owner is not None:
                current.owner = owner
        self._forget_invited(room, self.rooms[fold(room)].members)
        for nick in self.rooms[fold(room)].members:
            self.note_user(nick)
        self.prune()

    def prune(self) -> None:
        """Drop offline users we no longer share anything with (they left our last group)."""
        for key, user in list(self.users.items()):
            if not user.online and not self.keeps(user.nick) and not self.is_me(user.nick):
                del self.users[key]

    def shared_rooms(self, nick: str) -> list[str]:
        """Our groups that `nick` is a member of, by name."""
        rooms = [r.name for r in self.rooms.values() if fold(nick) in {fold(m) for m in r.members}]
        return sorted(rooms, key=fold)

    def set_topic(self, room: str, topic: str) -> None:
        current = self.rooms.get(fold(room))
        if current is not None:
            current.topic = topic

    def topic_of(self, room: str) -> str:
        current = self.rooms.get(fold(room))
        return current.topic if current is not None else ""

    def owner_of(self, room: str) -> str | None:
        current = self.rooms.get(fold(room))
        return current.owner if current is not None else None

    def members_of(self, room: str) -> tuple[str, ...]:
        current = self.rooms.get(fold(room))
        return current.members if current is not None else ()

    def is_member(self, room: str) -> bool:
        return fold(room) in self.rooms

    def leave(self, room: str) -> None:
        self.rooms.pop(fold(room), None)
        self.invited.pop(fold(room), None)
        self.unread.pop(conversation_key(room_address(room)), None)
        self.prune()

    def set_public(self, room: str, count: int) -> None:
        if count <= 0:
            self.public_rooms.pop(fold(room), None)
        else:
            self.public_rooms[fold(room)] = (room, count)

    def joinable_public_rooms(self) -> list[tuple[str, int]]:
        """Public groups we are not in yet, by name."""
        rooms = [v for k, v in self.public_rooms.items() if k not in self.rooms]
        return sorted(rooms, key=lambda item: fold(item[0]))

    def invite_candidates(self, room: str) -> list[str]:
        """Users we know of who are not members of `room` yet (online first), never ourselves."""
        members = {fold(m) for m in self.members_of(room)}
        members |= self.invited.get(fold(room), {}).keys()
        return [u.nick for u in self.sorted_users() if fold(u.nick) not in members]

    def note_invited(self, room: str, nick: str) -> None:
        """We invited `nick` to `room`: not offered again until they join or decline."""
        if fold(nick) not in {fold(m) for m in self.members_of(room)}:
            self.invited.setdefault(fold(room), {})[fold(nick)] = nick

    def invited_to(self, room: str) -> list[str]:
        """Who we invited to `room` and has not answered yet, by name."""
        return sorted(self.invited.get(fold(room), {}).values(), key=fold)

    def invitation_declined(self, room: str, nick: str) -> None:
        pending = self.invited.get(fold(room))
        if pending is not None:
            pending.pop(fold(nick), None)
            if not pending:
                del self.invited[fold(room)]

    def _forget_invited(self, room: str, members: Iterable[str]) -> None:
        for nick in members:
            self.invitation_declined(room, nick)

    # --- invitations -------------------------------------------------------------------------

    def add_invite(self, room: str, by: str, members: Iterable[str] = ()) -> bool:
        """Record an invitation; False if it was already pending."""
        key = fold(room)
        fresh = key not in self.invites
        self.invites[key] = Invitation(room, by, tuple(members))
        self.note_user(by)
        return fresh

    def drop_invite(self, room: str) -> None:
        self.invites.pop(fold(room), None)

    # --- unread ------------------------------------------------------------------------------

    def mark_unread(self, address: str) -> int:
        key = conversation_key(address)
        self.unread[key] = self.unread.get(key, 0) + 1
        return self.unread[key]

    def apply_conversations(self, conversations: Iterable[ConversationInfo]) -> list[str]:
        """Take `welcome.conversations` (or a `conversations` reply): read markers, unread
        counts, recency. Return the addresses with unread messages, most recent first."""
        unread: list[str] = []
        for info in conversations:
            address = info.with_
            key = conversation_key(address)
            self.read[key] = max(self.read.get(key, 0), info.read)
            self.last_ids[key] = max(self.last_ids.get(key, 0), info.last_id)
            self.counted_until[key] = info.last_id
            if info.unread:
                self.unread[key] = info.unread
                unread.append(address)
            else:
                self.unread.pop(key, None)
            if address.startswith("@") and not self.is_me(address[1:]):
                self.note_user(address[1:], known=True)
        return unread

    def counts_as_unread(self, address: str, message: Message) -> bool:
        """Whether `message` adds to the unread count (not when welcome's count had it)."""
        key = conversation_key(address)
        return message.id > max(self.counted_until.get(key, 0), self.read.get(key, 0))

    def saw(self, address: str, message_id: int) -> None:
        """A message of `address` arrived: the conversation is this recent."""
        key = conversation_key(address)
        self.last_ids[key] = max(self.last_ids.get(key, 0), message_id)

    def recency(self, address: str) -> int:
        return self.last_ids.get(conversation_key(address), 0)

    def read_marker(self, address: str) -> int:
        return self.read.get(conversation_key(address), 0)

    def set_read(self, address: str, message_id: int) -> bool:
        """Move our read marker (never back); True if it moved."""
        key = conversation_key(address)
        if message_id <= self.read.get(key, 0):
            return False
        self.read[key] = message_id
        return True

    def is_gone(self, nick: str) -> bool:
        return fold(nick) in self.gone

    def clear_unread(self, address: str) -> None:
        self.unread.pop(conversation_key(address), None)

    def unread_for(self, address: str) -> int:
        return self.unread.get(conversation_key(address), 0)


def duration_words(seconds: int | None) -> str:
    """`600` -> "10 minutes", `90` -> "90 seconds", `7200` -> "2 hours"; None -> "a while"."""
    if seconds is None:
        return "a while"
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    if seconds < 7200 or seconds % 3600:
        return f"{round(seconds / 60)} minutes"
    return f"{seconds // 3600} hours"
