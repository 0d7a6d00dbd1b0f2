"""PROTOCOL.md "Conversations and read markers": a user's conversations with their unread
counts, and read markers shared by the user's sessions."""

from __future__ import annotations

from tlschat.protocol import (
    ConversationInfo,
    Conversations,
    ErrorCode,
    Ok,
    Read,
    ReadRequest,
    RequestError,
    encode,
    name_key,
)
from tlschat.server.fit import cut_list
from tlschat.server.registry import User
from tlschat.server.rules.base import (
    Context,
    Peer,
    address,
    held_guest,
    logged_in_user,
    room_seen_by,
)

CONVERSATIONS_MAX = 200


class ConversationRules:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def of(self, user: User) -> list[ConversationInfo]:
        """The user's conversations, most recent first (for `welcome` and `conversations`)."""
        ctx = self.ctx
        rooms = {
            room.key: room.joined_after.get(user.key, 0) for room in ctx.registry.rooms_of(user.key)
        }
        stored = await ctx.store.conversations(user.identity, user.key, rooms, CONVERSATIONS_MAX)
        partners = [c.partner for c in stored if c.partner is not None]
        nicks = await ctx.store.identity_nicks(partners) if partners else {}
        found = []
        for conv in stored:
            if conv.room_key is not None:
                room = ctx.registry.rooms.get(conv.room_key)
                if room is None:
                    continue
                with_ = room.address
            else:
                assert conv.partner is not None
                if conv.partner == user.identity:
                    with_ = f"@{user.nick}"
                elif conv.partner in nicks:
                    with_ = f"@{nicks[conv.partner]}"
                else:
                    continue  # a guest who is gone: the conversation went with it
            found.append(
                ConversationInfo(
                    with_=with_, last_id=conv.last_id, read=conv.read, unread=conv.unread
                )
            )
        return found

    async def conversations(self, peer: Peer, f: object) -> None:
        user = logged_in_user(peer)
        reply = Conversations(ref=getattr(f, "ref", None), conversations=tuple(await self.of(user)))
        peer.send(cut_list(reply, "conversations", self.ctx.config.max_frame))

    async def read(self, peer: Peer, f: ReadRequest) -> None:
        ctx = self.ctx
        user = logged_in_user(peer)
        kind, name = address("with", f.with_)
        if kind == "@":
            partner = await self._partner(user, name)
            conversation = f"@{partner}"
        else:
            room = room_seen_by(ctx, user, name)
            if not room.is_member(user.key):
                raise RequestError(ErrorCode.NOT_MEMBER, f"you are not in {room.name}")
            conversation = f"#{room.key}"
        now = await ctx.store.set_read(user.identity, conversation, f.id)
        peer.send(Ok(ref=f.ref))
        if now == f.id and len(user.sessions) > 1:
            # The marker moved: the user's other sessions follow (never anyone else).
            data = encode(Read(with_=f.with_, id=now))
            for other in user.sessions:
                if other is not peer:
                    other.deliver(data)

    async def _partner(self, user: User, nick: str) -> str:
        """The identity of the other party of a direct conversation `user` may read."""
        ctx = self.ctx
        key = name_key(nick)
        if key == user.key:
            return user.identity
        online = ctx.hub.online(key)
        if online is not None:
            return online.identity
        if await ctx.store.get_user(key) is not None:
            return key
        guest = await held_guest(ctx, key)
        if guest is not None:
            return guest.identity
        raise RequestError(ErrorCode.NO_SUCH_USER, f"no user {nick}")
