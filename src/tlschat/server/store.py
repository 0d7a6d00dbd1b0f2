"""The store seam: what the rules need of durable state, as a Protocol with typed results.

`SqliteStore` (server/sqlite_store.py) is the embedded implementation; a PostgreSQL store is a
new module implementing the same Protocol. The rules never see SQL, connections or threads.
Every write is group-committed by the implementation: a call returns once the transaction that
holds it is durable, and writes issued together share one transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from tlschat.protocol import ErrorCode, RequestError
from tlschat.server.search import SearchQuery


class StoreUnavailable(RequestError):
    """The store cannot take writes right now (disk full, database gone): nothing of the request
    was stored, so nothing is delivered; the client may retry (PROTOCOL.md `unavailable`)."""

    def __init__(self, message: str = "the server cannot store anything right now") -> None:
        super().__init__(ErrorCode.UNAVAILABLE, message)


@dataclass(frozen=True)
class StoredUser:
    """A registered account."""

    nick: str
    """As first registered."""
    pw_hash: str
    last_delivered: int


@dataclass(frozen=True)
class StoredGuest:
    """A guest, online or held (PROTOCOL.md "Session" → Guests)."""

    nick_key: str
    nick: str
    identity: str
    token_hash: str
    """SHA-256 of its latest `resume` token (the token itself is never stored)."""
    held_until: float | None
    """Wall-clock end of its hold; None while it is online."""
    last_delivered: int = 0


@dataclass(frozen=True)
class StoredConversation:
    """One of a user's conversations: `partner` (an identity) or `room_key`, newest first."""

    last_id: int
    partner: str | None = None
    room_key: str | None = None
    read: int = 0
    unread: int = 0


@dataclass(frozen=True)
class StoredMessage:
    """A message as it stands now (an edited one with its latest text, a deleted one with
    `deleted` set and no text), or an edit or delete entry (`edit_of`, `delete_of`)."""

    id: int
    ts: str
    sender: str
    to_addr: str
    text: str
    file_id: str | None
    room_key: str | None = None
    edit_of: int | None = None
    delete_of: int | None = None
    edited: str | None = None
    """When its text was last replaced by an edit."""
    deleted: bool = False
    dm: tuple[str, str] | None = None
    """The two parties' identities of a direct conversation (sorted)."""
    sender_id: str | None = None
    """The sender's identity (None for messages stored before edits existed)."""

    @property
    def is_entry(self) -> bool:
        """An edit or delete entry, not a message of its own."""
        return self.edit_of is not None or self.delete_of is not None


@dataclass(frozen=True)
class NewMessage:
    """A message to store; the store gives it its id."""

    ts: str
    sender: str
    to_addr: str
    text: str
    dm: tuple[str, str] | None = None
    """The two parties' identities of a direct conversation."""
    room_key: str | None = None
    file_id: str | None = None
    grant: tuple[str, ...] = ()
    """Identities that may download `file_id` from now on: stored in the message's transaction."""
    sender_id: str = ""
    """The sender's identity (`User.identity`): who may edit or delete it."""
    edit_of: int | None = None
    """An edit entry: message `edit_of` takes `text` (and is re-indexed for search)."""
    delete_of: int | None = None
    """A delete entry: message `delete_of` loses its text, its search entry and, unless another
    message carries it, everyone's access to its file but the uploader's."""


@dataclass(frozen=True)
class StoredMember:
    nick_key: str
    nick: str
    joined_after: int


@dataclass(frozen=True)
class StoredInvite:
    nick_key: str
    by: str
    created: float


@dataclass
class StoredRoom:
    room_key: str
    name: str
    public: bool
    members: list[StoredMember] = field(default_factory=list)
    invites: list[StoredInvite] = field(default_factory=list)
    topic: str = ""
    kicked: dict[str, float] = field(default_factory=dict)
    """nick key -> until when a user kicked from this public room may not join it again."""


@dataclass(frozen=True)
class StoredBlob:
    """Stored content, once per SHA-256, with what its bytes are."""

    sha256: str
    size: int
    mime: str
    width: int | None
    height: int | None


