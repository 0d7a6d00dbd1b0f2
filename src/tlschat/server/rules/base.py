"""What every rule module shares: the session as the rules see it, and the context (store, hub,
registry, files) they are written against. No sockets, no SQL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from tlschat.protocol import (
    ErrorCode,
    FileMeta,
    Frame,
    Limits,
    Reply,
    RequestError,
    encode,
    is_valid_name,
    name_key,
    parse_address,
)
from tlschat.server.hub import Hub
from tlschat.server.registry import Invitation, Registry, Room, User
from tlschat.server.store import Store, StoredGuest, StoredRoom

if TYPE_CHECKING:
    from tlschat.config import ServerConfig


class Peer(Protocol):
    """One connection as the rules see it (server/connection.py's `Session`, or a test's)."""

    user: User | None
    peer_ip: str
    peer_cn: str | None
    """The client certificate's common name under mutual TLS: the only nick allowed."""
    closing: bool
    queue_limit: int

    def shutdown(self, frame: Reply | None = None, reason: str = "closing") -> None:
        """Send `frame` last, then close."""
        ...

    def send(self, frame: Frame, msg_id: int = 0) -> None: ...
    def deliver(self, data: bytes, msg_id: int = 0) -> None: ...
    def flush(self) -> None: ...
    def catch_up(self) -> None: ...
    def send_error(
        self,
        code: ErrorCode | str,
        message: str,
        ref: str | None = None,
        retry_after_ms: int | None = None,
    ) -> None: ...
    async def deliver_paced(
        self, data: bytes, msg_id: int = 0, *, high: int | None = None
    ) -> None: ...
    def logged_in(self, user: User) -> None: ...
    def begin_replay(self) -> None: ...
    def end_replay(self, last_replayed: int) -> None: ...


class FileService(Protocol):
    """What the rules need from file transfer (PROTOCOL.md "Files and images")."""

    async def handle(self, peer: Any, frame: Any) -> None: ...
    async def meta_for_send(self, user: User, file_id: str) -> FileMeta: ...
    def send_done(self, file_id: str) -> None:
        """The `send` that `meta_for_send` began is over (stored or failed)."""
        ...

    async def metas(self, file_ids: Iterable[str]) -> dict[str, FileMeta]: ...
    def session_ended(self, peer: Any) -> None: ...
    async def close(self) -> None: ...


class Context:
    """The rules' world: configuration, the two seams, the live registry, the file service."""

    def __init__(
        self,
        config: ServerConfig,
        store: Store,
        hub: Hub,
        registry: Registry,
        files: FileService,
        last_id: int,
    ) -> None:
        self.config = config
        self.store = store
        self.hub = hub
        self.registry = registry
        self.files = files
        self.last_id = last_id
        """The newest message id this node knows is stored (`newest_id` asks the store: other
        nodes commit ids too)."""
        self.admins = frozenset(name_key(nick) for nick in config.admin)
        """Nick keys of the administrators (`--admin`)."""
        self.shared_store = config.redis is not None
        """Other nodes change the store too: a refusal this node's view would give is checked
        against the store first (`room_as_stored`)."""
        self.bans: dict[str, str] = {}
        """nick key -> reason of every banned nick; loaded from the store at start."""
        self.limits = Limits(
            max_frame=config.max_frame,
            max_text=config.max_text,
            max_upload=config.max_upload,
            chunk=config.chunk,
            guest_hold=round(config.guest_hold),
        )

    def is_admin(self, user: User) -> bool:
        """Administrators are registered accounts named by `--admin`."""
        return user.registered and user.key in self.admins

    def deliver(self, frame: Frame, nick_keys: Iterable[str]) -> None:
        """Encode once; queue on every session of these users."""
        self.hub.deliver(nick_keys, encode(frame))

    def broadcast(self, frame: Frame) -> None:
        """Encode once; queue on every logged-in session."""
        self.hub.broadcast(encode(frame))

    async def newest_id(self) -> int:
        """The newest message id committed by any node. Read it, then use `last_id` with no
        await in between: a message this node commits meanwhile moves `last_id` past it."""
        self.last_id = max(self.last_id, await self.store.max_message_id())
        return self.last_id

    def reply(self, peer: Peer, frame: Reply, ref: str | None) -> None:
        """`frame` with `ref` to the asking session, without it to the user's other sessions
        (on every node: through the hub)."""
        peer.send(frame.model_copy(update={"ref": ref}))
        user = peer.user
        # Most users have one session: no second encoding then (a reply is on the hot path).
        if user is not None and self.hub.may_have_other_sessions(user):
            data = encode(frame.model_copy(update={"ref": None}))
            self.hub.deliver([user.key], data, skip=peer)


def address(member: str, value: str) -> tuple[str, str]:
    """('@' or '#', name) of an address member, or `bad_request` naming the member."""
    try:
        return parse_address(value)
    except ValueError:
        raise RequestError(
            ErrorCode.BAD_REQUEST, f"member '{member}': use @nick or #room"
        ) from None


def logged_in_user(peer: Peer) -> User:
    user = peer.user
    assert user is not None, "the state table serves this only after hello"
    return user


def room_seen_by(ctx: Context, user: User, name: str) -> Room:
    """The room `name` as `user` may know it, or `no_such_room`.

    PROTOCOL.md "Groups": a private room is answered, to anyone neither in it nor invited to it,
    exactly as a room that does not exist (so its name cannot be probed).
    """
    room = ctx.registry.room(name) if is_valid_name(name) else None
    if room is None or (
        not room.public
        and not room.is_member(user.key)
        and user.key not in room.invites
        and not ctx.is_admin(user)  # "Administrators are never outsiders."
    ):
        raise RequestError(ErrorCode.NO_SUCH_ROOM, f"no room {name[:40]}")
    return room


async def held_guest(ctx: Context, nick_key: str) -> StoredGuest | None:
    """The guest of this nick while it exists (online or held); None once its hold is over,
    even before the job that ends it has run."""
    guest = await ctx.store.get_guest(nick_key)
    if guest is None or (guest.held_until is not None and guest.held_until <= time.time()):
        return None
    return guest


def room_from_store(stored: StoredRoom) -> Room:
    room = Room(name=stored.name, public=stored.public, topic=stored.topic)
    room.kicked.update(stored.kicked)
    for member in stored.members:
        room.members[member.nick_key] = member.nick
        room.joined_after[member.nick_key] = member.joined_after
    for invite in stored.invites:
        room.invites[invite.nick_key] = Invitation(
            nick=invite.nick_key, by=invite.by, created=invite.created
        )
    return room


async def reload_room(ctx: Context, key: str) -> Room | None:
    """Room `key` as the store has it now, in the registry (None: gone)."""
    stored = await ctx.store.load_rooms(key)
    fresh = room_from_store(stored[0]) if stored and stored[0].members else None
    return ctx.registry.refresh_room(key, fresh)


async def room_as_stored(
    ctx: Context, name: str, fits: Callable[[Room | None], bool]
) -> Room | None:
    """Room `name` as this node sees it; when that would be refused (`fits` false) and other
    nodes share the store, as the store has it: a room created, a join or an invitation made
    on another node a moment ago, whose notification has not come by yet."""
    room = ctx.registry.room(name) if is_valid_name(name) else None
    if fits(room) or not ctx.shared_store or not is_valid_name(name):
        return room
    return await reload_room(ctx, name_key(name))
