"""PROTOCOL.md "Session": hello and welcome, accounts and guests, presence, replay, `users`."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Iterator
from typing import Any

from tlschat import __version__
from tlschat.protocol import (
    PROTOCOL_VERSION,
    REPLAY_MAX,
    ConversationInfo,
    ErrorCode,
    Hello,
    InviteInfo,
    Presence,
    PublicRoomInfo,
    RequestError,
    RoomInfo,
    UserInfo,
    Users,
    Welcome,
    encode,
    frame_bytes,
    is_valid_name,
    name_key,
)
from tlschat.server import metrics
from tlschat.server.auth import (
    REGISTRATION_WINDOW,
    Attempt,
    FailedLogins,
    LoginThrottle,
    Passwords,
    RegistrationLimit,
)
from tlschat.server.fit import encode_with_online, fit_users, fit_welcome
from tlschat.server.registry import Room, User
from tlschat.server.rules.base import Context, Peer, logged_in_user
from tlschat.server.rules.coherence import ROOM
from tlschat.server.rules.conversations import ConversationRules
from tlschat.server.rules.messages import message_frames
from tlschat.server.store import StoredGuest

log = logging.getLogger("tlschat.server.rules")


class SessionRules:
    def __init__(self, ctx: Context, remove_member: Any, conversations: ConversationRules) -> None:
        self.ctx = ctx
        self.conversations = conversations
        self._holds: dict[str, asyncio.TimerHandle] = {}
        """Nick key -> the timer that ends that guest's hold."""
        self._tasks: set[asyncio.Task[None]] = set()
        self.passwords = Passwords(ctx.config.hash_concurrency)
        cfg = ctx.config
        window = cfg.login_failure_window
        hub = ctx.hub
        self.throttle = FailedLogins(
            LoginThrottle(cfg.max_login_failures, cfg.max_nick_failures, window),
            hub.event_window("login_failures_ip", cfg.max_login_failures, window),
            hub.event_window("login_failures_nick", cfg.max_nick_failures, window),
            hub.event_window("login_failed_pair", 1, LoginThrottle.REMEMBER),
        )
        self.registrations = RegistrationLimit(
            ctx.hub.event_window("registrations", cfg.max_registrations, REGISTRATION_WINDOW)
        )
        self._remove_member = remove_member
        self._dirty: set[str] = set()
        """Registered users whose delivery mark moved since the last flush."""

    # --- hello -----------------------------------------------------------------------------

    async def hello(self, peer: Peer, f: Hello) -> None:
        ctx = self.ctx
        if f.v != PROTOCOL_VERSION:
            raise RequestError(
                ErrorCode.VERSION_UNSUPPORTED, f"this server speaks version {PROTOCOL_VERSION}"
            )
        nick = f.nick
        if not is_valid_name(nick):
            raise RequestError(
                ErrorCode.NICK_INVALID,
                "a nick is 1-32 of A-Z a-z 0-9 _ - . and starts with a letter, digit or _",
            )
        key = name_key(nick)
        if key in ctx.bans:
            log.info("login refused: %s is banned (ip %s)", nick, peer.peer_ip)
            raise RequestError(ErrorCode.BANNED, f"{nick} is banned: {ctx.bans[key]}")
        if peer.peer_cn is not None and key != name_key(peer.peer_cn):
            raise RequestError(ErrorCode.NICK_INVALID, f"your certificate is for {peer.peer_cn!r}")
        account = await ctx.store.get_user(key)
        token: str | None = None
        if account is not None:
            if f.password is None:
                raise RequestError(
                    ErrorCode.AUTH_REQUIRED, f"{account.nick} is registered: password required"
                )
            await self._check_password(peer, key, account.pw_hash, f.password)
            user = User(nick=account.nick, registered=True, last_delivered=account.last_delivered)
        else:
            if ctx.hub.online(key) is not None:
                raise RequestError(ErrorCode.NICK_TAKEN, f"{nick} is online")
            guest = await self._live_guest(key)
            if f.password is not None:
                if guest is not None:
                    raise RequestError(ErrorCode.NICK_TAKEN, f"{guest.nick} is held for its guest")
                user = await self._register(peer, key, nick, f.password)
            elif ctx.config.require_password:
                raise RequestError(
                    ErrorCode.AUTH_REQUIRED,
                    "this server has no guests: give a password to register",
                )
            else:
                user, token = await self._guest(peer, key, nick, guest, f.resume)
        partners = await self._dm_partners(user)
        conversations = await self.conversations.of(user)
        await ctx.newest_id()  # the welcome's `last_id`: any node's
        # Awaits above let others in: check again before taking the nick.
        online = ctx.hub.online(key)
        if online is not None and not (online.registered and user.registered):
            raise RequestError(ErrorCode.NICK_TAKEN, f"{nick} is online")
        if peer.closing:
            return
        # From attach to the welcome being queued there is no await: no event can overtake it.
        user, first = ctx.hub.attach(user, peer)
        self._cancel_hold(key)
        peer.logged_in(user)
        metrics.LOGINS.inc()
        log.info(
            "login: %s from %s (%s, %d sessions)",
            user.nick,
            peer.peer_ip,
            "account" if user.registered else "guest",
            len(user.sessions),
        )
        peer.deliver(self._welcome(user, partners, conversations, token, f.ref))
        peer.begin_replay()
        after = f.last_seen if f.last_seen is not None else user.last_delivered
        # Never above the newest id there was at the welcome: a `last_seen` from some other
        # server's numbering must not silence this session (read now: ids committed during
        # the replay are above it and must come).
        floor = min(after or 0, ctx.last_id)
        last = 0
        try:
            if first:
                ctx.hub.broadcast(encode(Presence(nick=user.nick, online=True)))
            last = await self._replay(peer, user, after)
        finally:
            # The floor is what the client has, not only what was replayed: in a cluster a
            # message at or below `last_seen` may still be held back here and come live later.
            peer.end_replay(max(last, floor))

    # --- guests and their hold -------------------------------------------------------------

    async def _live_guest(self, key: str) -> StoredGuest | None:
        """The guest holding this nick, if its hold has not ended (one that has is ended now)."""
        guest = await self.ctx.store.get_guest(key)
        if guest is None:
            return None
        if guest.held_until is not None and guest.held_until <= time.time():
            await self.end_hold(key)
            return None
        return guest

    async def _guest(
        self, peer: Peer, key: str, nick: str, held: StoredGuest | None, resume: str | None
    ) -> tuple[User, str]:
        """A guest's user and its new `resume` token: the held one again if `resume` is its
        latest token, else a new guest (or `nick_taken` while the nick is held)."""
        ctx = self.ctx
        if held is not None:
            if resume is None:
                raise RequestError(
                    ErrorCode.NICK_TAKEN, f"{held.nick} is held for its guest (give its token)"
                )
            attempt = await self._begin_attempt(key, peer)
            if not hmac.compare_digest(_token_hash(resume), held.token_hash):
                await self.throttle.failed(attempt)
                log.info("wrong resume token for guest %s from %s", key, peer.peer_ip)
                raise RequestError(ErrorCode.NICK_TAKEN, f"{held.nick} is held for its guest")
            self.throttle.succeeded(attempt)
            user = User(
                nick=held.nick,
                registered=False,
                identity=held.identity,
                last_delivered=held.last_delivered,
            )
        else:
            user = User(nick=nick, registered=False, last_delivered=ctx.last_id)
        token = secrets.token_urlsafe(32)
        await ctx.store.put_guest(
            StoredGuest(
                key, user.nick, user.identity, _token_hash(token), None, user.last_delivered
            )
        )
        return user, token

    def _schedule_hold_end(self, key: str, delay: float) -> None:
        self._cancel_hold(key)
        loop = asyncio.get_running_loop()
        self._holds[key] = loop.call_later(max(0.0, delay), self._spawn_end_hold, key)

    def _cancel_hold(self, key: str) -> None:
        timer = self._holds.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _spawn_end_hold(self, key: str) -> None:
        self._holds.pop(key, None)
        task = asyncio.get_running_loop().create_task(self.end_hold(key))
        self._tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("ending a guest's hold failed: %s", task.exception())

    async def end_hold(self, key: str) -> None:
        """A held guest's hold is over: it leaves its groups, its invitations lapse, everyone is
        told it is gone, and the nick is free (PROTOCOL.md "Session" → Guests)."""
        ctx = self.ctx
        guest = await ctx.store.get_guest(key)
        if guest is None or guest.held_until is None or ctx.hub.online(key) is not None:
            return  # came back, or already ended
        if guest.held_until > time.time():
            self._schedule_hold_end(key, guest.held_until - time.time())
            return
        for room in ctx.registry.rooms_of(key):
            await self._remove_member(room, guest.nick)
        invited = [room for room in ctx.registry.rooms.values() if room.invites.pop(key, None)]
        await ctx.store.delete_guest(key, guest.identity)
        for room in invited:
            ctx.hub.changed(ROOM, room.key)
        log.info("guest %s is gone (its hold ended)", guest.nick)
        ctx.hub.broadcast(encode(Presence(nick=guest.nick, online=False, gone=True)))

    async def hold_gone_guest(self, key: str) -> None:
        """The node that held this guest's sessions died (this node declared it dead): its
        hold runs from now, here, as if its last session had ended."""
        ctx = self.ctx
        guest = await ctx.store.get_guest(key)
        if guest is None or guest.held_until is not None or ctx.hub.online(key) is not None:
            return  # gone, held already, or back on some node
        hold = ctx.config.guest_hold
        await ctx.store.hold_guest(key, time.time() + hold, guest.last_delivered)
        self._schedule_hold_end(key, hold)
        log.info("guest %s is held: its node stopped", guest.nick)

    async def resume_holds(self) -> None:
        """At start: guests online when the server stopped are held from now (not those
        online on another node of the cluster); holds that ended while it was down end now;
        the others end when they are due."""
        ctx = self.ctx
        now = time.time()
        elsewhere = [key for key, _ in ctx.hub.online_entries()]
        await ctx.store.hold_online_guests(now + ctx.config.guest_hold, elsewhere)
        for guest in await ctx.store.guests_held_until(float("inf")):
            assert guest.held_until is not None
            if guest.held_until <= now:
                await self.end_hold(guest.nick_key)
            else:
                self._schedule_hold_end(guest.nick_key, guest.held_until - now)

    def close(self) -> None:
        for timer in self._holds.values():
            timer.cancel()
        self._holds.clear()
        for task in self._tasks:
            task.cancel()

    async def _begin_attempt(self, key: str, peer: Peer) -> Attempt:
        """A login attempt for `key` from the peer's address, counted from its start;
        `rate_limited` when the failed-login limit is reached (PROTOCOL.md "Limits")."""
        attempt = await self.throttle.begin(key, peer.peer_ip)
        if not isinstance(attempt, Attempt):
            raise RequestError(
                ErrorCode.RATE_LIMITED,
                "too many failed logins",
                retry_after_ms=int(attempt * 1000) + 1,
            )
        return attempt

    async def _check_password(self, peer: Peer, key: str, pw_hash: str, password: str) -> None:
        """Return if `password` is right, else refuse; the attempt counts from its start."""
        attempt = await self._begin_attempt(key, peer)
        try:
            right = await self.passwords.verify(pw_hash, password)
        except BaseException:
            self.throttle.abandoned(attempt)
            raise
        if not right:
            await self.throttle.failed(attempt)
            log.info("login failed: %s from %s: wrong password", key, peer.peer_ip)
            metrics.LOGIN_FAILURES.inc()
            raise RequestError(ErrorCode.AUTH_FAILED, "wrong password")
        self.throttle.succeeded(attempt)

    async def _register(self, peer: Peer, key: str, nick: str, password: str) -> User:
        if not password:
            raise RequestError(ErrorCode.BAD_REQUEST, "member 'password': must not be empty")
        if self.ctx.config.registration == "closed" and key not in self.ctx.admins:
            log.info("registration refused: %s from %s: closed", nick, peer.peer_ip)
            raise RequestError(
                ErrorCode.REGISTRATION_CLOSED,
                "registration is closed: ask an administrator for an account",
            )
        wait = await self.registrations.blocked_for(peer.peer_ip)
        if wait:
            raise RequestError(
                ErrorCode.RATE_LIMITED,
                "too many new accounts from your address: try again later",
                retry_after_ms=int(wait * 1000) + 1,
            )
        pw_hash = await self.passwords.hash(password)
        if not await self.ctx.store.create_user(key, nick, pw_hash):
            raise RequestError(ErrorCode.NICK_TAKEN, f"{nick} was registered just now")
        await self.registrations.registered(peer.peer_ip)
        log.info("registered %s from %s", nick, peer.peer_ip)
        return User(nick=nick, registered=True, last_delivered=self.ctx.last_id)

    async def _replay(self, peer: Peer, user: User, after: int) -> int:
        ctx = self.ctx
        rooms = {
            room.key: room.joined_after.get(user.key, 0) for room in ctx.registry.rooms_of(user.key)
        }
        stored = await ctx.store.replay(user.identity, rooms, after, REPLAY_MAX)
        frames = await message_frames(ctx, stored)
        for message in frames:
            await peer.deliver_paced(encode(message), message.id)
        return frames[-1].id if frames else 0

    def _welcome(
        self,
        user: User,
        partners: dict[str, str],
        conversations: list[ConversationInfo],
        token: str | None,
        ref: str | None,
    ) -> bytes:
        ctx = self.ctx
        invites = ctx.registry.invitations_for(user.key, time.time(), ctx.config.invite_ttl)
        relevant = self._relevant(user, partners)
        welcome = Welcome(
            ref=ref,
            nick=user.nick,
            server=f"tlschat/{__version__}",
            limits=ctx.limits,
            users=tuple(self._relevant_users(relevant, user, partners)),
            rooms=tuple(room_info(room) for room in ctx.registry.rooms_of(user.key)),
            public_rooms=tuple(public_info(ctx)),
            invites=tuple(InviteInfo(room=room.name, by=inv.by) for room, inv in invites),
            conversations=tuple(conversations),
            last_id=ctx.last_id,
            admin=ctx.is_admin(user),
            resume=token,
        )
        return frame_bytes(
            encode_with_online(
                welcome,
                lambda w, size: fit_welcome(w, size, relevant),
                self._others_online(relevant),
                ctx.config.max_frame,
            )
        )

    async def _dm_partners(self, user: User) -> dict[str, str]:
        """nick key -> nick of the accounts `user` has a direct conversation with."""
        identities = await self.ctx.store.dm_partners(user.identity)
        # Accounts and guests that still exist (a guest's identity dies with its hold).
        found = await self.ctx.store.identity_nicks(identities)
        return {name_key(nick): nick for nick in found.values()}

    def _relevant(self, user: User, partners: dict[str, str]) -> set[str]:
        """Nick keys of the people `user` shares a conversation with, and its own."""
        keys = {user.key, *partners}
        for room in self.ctx.registry.rooms_of(user.key):
            keys.update(room.members)
        return keys

    def _relevant_users(
        self, relevant: set[str], user: User, partners: dict[str, str]
    ) -> list[UserInfo]:
        """The `users` entries of the people `user` shares a conversation with (and its own),
        online or not: these go first and are the last to be cut."""
        nicks = dict(partners)
        for room in self.ctx.registry.rooms_of(user.key):
            nicks.update(room.members)
        nicks[user.key] = user.nick
        hub = self.ctx.hub
        found = []
        for key in relevant:
            online = hub.online(key)
            if online is not None:
                found.append(UserInfo(nick=online.nick, online=True))
            elif key in nicks:
                found.append(UserInfo(nick=nicks[key], online=False))
        return found

    def _others_online(self, relevant: set[str]) -> Iterator[bytes]:
        for key, entry in self.ctx.hub.online_entries():
            if key not in relevant:
                yield entry

    async def users(self, peer: Peer, f: Any) -> None:
        user = logged_in_user(peer)
        partners = await self._dm_partners(user)
        relevant = self._relevant(user, partners)
        reply = Users(ref=f.ref, users=tuple(self._relevant_users(relevant, user, partners)))
        peer.deliver(
            frame_bytes(
                encode_with_online(
                    reply,
                    lambda r, size: fit_users(r, size, relevant),
                    self._others_online(relevant),
                    self.ctx.config.max_frame,
                )
            )
        )

    # --- the end of a session ----------------------------------------------------------------

    async def session_ended(self, peer: Peer) -> None:
        """A connection is gone: presence, a guest's rooms and invitations, delivery marks."""
        ctx = self.ctx
        ctx.files.session_ended(peer)
        user = peer.user
        if user is None:
            return
        last = ctx.hub.detach(user, peer)
        log.info(
            "logout: %s from %s (%d sessions left)", user.nick, peer.peer_ip, len(user.sessions)
        )
        if not last:
            return
        if user.registered:
            self._dirty.discard(user.key)
            await ctx.store.set_last_delivered({user.key: user.last_delivered})
        else:
            # The guest is held: its nick, groups, conversations and invitations stay for
            # `--guest-hold` seconds, and survive a restart (PROTOCOL.md "Session" → Guests).
            hold = ctx.config.guest_hold
            await ctx.store.hold_guest(user.key, time.time() + hold, user.last_delivered)
            self._schedule_hold_end(user.key, hold)
        ctx.hub.broadcast(encode(Presence(nick=user.nick, online=False)))

    # --- delivery marks ----------------------------------------------------------------------

    def mark_delivered(self, user: User, msg_id: int) -> None:
        if msg_id > user.last_delivered:
            user.last_delivered = msg_id
            if user.registered:
                self._dirty.add(user.key)

    async def flush_marks(self) -> None:
        """Persist delivery marks (batched: they only decide what a `hello` without `last_seen`
        replays)."""
        dirty, self._dirty = self._dirty, set()
        marks = {}
        for key in dirty:
            user = self.ctx.hub.online(key)
            if user is not None:
                marks[key] = user.last_delivered
        await self.ctx.store.set_last_delivered(marks)


def room_info(room: Room) -> RoomInfo:
    return RoomInfo(
        room=room.name,
        members=room.member_names(),
        public=room.public,
        owner=room.owner,
        topic=room.topic,
    )


def public_info(ctx: Context) -> list[PublicRoomInfo]:
    return [
        PublicRoomInfo(room=r.name, members=len(r.members), topic=r.topic)
        for r in ctx.registry.public_rooms()
    ]


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