@dataclass(frozen=True)
class StoredFile:
    """One upload: its own id and display name over a blob."""

    id: str
    name: str
    uploader: str
    """The uploader's identity (`User.identity`)."""
    sha256: str
    size: int
    mime: str
    width: int | None
    height: int | None


@dataclass(frozen=True)
class StoredDelivery:
    """A stored message (or entry) and the nick keys of those it goes to: what a node
    delivers when no notification carried it (docs/architecture.md "Several nodes")."""

    message: StoredMessage
    recipients: tuple[str, ...]


def recipients_of(
    message: StoredMessage,
    members: dict[str, list[tuple[str, int]]],
    guest_keys: dict[str, str],
) -> tuple[str, ...]:
    """Who `message` goes to, as the rules addressed it: a room's members who joined before it
    (`members`: room key -> (nick key, joined after)); a direct conversation's two parties,
    an account by its identity (its nick key), a guest while it exists (`guest_keys`: guest
    identity -> nick key; a later guest of the same nick is someone else)."""
    if message.room_key is not None:
        return tuple(key for key, after in members.get(message.room_key, ()) if after < message.id)
    found = []
    for identity in message.dm or ():
        key = guest_keys.get(identity) if identity.startswith("~") else identity
        if key is not None:
            found.append(key)
    return tuple(dict.fromkeys(found))


