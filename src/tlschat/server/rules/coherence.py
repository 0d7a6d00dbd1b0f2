"""Several nodes: this node's view (rooms, bans) follows what the other nodes change.

The store is the one truth; the registry and the bans are each node's view of it. A rule that
changes rooms or bans tells the hub (`hub.changed`), and every node, this one too, reads the
room or the bans again from the store when the notification comes by in the stream's order
(docs/architecture.md "Several nodes"). With `LocalHub` nothing is ever called here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from tlschat.protocol import Bye
from tlschat.server.registry import Room
from tlschat.server.rules.base import Context, reload_room

log = logging.getLogger("tlschat.server.rules")

ROOM = "room"
BANS = "bans"
GUEST_GONE = "guest_gone"
"""A node died with this guest online: the node that declared it dead runs its hold."""


class CoherenceRules:
    """The hub's change listener: `await changed(what, key)`."""

    def __init__(self, ctx: Context, hold_guest: Callable[[str], Awaitable[None]]) -> None:
        self.ctx = ctx
        self._hold_guest = hold_guest
        ctx.hub.listen_changes(self.changed)

    async def changed(self, what: str, key: str) -> None:
        if what == ROOM:
            await self.reload_room(key)
        elif what == BANS:
            await self.reload_bans()
        elif what == GUEST_GONE:
            await self._hold_guest(key)
        else:
            log.warning("unknown change %r from another node", what)

    async def reload_room(self, key: str) -> Room | None:
        return await reload_room(self.ctx, key)

    async def reload_bans(self) -> None:
        """The bans as stored; sessions here of a nick banned on another node are closed."""
        ctx = self.ctx
        bans = await ctx.store.bans()
        ctx.bans.clear()
        ctx.bans.update(bans)
        for key, reason in bans.items():
            user = ctx.hub.online(key)
            for session in list(user.sessions if user is not None else ()):
                if not session.closing:
                    session.shutdown(Bye(reason=reason), reason="banned")
