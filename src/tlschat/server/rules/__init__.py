"""The rules of PROTOCOL.md, written once against a store and a hub (server/store.py,
server/hub.py), split by area. `Rules.handle(peer, frame)` serves one request; nothing here
reads or writes a socket or knows SQL: replies and events are queued on peers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tlschat.protocol import ClientFrame
from tlschat.server.rules.admin import AdminRules
from tlschat.server.rules.base import Context, FileService, Peer
from tlschat.server.rules.coherence import CoherenceRules
from tlschat.server.rules.conversations import ConversationRules
from tlschat.server.rules.edits import EditRules
from tlschat.server.rules.groups import GroupRules
from tlschat.server.rules.messages import MessageRules
from tlschat.server.rules.search import SearchRules
from tlschat.server.rules.session import SessionRules
from tlschat.server.rules.typing_relay import TypingRules

__all__ = ["Context", "FileService", "Peer", "Rules"]

Handler = Callable[[Peer, Any], Awaitable[None]]


class Rules:
    """Every request type's handler; the I/O layer calls `handle()` one request at a time per
    connection, and `session_ended()` once when a connection is gone."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.groups = GroupRules(ctx)
        self.messages = MessageRules(ctx)
        self.conversations = ConversationRules(ctx)
        self.session = SessionRules(ctx, self.groups.remove_member, self.conversations)
        self.admin = AdminRules(ctx, self.session.passwords)
        self.edits = EditRules(ctx)
        self.typing = TypingRules(ctx, self.messages)
        self.search = SearchRules(ctx, self.messages)
        self.coherence = CoherenceRules(ctx, self.session.hold_gone_guest)
        self._handlers: dict[str, Handler] = {
            "hello": self.session.hello,
            "users": self.session.users,
            "send": self.messages.send,
            "history": self.messages.history,
            "edit": self.edits.edit,
            "delete": self.edits.delete,
            "typing": self.typing.typing,
            "search": self.search.search,
            "create": self.groups.create,
            "invite": self.groups.invite,
            "accept": self.groups.accept,
            "decline": self.groups.decline,
            "join": self.groups.join,
            "leave": self.groups.leave,
            "rooms": self.groups.rooms,
            "topic": self.groups.topic,
            "kick": self.groups.kick,
            "ban": self.admin.ban,
            "unban": self.admin.unban,
            "register": self.admin.register,
            "conversations": self.conversations.conversations,
            "read": self.conversations.read,
            "upload": self._files,
            "chunk": self._files,
            "download": self._files,
        }

    async def handle(self, peer: Peer, frame: ClientFrame) -> None:
        """Serve `frame`; raise RequestError (or ProtocolError) to refuse it."""
        await self._handlers[frame.type](peer, frame)

    async def _files(self, peer: Peer, frame: Any) -> None:
        await self.ctx.files.handle(peer, frame)

    async def load(self) -> None:
        """Read what the rules keep in memory from the store (bans); once, before serving."""
        await self.admin.load()

    async def session_ended(self, peer: Peer) -> None:
        await self.session.session_ended(peer)

    def mark_delivered(self, peer: Peer, msg_id: int) -> None:
        if peer.user is not None:
            self.session.mark_delivered(peer.user, msg_id)

    async def flush_marks(self) -> None:
        await self.session.flush_marks()

    async def expire_invitations(self) -> None:
        await self.groups.expire_invitations()

    async def start(self) -> None:
        """Once at start: guests' holds carry on from where the last run left them."""
        await self.session.resume_holds()

    def close(self) -> None:
        self.session.close()
