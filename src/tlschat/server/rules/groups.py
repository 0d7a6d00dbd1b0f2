"""PROTOCOL.md "Groups": create, invite, accept, decline, join, leave, topic, kick; owners,
member lists and public room announcements; `rooms`."""

from __future__ import annotations

import logging
import time
from typing import Any

from tlschat.protocol import (
    Accept,
    Create,
    Decline,
    Declined,
    ErrorCode,
    Invite,
    Invited,
    Join,
    Joined,
    Kick,
    Leave,
    Left,
    Members,
    Ok,
    RequestError,
    RoomEvent,
    Rooms,
    TopicEvent,
    TopicRequest,
    is_valid_name,
    name_key,
)
from tlschat.server.coalesce import Coalescer
from tlschat.server.fit import fit_rooms
from tlschat.server.registry import Invitation, Room, User
from tlschat.server.rules.base import (
    Context,
    Peer,
    held_guest,
    logged_in_user,
    reload_room,
    room_as_stored,
    room_seen_by,
)
from tlschat.server.rules.coherence import ROOM
from tlschat.server.rules.session import public_info, room_info
from tlschat.server.store import StoredInvite, StoredMember

log = logging.getLogger("tlschat.server.rules")

ANNOUNCE_WINDOW = 0.05
"""Seconds over which a room's `members` and public `room` events are coalesced."""

MAX_TOPIC = 300
"""PROTOCOL.md "Groups": a topic is at most 300 characters (`text_too_long` beyond)."""

KICK_NO_REJOIN = 600.0
"""Seconds a user kicked from a public room may not `join` it again."""


def joined(room: Room) -> Joined:
    return Joined(
        room=room.name,
        members=room.member_names(),
        public=room.public,
        owner=room.owner,
        topic=room.topic,
    )


def check_topic(topic: str) -> None:
    if len(topic) > MAX_TOPIC:
        raise RequestError(ErrorCode.TEXT_TOO_LONG, f"a topic is at most {MAX_TOPIC} characters")


