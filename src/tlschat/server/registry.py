"""Users, rooms, members and invitations as the server holds them live: plain data, no I/O.

Who is online (and where their sessions are) is the hub's business (server/hub.py)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from tlschat.protocol import name_key


@dataclass
class User:
    """A logged-in user and its sessions (several terminals share one User)."""

    nick: str
    """As first registered, or for a guest as given."""
    registered: bool
    identity: str = ""
    """Who owns direct conversations: the nick key for an account; a fresh, unique token for a
    guest, so a later holder of the same guest nick cannot read an earlier guest's messages."""
    sessions: list[Any] = field(default_factory=list)
    """The user's sessions on this server (the hub's `Peer`s)."""
    last_delivered: int = 0

    def __post_init__(self) -> None:
        if not self.identity:
            key = name_key(self.nick)
            # Random, never a counter: a counter restarts with the process, and a later guest
            # of the same nick would then own the earlier one's conversations and files.
            self.identity = key if self.registered else f"~{key}~{secrets.token_hex(12)}"

    @property
    def key(self) -> str:
        return name_key(self.nick)


@dataclass
class Invitation:
    nick: str
    """The invitee as spelled (registered spelling if it has an account)."""
    by: str
    created: float


@dataclass
class Room:
    name: str
    public: bool
    members: dict[str, str] = field(default_factory=dict)
    """nick key -> nick, in join order."""
    joined_after: dict[str, int] = field(default_factory=dict)
    """nick key -> last message id before they joined (replay starts after it)."""
    invites: dict[str, Invitation] = field(default_factory=dict)
    topic: str = ""
    kicked: dict[str, float] = field(default_factory=dict)
    """nick key -> until when (time.time()) a user kicked from this public room may not join."""

    @property
    def key(self) -> str:
        return name_key(self.name)

    @property
    def owner(self) -> str | None:
        """The member who joined earliest: the creator while it stays, then the next one
        (PROTOCOL.md "Groups": ownership passes on to the earliest joiner)."""
        return next(iter(self.members.values()), None)

    @property
    def address(self) -> str:
        return f"#{self.name}"

    def member_names(self) -> tuple[str, ...]:
        return tuple(self.members.values())

    def is_member(self, nick_key: str) -> bool:
        return nick_key in self.members


class Registry:
    """The rooms the rules consult and change. The rules persist through the store; this only
    remembers."""

    def __init__(self) -> None:
        self.rooms: dict[str, Room] = {}
        self._rooms_of: dict[str, set[str]] = {}
        """nick key -> keys of the rooms it is a member of."""

    # --- rooms ---------------------------------------------------------------------------------

    def room(self, name: str) -> Room | None:
        return self.rooms.get(name_key(name))

    def add_room(self, room: Room) -> None:
        self.rooms[room.key] = room
        for key in room.members:
            self._rooms_of.setdefault(key, set()).add(room.key)

    def remove_room(self, room: Room) -> None:
        self.rooms.pop(room.key, None)
        for key in room.members:
            self._rooms_of.get(key, set()).discard(room.key)

    def refresh_room(self, key: str, fresh: Room | None) -> Room | None:
        """Make room `key` what the store now says (`fresh`; None: it is gone). A room already
        here is updated in place: the rules may hold it across an await."""
        room = self.rooms.get(key)
        if room is None:
            if fresh is not None:
                self.add_room(fresh)
            return fresh
        for member in room.members:
            self._rooms_of.get(member, set()).discard(key)
        if fresh is None:
            del self.rooms[key]
            return None
        room.public, room.topic = fresh.public, fresh.topic
        room.members, room.joined_after = fresh.members, fresh.joined_after
        room.invites, room.kicked = fresh.invites, fresh.kicked
        for member in room.members:
            self._rooms_of.setdefault(member, set()).add(key)
        return room

    def add_member(self, room: Room, nick: str, joined_after: int) -> None:
        key = name_key(nick)
        room.members[key] = nick
        room.joined_after[key] = joined_after
        room.invites.pop(key, None)
        self._rooms_of.setdefault(key, set()).add(room.key)

    def remove_member(self, room: Room, nick: str) -> None:
        key = name_key(nick)
        room.members.pop(key, None)
        room.joined_after.pop(key, None)
        self._rooms_of.get(key, set()).discard(room.key)

    def rooms_of(self, nick: str) -> list[Room]:
        keys = self._rooms_of.get(name_key(nick), set())
        return [self.rooms[k] for k in sorted(keys) if k in self.rooms]

    def public_rooms(self) -> list[Room]:
        return sorted((r for r in self.rooms.values() if r.public), key=lambda r: r.key)

    def invitations_for(self, nick: str, now: float, ttl: float) -> list[tuple[Room, Invitation]]:
        key = name_key(nick)
        found = []
        for room in self.rooms.values():
            invitation = room.invites.get(key)
            if invitation is not None and now - invitation.created < ttl:
                found.append((room, invitation))
        return sorted(found, key=lambda pair: pair[1].created)

    def expire_invitations(self, now: float, ttl: float) -> list[tuple[Room, str]]:
        """Drop invitations older than `ttl`; return (room, invitee key) of each."""
        dropped = []
        for room in self.rooms.values():
            for key, invitation in list(room.invites.items()):
                if now - invitation.created >= ttl:
                    del room.invites[key]
                    dropped.append((room, key))
        return dropped
