"""PROTOCOL.md "Search": full-text search, through the store, over what the user may read."""

from __future__ import annotations

from tlschat.protocol import ErrorCode, RequestError, SearchRequest, SearchResult
from tlschat.server.fit import fit_search
from tlschat.server.rules.base import Context, Peer, address, logged_in_user, room_seen_by
from tlschat.server.rules.messages import MessageRules, message_frames
from tlschat.server.search import parse_query

WHOLE_ROOM = 0
"""The store searches a room after this id: 0 is all of it, as `history` serves a member."""


class SearchRules:
    def __init__(self, ctx: Context, messages: MessageRules) -> None:
        self.ctx = ctx
        self.messages = messages

    async def search(self, peer: Peer, f: SearchRequest) -> None:
        ctx = self.ctx
        user = logged_in_user(peer)
        query = parse_query(f.query)
        if query is None:
            raise RequestError(ErrorCode.BAD_REQUEST, "member 'query': holds no word")
        dm: tuple[str, str] | None = None
        identity: str | None = None
        rooms: dict[str, int]
        if f.with_ is None:
            # Every direct conversation of this identity (never an earlier guest's), and the
            # whole of each room the user is a member of now (never a room it left): exactly
            # what `history` lets it read, which gives a member a room's messages from before
            # it joined too.
            identity = user.identity
            rooms = {r.key: WHOLE_ROOM for r in ctx.registry.rooms_of(user.key)}
        else:
            kind, name = address("with", f.with_)
            if kind == "@":
                target = await self.messages._dm_identity(name)
                if target is None:
                    raise RequestError(ErrorCode.NO_SUCH_USER, f"no user {name}")
                dm = (user.identity, target[0])
                rooms = {}
            else:
                room = room_seen_by(ctx, user, name)  # the same answers as `history`
                if not room.is_member(user.key):
                    raise RequestError(
                        ErrorCode.FORBIDDEN, f"only members of {room.name} may search it"
                    )
                rooms = {room.key: WHOLE_ROOM}
        stored, more = await ctx.store.search(
            query, identity=identity, dm=dm, rooms=rooms, before=f.before, limit=f.limit
        )
        messages = await message_frames(ctx, stored)
        reply = SearchResult(ref=f.ref, query=f.query, messages=tuple(messages), more=more)
        peer.send(fit_search(reply, ctx.config.max_frame))