class GroupRules:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._members_news = Coalescer(ANNOUNCE_WINDOW)
        self._room_news = Coalescer(ANNOUNCE_WINDOW)

    # --- checks ------------------------------------------------------------------------------

    def _check_room_limit(self, user: User) -> None:
        limit = self.ctx.config.max_rooms_per_user
        if len(self.ctx.registry.rooms_of(user.key)) >= limit:
            raise RequestError(ErrorCode.FORBIDDEN, f"you are in {limit} rooms already")

    def _check_room_size(self, room: Room) -> None:
        limit = self.ctx.config.max_members
        if len(room.members) >= limit:
            raise RequestError(ErrorCode.FORBIDDEN, f"{room.name} is full ({limit} members)")

    async def _invitee(self, nick: str) -> tuple[str, bool]:
        """(nick as spelled, registered?) of an existing user, or `no_such_user`."""
        if is_valid_name(nick):
            account = await self.ctx.store.get_user(name_key(nick))
            if account is not None:
                return account.nick, True
            online = self.ctx.hub.online(nick)
            if online is not None:
                return online.nick, online.registered
            guest = await held_guest(self.ctx, name_key(nick))
            if guest is not None:  # held: it may come back within its hold
                return guest.nick, False
        raise RequestError(ErrorCode.NO_SUCH_USER, f"no user {nick[:40]}")

    def _pending(self, room: Room | None, user: User) -> Invitation:
        invitation = room.invites.get(user.key) if room else None
        if (
            room is None
            or invitation is None
            or time.time() - invitation.created >= self.ctx.config.invite_ttl
        ):
            raise RequestError(ErrorCode.NO_INVITE, "no invitation to that room")
        return invitation

    # --- requests ----------------------------------------------------------------------------

    async def create(self, peer: Peer, f: Create) -> None:
        ctx = self.ctx
        user = logged_in_user(peer)
        if not is_valid_name(f.room):
            raise RequestError(
                ErrorCode.ROOM_INVALID,
                "a room name is 1-32 of A-Z a-z 0-9 _ - . and starts with a letter, digit or _",
            )
        if ctx.registry.room(f.room) is not None:
            raise RequestError(ErrorCode.ROOM_EXISTS, f"room {f.room} exists")
        check_topic(f.topic)
        self._check_room_limit(user)
        invitees: list[tuple[str, bool]] = []
        for nick in dict.fromkeys(f.invite):
            target = await self._invitee(nick)
            if name_key(target[0]) != user.key:
                invitees.append(target)
        await ctx.newest_id()
        if ctx.registry.room(f.room) is not None:  # created while we looked the invitees up
            raise RequestError(ErrorCode.ROOM_EXISTS, f"room {f.room} exists")
        room = Room(name=f.room, public=f.public, topic=f.topic)
        ctx.registry.add_room(room)
        ctx.registry.add_member(room, user.nick, ctx.last_id)
        creator = StoredMember(user.key, user.nick, ctx.last_id)
        await ctx.store.create_room(room.key, room.name, room.public, creator, room.topic)
        ctx.hub.changed(ROOM, room.key)
        ctx.reply(peer, joined(room), f.ref)
        for nick, registered in invitees:
            await self._invite(room, user, nick, registered)
        self._announce(room)

    async def _invite(self, room: Room, by: User, nick: str, registered: bool) -> None:
        key = name_key(nick)
        created = time.time()
        room.invites[key] = Invitation(nick=nick, by=by.nick, created=created)
        await self.ctx.store.add_invite(room.key, StoredInvite(key, by.nick, created))
        self.ctx.hub.changed(ROOM, room.key)
        self.ctx.deliver(Invited(room=room.name, by=by.nick, members=room.member_names()), [key])

    async def invite(self, peer: Peer, f: Invite) -> None:
        user = logged_in_user(peer)
        room = room_seen_by(self.ctx, user, f.room)
        if not room.is_member(user.key):
            raise RequestError(ErrorCode.NOT_MEMBER, f"only members of {room.name} may invite")
        nick, registered = await self._invitee(f.nick)
        if room.is_member(name_key(nick)):
            raise RequestError(ErrorCode.ALREADY_MEMBER, f"{nick} is in {room.name} already")
        self._check_room_size(room)
        await self._invite(room, user, nick, registered)
        peer.send(Ok(ref=f.ref))

    async def accept(self, peer: Peer, f: Accept) -> None:
        user = logged_in_user(peer)
        await self.ctx.newest_id()  # before the checks: none may go stale before the change
        room = await room_as_stored(
            self.ctx, f.room, lambda r: r is not None and user.key in r.invites
        )
        self._pending(room, user)
        assert room is not None
        self._check_room_size(room)
        self._check_room_limit(user)
        await self._add_member(peer, room, f.ref)

    async def decline(self, peer: Peer, f: Decline) -> None:
        user = logged_in_user(peer)
        room = await room_as_stored(
            self.ctx, f.room, lambda r: r is not None and user.key in r.invites
        )
        invitation = self._pending(room, user)
        assert room is not None
        del room.invites[user.key]
        await self.ctx.store.delete_invite(room.key, user.key)
        self.ctx.hub.changed(ROOM, room.key)
        self.ctx.reply(peer, Ok(), f.ref)
        self.ctx.deliver(Declined(room=room.name, nick=user.nick), [name_key(invitation.by)])

    async def join(self, peer: Peer, f: Join) -> None:
        user = logged_in_user(peer)
        room = await room_as_stored(self.ctx, f.room, lambda r: r is not None and r.public)
        await self.ctx.newest_id()  # before the checks: none may go stale before the change
        if room is None or not room.public:
            # Private rooms are never revealed to non-members.
            raise RequestError(ErrorCode.NO_SUCH_ROOM, f"no public room {f.room[:40]}")
        if room.is_member(user.key):
            raise RequestError(ErrorCode.ALREADY_MEMBER, f"you are in {room.name} already")
        until = room.kicked.get(user.key, 0.0)
        if until > time.time():
            raise RequestError(
                ErrorCode.FORBIDDEN,
                f"you were kicked from {room.name}: you may join again in"
                f" {int(until - time.time()) // 60 + 1} minutes",
            )
        room.kicked.pop(user.key, None)
        self._check_room_size(room)
        self._check_room_limit(user)
        await self._add_member(peer, room, f.ref)

    async def _add_member(self, peer: Peer, room: Room, ref: str | None) -> None:
        """Call after `ctx.newest_id()` with no await in between: what any node committed
        before the join is history to the new member (PROTOCOL.md "Groups")."""
        ctx = self.ctx
        user = logged_in_user(peer)
        ctx.registry.add_member(room, user.nick, ctx.last_id)
        room.kicked.pop(user.key, None)  # invited back after a kick: the kick is over
        await ctx.store.add_member(room.key, StoredMember(user.key, user.nick, ctx.last_id))
        await self._as_stored(room)
        ctx.hub.changed(ROOM, room.key)
        ctx.reply(peer, joined(room), ref)
        self._announce(room, members=True)

    async def leave(self, peer: Peer, f: Leave) -> None:
        user = logged_in_user(peer)
        room = room_seen_by(self.ctx, user, f.room)
        if not room.is_member(user.key):
            raise RequestError(ErrorCode.NOT_MEMBER, f"you are not in {room.name}")
        # Out of the room on every node first: once told `left`, no session of the user can
        # send there, whichever node it is on.
        await self.remove_member(room, user.nick)
        self.ctx.reply(peer, Left(room=room.name), f.ref)

    async def topic(self, peer: Peer, f: TopicRequest) -> None:
        user = logged_in_user(peer)
        room = room_seen_by(self.ctx, user, f.room)
        if not room.is_member(user.key):
            raise RequestError(ErrorCode.NOT_MEMBER, f"you are not in {room.name}")
        check_topic(f.topic)
        room.topic = f.topic
        await self.ctx.store.set_topic(room.key, f.topic)
        self.ctx.hub.changed(ROOM, room.key)
        event = TopicEvent(room=room.name, topic=f.topic, by=user.nick)
        self.ctx.reply(peer, event, f.ref)
        self.ctx.deliver(event, (k for k in room.members if k != user.key))
        if room.public:
            self._room_news.announce(room.key, lambda: self._send_size(room))

    async def kick(self, peer: Peer, f: Kick) -> None:
        ctx = self.ctx
        user = logged_in_user(peer)
        admin = ctx.is_admin(user)
        room = room_seen_by(self.ctx, user, f.room)
        if not admin and not room.is_member(user.key):
            raise RequestError(ErrorCode.NOT_MEMBER, f"you are not in {room.name}")
        if not admin and room.owner != user.nick:
            raise RequestError(ErrorCode.FORBIDDEN, f"only the owner of {room.name} may kick")
        target_key = name_key(f.nick) if is_valid_name(f.nick) else ""
        if not room.is_member(target_key):
            raise RequestError(ErrorCode.NOT_MEMBER, f"{f.nick[:40]} is not in {room.name}")
        nick = room.members[target_key]
        if room.public:
            until = time.time() + KICK_NO_REJOIN
            room.kicked[target_key] = until
            await ctx.store.add_kick(room.key, target_key, until)
        # Out of the room on every node first: once told `left`, the user cannot send there.
        await self.remove_member(room, nick)
        reason = f.reason or None
        ctx.deliver(Left(room=room.name, by=user.nick, reason=reason), [target_key])
        peer.send(Ok(ref=f.ref))
        log.info("kick: %s removed %s from %s", user.nick, nick, room.name)

    async def rooms(self, peer: Peer, f: Any) -> None:
        ctx = self.ctx
        user = logged_in_user(peer)
        reply = Rooms(
            ref=f.ref,
            rooms=tuple(room_info(r) for r in ctx.registry.rooms_of(user.key)),
            public_rooms=tuple(public_info(ctx)),
        )
        peer.send(fit_rooms(reply, ctx.config.max_frame))

    # --- shared ------------------------------------------------------------------------------

    async def remove_member(self, room: Room, nick: str) -> None:
        """Take `nick` out; tell the rest; delete the room with its history once it is empty."""
        ctx = self.ctx
        ctx.registry.remove_member(room, nick)
        if ctx.shared_store:
            # This view may lack members who joined on another node a moment ago: the store
            # decides whether anyone is left (never delete a room others are in).
            await ctx.store.remove_member(room.key, name_key(nick))
            await self._as_stored(room)
            left_in = ctx.registry.rooms.get(room.key) is room and bool(room.members)
        else:
            left_in = bool(room.members)
        if left_in:
            if not ctx.shared_store:
                await ctx.store.remove_member(room.key, name_key(nick))
            ctx.hub.changed(ROOM, room.key)
            self._announce(room, members=True)
            return
        if ctx.registry.rooms.get(room.key) is room:
            ctx.registry.remove_room(room)
        self._members_news.forget(room.key)
        self._room_news.forget(room.key)
        await ctx.store.delete_room(room.key)
        ctx.hub.changed(ROOM, room.key)
        log.info("room %s deleted: no members left", room.name)
        if room.public:  # gone: said at once, never coalesced away
            ctx.broadcast(RoomEvent(room=room.name, members=0))

    async def _as_stored(self, room: Room) -> None:
        """With other nodes on the same store, make this view of `room` what the store has
        after our write, before it is told to anyone: a membership change made on another node
        may not have come by yet (docs/architecture.md "Several nodes"). `room` is updated in
        place; one node alone has the truth already."""
        if self.ctx.shared_store:
            await reload_room(self.ctx, room.key)

    def _announce(self, room: Room, *, members: bool = False) -> None:
        """Tell the members who is in `room` and everyone how big a public room is: at once,
        or coalesced with others of a burst (each event carries the state when it is sent)."""
        ctx = self.ctx

        def send_members() -> None:
            if ctx.registry.rooms.get(room.key) is room:
                ctx.deliver(
                    Members(room=room.name, members=room.member_names(), owner=room.owner),
                    room.members,
                )

        if members:
            self._members_news.announce(room.key, send_members)
        if room.public:
            self._room_news.announce(room.key, lambda: self._send_size(room))

    def _send_size(self, room: Room) -> None:
        ctx = self.ctx
        if ctx.registry.rooms.get(room.key) is room:
            ctx.broadcast(RoomEvent(room=room.name, members=len(room.members), topic=room.topic))

    async def expire_invitations(self) -> None:
        now = time.time()
        self.ctx.registry.expire_invitations(now, self.ctx.config.invite_ttl)
        await self.ctx.store.delete_invites_before(now - self.ctx.config.invite_ttl)