class Store(Protocol):
    """Durable state. Writes raise StoreUnavailable when nothing could be stored."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    # users
    async def get_user(self, nick_key: str) -> StoredUser | None: ...
    async def create_user(self, nick_key: str, nick: str, pw_hash: str) -> bool:
        """Register a nick; False if someone registered it first."""
        ...

    async def registered_nicks(self, keys: Iterable[str]) -> dict[str, str]: ...
    async def set_last_delivered(self, marks: dict[str, int]) -> None: ...

    # administration (PROTOCOL.md "Administration")
    async def bans(self) -> dict[str, str]:
        """nick key -> reason of every banned nick."""
        ...

    async def ban(self, nick_key: str, reason: str) -> None: ...
    async def unban(self, nick_key: str) -> bool:
        """False if the nick was not banned."""
        ...

    # guests
    async def get_guest(self, nick_key: str) -> StoredGuest | None: ...
    async def put_guest(self, guest: StoredGuest) -> None:
        """Record a guest (online: `held_until` None), replacing one of the same nick."""
        ...

    async def hold_guest(self, nick_key: str, held_until: float, last_delivered: int) -> None: ...
    async def hold_online_guests(self, held_until: float, online: Iterable[str] = ()) -> None:
        """At start: the guests recorded online (the last run ended under them) are held,
        except those of `online` (nick keys with a session on another node)."""
        ...

    async def guests_held_until(self, moment: float) -> list[StoredGuest]:
        """The guests whose hold ended by `moment`."""
        ...

    async def delete_guest(self, nick_key: str, identity: str) -> None:
        """The guest, its memberships, invitations and read markers (its hold ended)."""
        ...

    async def identity_nicks(self, identities: Iterable[str]) -> dict[str, str]:
        """identity -> nick, for accounts and guests that still exist."""
        ...

    # conversations and read markers
    async def conversations(
        self, identity: str, nick_key: str, rooms: dict[str, int], limit: int
    ) -> list[StoredConversation]:
        """The user's conversations, most recent first, with its read markers and how many
        messages others sent after them. `rooms` maps its rooms to the last id before it
        joined."""
        ...

    async def set_read(self, identity: str, conversation: str, msg_id: int) -> int:
        """Move a read marker forward (never back); return where it stands now."""
        ...

    # rooms
    async def load_rooms(self, room_key: str | None = None) -> list[StoredRoom]:
        """Every room; or only `room_key` (none if it is gone): what a node reads again when
        another node changed it."""
        ...

    async def create_room(
        self,
        room_key: str,
        name: str,
        public: bool,
        creator: StoredMember | None,
        topic: str = "",
    ) -> None: ...
    async def set_topic(self, room_key: str, topic: str) -> None: ...
    async def add_kick(self, room_key: str, nick_key: str, until: float) -> None:
        """Keep `nick_key` out of a public room until `until`; `add_member` ends it."""
        ...

    async def delete_room(self, room_key: str) -> None:
        """The room, its members, invitations and its whole history."""
        ...

    async def add_member(self, room_key: str, member: StoredMember) -> None:
        """Add (or re-add) a member; its invitation to the room, if any, is used up."""
        ...

    async def remove_member(self, room_key: str, nick_key: str) -> None: ...
    async def add_invite(self, room_key: str, invite: StoredInvite) -> None: ...
    async def delete_invite(self, room_key: str, nick_key: str) -> None: ...
    async def delete_invites_before(self, created: float) -> None: ...

    # messages
    async def max_message_id(self) -> int: ...
    async def add_message(self, message: NewMessage) -> int:
        """Store a message (with its file grant) and return its id, once committed.

        An edit or delete entry is checked and applied in the same transaction: it returns 0
        (and stores nothing) when its message is no longer there to change (deleted meanwhile,
        or itself an entry)."""
        ...

    async def deliveries_between(self, after: int, upto: int) -> list[StoredDelivery]:
        """The messages and entries with `after` < id <= `upto`, oldest first, each with its
        recipients (`recipients_of`): what no notification carried (a lost one, or a node
        that died between its commit and its publish)."""
        ...

    async def get_message(self, msg_id: int) -> StoredMessage | None:
        """One stored message or entry, as it stands now (with `dm` and `sender_id`)."""
        ...

    async def search(
        self,
        query: SearchQuery,
        *,
        identity: str | None = None,
        dm: tuple[str, str] | None = None,
        rooms: dict[str, int],
        before: int | None,
        limit: int,
    ) -> tuple[list[StoredMessage], bool]:
        """Up to `limit` messages matching `query` (PROTOCOL.md "Search"), newest first, with
        id < `before`, and whether more match. Only within: every direct conversation of
        `identity`, the direct conversation `dm`, and each room of `rooms` after its id
        (room key -> last id before the user joined). Entries and deleted messages never
        match; edited ones match their latest text."""
        ...

    async def replay(
        self, identity: str, rooms: dict[str, int], after: int, limit: int
    ) -> list[StoredMessage]:
        """The newest `limit` messages addressed to `identity` with id > `after`, oldest first.
        `rooms` maps each of the user's rooms to the last id before they joined."""
        ...

    async def history(
        self,
        *,
        dm: tuple[str, str] | None = None,
        room_key: str | None = None,
        before: int | None,
        limit: int,
    ) -> tuple[list[StoredMessage], bool]:
        """Up to `limit` messages of one conversation with id < `before`, oldest first, and
        whether older ones exist. Messages as they stand now; never edit or delete entries."""
        ...

    async def dm_partners(self, identity: str) -> set[str]:
        """Identities this one has a direct conversation with."""
        ...

    # files (server/files.py)
    async def file_blob(self, sha256: str) -> StoredBlob | None: ...
    async def add_blob(self, blob: StoredBlob) -> None: ...
    async def blob_hashes(self) -> set[str]: ...
    async def add_file(self, file_id: str, sha256: str, name: str, uploader: str) -> None: ...
    async def files(self, file_ids: Iterable[str]) -> dict[str, StoredFile]: ...
    async def file_for(self, file_id: str, identity: str) -> StoredFile | None:
        """The file, if `identity` uploaded it or received a message carrying it; else None."""
        ...

    async def grant_file(self, file_id: str, identities: Iterable[str]) -> None: ...
    async def delete_unsent_files(
        self, created_before: float, keep: Iterable[str] = ()
    ) -> list[str]: ...
    async def delete_unused_blobs(self) -> list[str]: ...
    def blob_lock(self, *, exclusive: bool) -> contextlib.AbstractAsyncContextManager[None]:
        """Held (shared) by an upload while it places a blob's content and records it, and
        (exclusive) by the garbage collection while it deletes blobs: for every node sharing
        the files directory, so none deletes content another is placing."""
        ...


@contextlib.asynccontextmanager
async def no_lock() -> AsyncIterator[None]:
    """`blob_lock` of a store only one node uses (the data directory's lock sees to that)."""
    yield
