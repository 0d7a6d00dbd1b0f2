"""Routes each request through the registry and the store, and fans the results out to sessions."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from tlschat import __version__
from tlschat.protocol import (
    PROTOCOL_VERSION,
    REPLAY_MAX,
    Accept,
    Create,
    Decline,
    Declined,
    ErrorCode,
    FileMeta,
    Frame,
    History,
    HistoryRequest,
    Invite,
    Invited,
    InviteInfo,
    Join,
    Joined,
    Leave,
    Left,
    Limits,
    Members,
    Message,
    Ok,
    Presence,
    PublicRoomInfo,
    Reply,
    RoomEvent,
    RoomInfo,
    Rooms,
    Send,
    ServerPong,
    UserInfo,
    Users,
    Welcome,
    encode,
    is_valid_name,
    name_key,
    parse_address,
    utc_timestamp,
)
from tlschat.server.auth import LoginThrottle, Passwords
from tlschat.server.coalesce import Coalescer
from tlschat.server.connection import RequestError, Session
from tlschat.server.fit import fit_history, fit_rooms, fit_users, fit_welcome
from tlschat.server.registry import Invitation, Registry, Room, User
from tlschat.server.store import Store, StoredMessage

if TYPE_CHECKING:
    from tlschat.config import ServerConfig

log = logging.getLogger(__name__)

ANNOUNCE_WINDOW = 0.05
"""Seconds over which a room's `members` and public `room` events are coalesced."""


class FileService(Protocol):
    """What the router needs from file transfer (PROTOCOL.md "Files and images")."""

    async def handle(self, session: Session, frame: Any) -> None: ...
    async def meta_for_send(self, user: User, file_id: str) -> FileMeta: ...
    async def metas(self, file_ids: Iterable[str]) -> dict[str, FileMeta]: ...
    async def grant(self, file_id: str, identities: Iterable[str]) -> None: ...
    def session_ended(self, session: Session) -> None: ...
    async def close(self) -> None: ...


class NoFiles:
    """Stands in until a file service is plugged in."""

    async def handle(self, session: Session, frame: Any) -> None:
        raise RequestError(ErrorCode.FORBIDDEN, "this server does not accept files")

    async def meta_for_send(self, user: User, file_id: str) -> FileMeta:
        raise RequestError(ErrorCode.NO_SUCH_FILE, "no such file")

    async def metas(self, file_ids: Iterable[str]) -> dict[str, FileMeta]:
        return {}

    async def grant(self, file_id: str, identities: Iterable[str]) -> None:
        return None

    def session_ended(self, session: Session) -> None:
        return None

    async def close(self) -> None:
        return None


Handler = Callable[[Session, Any], Awaitable[None]]


class Router:
    """Every request type's rules, in one place. Sessions call `handle()`; nothing here reads
    or writes a socket: replies and events are queued on sessions with `deliver()`."""

    def __init__(
        self, config: ServerConfig, store: Store, registry: Registry, last_id: int
    ) -> None:
        self.config = config
        self.store = store
        self.registry = registry
        self.files: FileService = NoFiles()
        self.passwords = Passwords(config.hash_concurrency)
        self.throttle = LoginThrottle(config.max_login_failures, config.login_failure_window)
        self.last_id = last_id
        self._send_lock = asyncio.Lock()
        """Held from a message's insert to its fan-out, so every client sees ids in order."""
        self._members_news = Coalescer(ANNOUNCE_WINDOW)
        self._room_news = Coalescer(ANNOUNCE_WINDOW)
        self._dirty: set[str] = set()
        """Registered users whose delivery mark changed since the last flush."""
        self.limits = Limits(
            max_frame=config.max_frame,
            max_text=config.max_text,
            max_upload=config.max_upload,
            chunk=config.chunk,
        )
        self._handlers: dict[str, Handler] = {
            "hello": self.hello,
            "ping": self.ping,
            "send": self.send,
            "history": self.history,
            "create": self.create,
            "invite": self.invite,
            "accept": self.accept,
            "decline": self.decline,
            "join": self.join,
            "leave": self.leave,
            "rooms": self.rooms,
            "users": self.users,
            "upload": self._files,
            "chunk": self._files,
            "download": self._files,
        }

    async def handle(self, session: Session, frame: Any) -> None:
        await self._handlers[frame.type](session, frame)

    # --- fan-out helpers -----------------------------------------------------------------------

    def broadcast(self, frame: Frame, sessions: Iterable[Session]) -> None:
        data = encode(frame)
        for session in sessions:
            session.deliver(data)

    def sessions_of(self, nicks: Iterable[str]) -> list[Session]:
        found: list[Session] = []
        for nick in nicks:
            user = self.registry.online(nick)
            if user is not None:
                found.extend(user.sessions)  # type: ignore[arg-type]
        return found

    def everyone(self) -> list[Session]:
        return list(self.registry.sessions())  # type: ignore[arg-type]

    def reply(self, session: Session, frame: Reply, ref: str | None) -> None:
        """`frame` with `ref` to the asking session, without it to the user's other sessions."""
        session.send(frame.model_copy(update={"ref": ref}))
        user = session.user
        if user is not None and len(user.sessions) > 1:
            others = [s for s in user.sessions if s is not session]
            self.broadcast(frame.model_copy(update={"ref": None}), others)  # type: ignore[arg-type]

    def mark_delivered(self, user: User, msg_id: int) -> None:
        if msg_id > user.last_delivered:
            user.last_delivered = msg_id
            if user.registered:
                self._dirty.add(user.key)

    async def flush_marks(self) -> None:
        """Persist delivery marks (batched: they only decide what a `hello` without `last_seen` replays)."""
        dirty, self._dirty = self._dirty, set()
        marks = {}
        for key in dirty:
            user = self.registry.users.get(key)
            if user is not None:
                marks[key] = user.last_delivered
        await self.store.set_last_delivered(marks)

    # --- session ---------------------------------------------------------------------------------

    async def hello(self, session: Session, f: Any) -> None:
        if f.v != PROTOCOL_VERSION:
            raise RequestError(
                ErrorCode.VERSION_UNSUPPORTED, f"this server speaks version {PROTOCOL_VERSION}"
            )
        nick: str = f.nick
        if not is_valid_name(nick):
            raise RequestError(
                ErrorCode.NICK_INVALID,
                "a nick is 1-32 of A-Z a-z 0-9 _ - . and starts with a letter, digit or _",
            )
        key = name_key(nick)
        if session.peer_cn is not None and key != name_key(session.peer_cn):
            raise RequestError(
                ErrorCode.NICK_INVALID, f"your certificate is for {session.peer_cn!r}"
            )
        wait = self.throttle.blocked_for(key, session.peer_ip)
        if wait:
            raise RequestError(
                ErrorCode.RATE_LIMITED,
                "too many failed logins",
                retry_after_ms=int(wait * 1000) + 1,
            )
        account = await self.store.get_user(key)
        if account is not None:
            registered_nick, pw_hash, last_delivered = account
            if f.password is None:
                raise RequestError(
                    ErrorCode.AUTH_REQUIRED, f"{registered_nick} is registered: password required"
                )
            if not await self.passwords.verify(pw_hash, f.password):
                self.throttle.failed(key, session.peer_ip)
                raise RequestError(ErrorCode.AUTH_FAILED, "wrong password")
            user = User(nick=registered_nick, registered=True, last_delivered=last_delivered)
        else:
            if self.registry.online(key) is not None:
                raise RequestError(ErrorCode.NICK_TAKEN, f"{nick} is online")
            if f.password is None:
                if self.config.require_password:
                    raise RequestError(
                        ErrorCode.AUTH_REQUIRED,
                        "this server has no guests: give a password to register",
                    )
                user = User(nick=nick, registered=False, last_delivered=self.last_id)
            else:
                if not f.password:
                    raise RequestError(
                        ErrorCode.BAD_REQUEST, "member 'password': must not be empty"
                    )
                pw_hash = await self.passwords.hash(f.password)
                if not await self.store.create_user(key, nick, pw_hash):
                    raise RequestError(ErrorCode.NICK_TAKEN, f"{nick} was registered just now")
                log.info("registered %s", nick)
                user = User(nick=nick, registered=True, last_delivered=self.last_id)
        partners = await self._dm_partners(user) if user.registered else {}
        # Awaits above let others in: check again before taking the nick.
        online = self.registry.online(key)
        if online is not None and not (online.registered and user.registered):
            raise RequestError(ErrorCode.NICK_TAKEN, f"{nick} is online")
        if session.closing:
            return
        # From attach to the welcome being queued there is no await: no event can overtake it.
        user, first = self.registry.attach(user, session)
        session.logged_in(user)
        welcome = self._welcome(user, partners).model_copy(update={"ref": f.ref})
        session.send(fit_welcome(welcome, self.config.max_frame, self._relevant(user, partners)))
        session.begin_replay()
        last = 0
        try:
            if first:
                self.broadcast(Presence(nick=user.nick, online=True), self.everyone())
            if user.registered:  # a guest gets no offline delivery
                after = f.last_seen if f.last_seen is not None else user.last_delivered
                last = await self._replay(session, user, after)
        finally:
            session.end_replay(last)

    async def _replay(self, session: Session, user: User, after: int) -> int:
        rooms = {
            room.key: room.joined_after.get(user.key, 0)
            for room in self.registry.rooms_of(user.key)
        }
        stored = await self.store.replay(user.identity, rooms, after, REPLAY_MAX)
        frames = await self._message_frames(stored)
        for message in frames:
            await session.deliver_paced(encode(message), message.id)
        return frames[-1].id if frames else 0

    def _welcome(self, user: User, partners: dict[str, str]) -> Welcome:
        now = time.time()
        rooms = self.registry.rooms_of(user.key)
        invites = self.registry.invitations_for(user.key, now, self.config.invite_ttl)
        return Welcome(
            nick=user.nick,
            server=f"tlschat/{__version__}",
            limits=self.limits,
            users=tuple(self._visible_users(user, partners)),
            rooms=tuple(self._room_info(room) for room in rooms),
            public_rooms=tuple(self._public_info()),
            invites=tuple(InviteInfo(room=room.name, by=inv.by) for room, inv in invites),
            last_id=self.last_id,
        )

    async def _dm_partners(self, user: User) -> dict[str, str]:
        """nick key -> nick of the accounts `user` has a direct conversation with."""
        identities = await self.store.dm_partners(user.identity)
        # Guest identities start with "~": a guest's conversations end with its login.
        return await self.store.registered_nicks(i for i in identities if not i.startswith("~"))

    def _visible_users(self, user: User, partners: dict[str, str]) -> list[UserInfo]:
        """Every online user and every user who shares a conversation with `user`."""
        seen: dict[str, UserInfo] = {}
        for other in self.registry.users.values():
            seen[other.key] = UserInfo(nick=other.nick, online=True)
        for room in self.registry.rooms_of(user.key):
            for key, nick in room.members.items():
                seen.setdefault(key, UserInfo(nick=nick, online=False))
        for key, nick in partners.items():
            seen.setdefault(key, UserInfo(nick=nick, online=False))
        return sorted(seen.values(), key=lambda info: name_key(info.nick))

    def _relevant(self, user: User, partners: dict[str, str]) -> set[str]:
        """Nick keys of the people `user` shares a conversation with, and its own."""
        keys = {user.key, *partners}
        for room in self.registry.rooms_of(user.key):
            keys.update(room.members)
        return keys

    def _room_info(self, room: Room) -> RoomInfo:
        return RoomInfo(room=room.name, members=room.member_names(), public=room.public)

    def _public_info(self) -> list[PublicRoomInfo]:
        return [
            PublicRoomInfo(room=r.name, members=len(r.members))
            for r in self.registry.public_rooms()
        ]

    async def ping(self, session: Session, f: Any) -> None:
        session.send(ServerPong(ref=f.ref))

    async def session_ended(self, session: Session) -> None:
        """A connection is gone: presence, a guest's rooms and invitations, delivery marks."""
        self.files.session_ended(session)
        user = session.user
        if user is None:
            return
        if not self.registry.detach(user, session):
            return
        if user.registered:
            await self.store.set_last_delivered({user.key: user.last_delivered})
            self._dirty.discard(user.key)
        else:
            # A guest's memberships and invitations end with its connection (PROTOCOL.md).
            for room in list(self.registry.rooms.values()):
                room.invites.pop(user.key, None)
            for room in self.registry.rooms_of(user.key):
                await self._remove_member(room, user.nick)
        self.broadcast(Presence(nick=user.nick, online=False), self.everyone())

    # --- messages --------------------------------------------------------------------------------

    def _address(self, member: str, address: str) -> tuple[str, str]:
        try:
            return parse_address(address)
        except ValueError:
            raise RequestError(
                ErrorCode.BAD_REQUEST, f"member '{member}': use @nick or #room"
            ) from None

    async def _dm_identity(self, nick: str) -> tuple[str, str] | None:
        """(identity, nick as spelled) of a user who exists (online, or registered)."""
        online = self.registry.online(nick)
        if online is not None:
            return online.identity, online.nick
        account = await self.store.get_user(name_key(nick))
        if account is None:
            return None
        return name_key(nick), account[0]

    async def send(self, session: Session, f: Send) -> None:
        user = session.user
        assert user is not None
        if len(f.text) > self.config.max_text:
            raise RequestError(
                ErrorCode.TEXT_TOO_LONG, f"text is longer than {self.config.max_text} characters"
            )
        if not f.text and f.file is None:
            raise RequestError(
                ErrorCode.BAD_REQUEST, "member 'text': may be empty only with a file"
            )
        kind, name = self._address("to", f.to)
        meta = await self.files.meta_for_send(user, f.file) if f.file is not None else None
        dm: tuple[str, str] | None = None
        room: Room | None = None
        if kind == "@":
            target = await self._dm_identity(name)
            if target is None:
                raise RequestError(ErrorCode.NO_SUCH_USER, f"no user {name}")
            dm = (user.identity, target[0])
            recipients = [name_key(name), user.key]
        else:
            room = self.registry.room(name)
            if room is None:
                raise RequestError(ErrorCode.NO_SUCH_ROOM, f"no room {name}")
            if not room.is_member(user.key):
                raise RequestError(ErrorCode.NOT_MEMBER, f"you are not in {room.name}")
            recipients = list(room.members)
        async with self._send_lock:
            ts = utc_timestamp()
            msg_id = await self.store.insert_message(
                ts=ts,
                sender=user.nick,
                to_addr=f.to,
                text=f.text,
                dm=dm,
                room_key=room.key if room else None,
                file_id=f.file,
            )
            self.last_id = msg_id
            if meta is not None and f.file is not None:
                # Every recipient, offline registered members too (their identity is their key).
                identities = [
                    u.identity if (u := self.registry.online(k)) else k for k in recipients
                ]
                if dm is not None:
                    identities.extend(dm)
                await self.files.grant(f.file, identities)
            message = Message(id=msg_id, ts=ts, from_=user.nick, to=f.to, text=f.text, file=meta)
            data = encode(message)
            for target_session in dict.fromkeys(self.sessions_of(recipients)):
                if target_session is session:
                    target_session.send(message.model_copy(update={"ref": f.ref}), msg_id)
                else:
                    target_session.deliver(data, msg_id)

    async def _message_frames(self, stored: list[StoredMessage]) -> list[Message]:
        file_ids = {m.file_id for m in stored if m.file_id}
        metas = await self.files.metas(file_ids) if file_ids else {}
        return [
            Message(
                id=m.id,
                ts=m.ts,
                from_=m.sender,
                to=m.to_addr,
                text=m.text,
                file=metas.get(m.file_id) if m.file_id else None,
            )
            for m in stored
        ]

    async def history(self, session: Session, f: HistoryRequest) -> None:
        user = session.user
        assert user is not None
        kind, name = self._address("with", f.with_)
        if kind == "@":
            target = await self._dm_identity(name)
            if target is None:
                raise RequestError(ErrorCode.NO_SUCH_USER, f"no user {name}")
            stored, more = await self.store.history(
                dm=(user.identity, target[0]), before=f.before, limit=f.limit
            )
        else:
            room = self.registry.room(name)
            if room is None:
                raise RequestError(ErrorCode.NO_SUCH_ROOM, f"no room {name}")
            if not room.is_member(user.key):
                raise RequestError(
                    ErrorCode.FORBIDDEN, f"only members of {room.name} may read its history"
                )
            stored, more = await self.store.history(
                room_key=room.key, before=f.before, limit=f.limit
            )
        messages = await self._message_frames(stored)
        reply = History(ref=f.ref, with_=f.with_, messages=tuple(messages), more=more)
        session.send(fit_history(reply, self.config.max_frame))

    # --- groups ----------------------------------------------------------------------------------

    def _room_or_fail(self, name: str) -> Room:
        if not is_valid_name(name):
            raise RequestError(ErrorCode.NO_SUCH_ROOM, f"no room {name[:40]}")
        room = self.registry.room(name)
        if room is None:
            raise RequestError(ErrorCode.NO_SUCH_ROOM, f"no room {name}")
        return room

    def _check_room_limit(self, user: User) -> None:
        if len(self.registry.rooms_of(user.key)) >= self.config.max_rooms_per_user:
            raise RequestError(
                ErrorCode.FORBIDDEN, f"you are in {self.config.max_rooms_per_user} rooms already"
            )

    def _check_room_size(self, room: Room) -> None:
        if len(room.members) >= self.config.max_members:
            raise RequestError(
                ErrorCode.FORBIDDEN, f"{room.name} is full ({self.config.max_members} members)"
            )

    async def create(self, session: Session, f: Create) -> None:
        user = session.user
        assert user is not None
        if not is_valid_name(f.room):
            raise RequestError(
                ErrorCode.ROOM_INVALID,
                "a room name is 1-32 of A-Z a-z 0-9 _ - . and starts with a letter, digit or _",
            )
        if self.registry.room(f.room) is not None:
            raise RequestError(ErrorCode.ROOM_EXISTS, f"room {f.room} exists")
        self._check_room_limit(user)
        invitees: list[tuple[str, bool]] = []
        for nick in dict.fromkeys(f.invite):
            target = await self._invitee(nick)
            if name_key(target[0]) != user.key:
                invitees.append(target)
        if self.registry.room(f.room) is not None:  # created while we looked the invitees up
            raise RequestError(ErrorCode.ROOM_EXISTS, f"room {f.room} exists")
        room = Room(name=f.room, public=f.public)
        self.registry.add_room(room)
        self.registry.add_member(room, user.nick, self.last_id, guest=not user.registered)
        await self.store.create_room(room.key, room.name, room.public)
        if user.registered:
            await self.store.add_member(room.key, user.key, user.nick, self.last_id)
        self.reply(
            session, Joined(room=room.name, members=room.member_names(), public=room.public), f.ref
        )
        for nick, registered in invitees:
            await self._invite(room, user, nick, registered)
        self._announce(room)

    async def _invitee(self, nick: str) -> tuple[str, bool]:
        """(nick as spelled, registered?) of an existing user, or `no_such_user`."""
        if is_valid_name(nick):
            account = await self.store.get_user(name_key(nick))
            if account is not None:
                return account[0], True
            online = self.registry.online(nick)
            if online is not None:
                return online.nick, online.registered
        raise RequestError(ErrorCode.NO_SUCH_USER, f"no user {nick[:40]}")

    async def _invite(self, room: Room, by: User, nick: str, registered: bool) -> None:
        key = name_key(nick)
        created = time.time()
        room.invites[key] = Invitation(nick=nick, by=by.nick, created=created, persisted=registered)
        if registered:
            await self.store.add_invite(room.key, key, by.nick, created)
        self.broadcast(
            Invited(room=room.name, by=by.nick, members=room.member_names()),
            self.sessions_of([nick]),
        )

    async def invite(self, session: Session, f: Invite) -> None:
        user = session.user
        assert user is not None
        room = self._room_or_fail(f.room)
        if not room.is_member(user.key):
            raise RequestError(ErrorCode.NOT_MEMBER, f"only members of {room.name} may invite")
        nick, registered = await self._invitee(f.nick)
        if room.is_member(name_key(nick)):
            raise RequestError(ErrorCode.ALREADY_MEMBER, f"{nick} is in {room.name} already")
        self._check_room_size(room)
        await self._invite(room, user, nick, registered)
        session.send(Ok(ref=f.ref))

    def _pending(self, room: Room | None, user: User) -> Invitation:
        invitation = room.invites.get(user.key) if room else None
        if (
            room is None
            or invitation is None
            or time.time() - invitation.created >= self.config.invite_ttl
        ):
            raise RequestError(ErrorCode.NO_INVITE, "no invitation to that room")
        return invitation

    async def accept(self, session: Session, f: Accept) -> None:
        user = session.user
        assert user is not None
        room = self.registry.room(f.room) if is_valid_name(f.room) else None
        self._pending(room, user)
        assert room is not None
        self._check_room_size(room)
        self._check_room_limit(user)
        await self.store.delete_invite(room.key, user.key)
        await self._add_member(session, room, f.ref)

    async def decline(self, session: Session, f: Decline) -> None:
        user = session.user
        assert user is not None
        room = self.registry.room(f.room) if is_valid_name(f.room) else None
        invitation = self._pending(room, user)
        assert room is not None
        del room.invites[user.key]
        await self.store.delete_invite(room.key, user.key)
        self.reply(session, Ok(), f.ref)
        self.broadcast(Declined(room=room.name, nick=user.nick), self.sessions_of([invitation.by]))

    async def join(self, session: Session, f: Join) -> None:
        user = session.user
        assert user is not None
        room = self.registry.room(f.room) if is_valid_name(f.room) else None
        if room is None or not room.public:
            # Private rooms are never revealed to non-members.
            raise RequestError(ErrorCode.NO_SUCH_ROOM, f"no public room {f.room[:40]}")
        if room.is_member(user.key):
            raise RequestError(ErrorCode.ALREADY_MEMBER, f"you are in {room.name} already")
        self._check_room_size(room)
        self._check_room_limit(user)
        await self._add_member(session, room, f.ref)

    async def _add_member(self, session: Session, room: Room, ref: str | None) -> None:
        user = session.user
        assert user is not None
        self.registry.add_member(room, user.nick, self.last_id, guest=not user.registered)
        if user.registered:
            await self.store.add_member(room.key, user.key, user.nick, self.last_id)
        self.reply(
            session, Joined(room=room.name, members=room.member_names(), public=room.public), ref
        )
        self._announce(room, members=True)

    async def leave(self, session: Session, f: Leave) -> None:
        user = session.user
        assert user is not None
        room = self._room_or_fail(f.room)
        if not room.is_member(user.key):
            raise RequestError(ErrorCode.NOT_MEMBER, f"you are not in {room.name}")
        self.reply(session, Left(room=room.name), f.ref)
        await self._remove_member(room, user.nick)

    async def _remove_member(self, room: Room, nick: str) -> None:
        """Take `nick` out; tell the rest; delete the room with its history once it is empty."""
        self.registry.remove_member(room, nick)
        if room.members:
            await self.store.remove_member(room.key, name_key(nick))
            self._announce(room, members=True)
            return
        self.registry.remove_room(room)
        self._members_news.forget(room.key)
        self._room_news.forget(room.key)
        await self.store.delete_room(room.key)
        log.info("room %s deleted: no members left", room.name)
        if room.public:  # gone: said at once, never coalesced away
            self.broadcast(RoomEvent(room=room.name, members=0), self.everyone())

    def _announce(self, room: Room, *, members: bool = False) -> None:
        """Tell the members who is in `room` and everyone how big a public room is: at once,
        or coalesced with others of a burst (each event carries the state when it is sent)."""

        def send_members() -> None:
            if self.registry.rooms.get(room.key) is room:
                frame = Members(room=room.name, members=room.member_names())
                self.broadcast(frame, self.sessions_of(room.members))

        def send_size() -> None:
            if self.registry.rooms.get(room.key) is room:
                self.broadcast(
                    RoomEvent(room=room.name, members=len(room.members)), self.everyone()
                )

        if members:
            self._members_news.announce(room.key, send_members)
        if room.public:
            self._room_news.announce(room.key, send_size)

    async def rooms(self, session: Session, f: Any) -> None:
        user = session.user
        assert user is not None
        reply = Rooms(
            ref=f.ref,
            rooms=tuple(self._room_info(r) for r in self.registry.rooms_of(user.key)),
            public_rooms=tuple(self._public_info()),
        )
        session.send(fit_rooms(reply, self.config.max_frame))

    async def users(self, session: Session, f: Any) -> None:
        user = session.user
        assert user is not None
        partners = await self._dm_partners(user)
        reply = Users(ref=f.ref, users=tuple(self._visible_users(user, partners)))
        session.send(fit_users(reply, self.config.max_frame, self._relevant(user, partners)))

    async def _files(self, session: Session, f: Any) -> None:
        await self.files.handle(session, f)

    # --- housekeeping ----------------------------------------------------------------------------

    async def expire_invitations(self) -> None:
        now = time.time()
        self.registry.expire_invitations(now, self.config.invite_ttl)
        await self.store.delete_invites_before(now - self.config.invite_ttl)
