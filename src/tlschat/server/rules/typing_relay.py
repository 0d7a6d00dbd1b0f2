"""PROTOCOL.md "Messages" → Typing: relayed to the other party or members, never stored, at
most one per sender and address every 2 s."""

from __future__ import annotations

import time
from collections.abc import Callable

from tlschat.protocol import ErrorCode, RequestError, Typing, TypingEvent, encode, name_key
from tlschat.server.rules.base import Context, Peer, address, logged_in_user
from tlschat.server.rules.messages import MessageRules

TYPING_INTERVAL = 2.0
"""At most one `typing` relayed per sender and address in this many seconds."""

_PRUNE_AT = 4096
"""Forget stale throttle entries once this many are kept."""


class TypingRules:
    def __init__(
        self, ctx: Context, messages: MessageRules, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ctx = ctx
        self.messages = messages
        self.clock = clock
        self._last: dict[tuple[str, str], float] = {}
        """(sender identity, address key) -> when its last `typing` was relayed."""

    async def typing(self, peer: Peer, f: Typing) -> None:
        """Relay, or drop silently if one went out less than 2 s ago; no reply on success."""
        ctx = self.ctx
        user = logged_in_user(peer)
        kind, name = address("to", f.to)
        if kind == "@":
            if await self.messages._dm_identity(name) is None:
                raise RequestError(ErrorCode.NO_SUCH_USER, f"no user {name}")
            # The other party only: a note to self is typed to nobody.
            recipients = [] if name_key(name) == user.key else [name_key(name)]
        else:
            room = await self.messages._member_room(user, name)
            recipients = [key for key in room.members if key != user.key]
        now = self.clock()
        key = (user.identity, kind + name_key(name))
        last = self._last.get(key)
        if last is not None and now - last < TYPING_INTERVAL:
            return
        if len(self._last) >= _PRUNE_AT:
            self._last = {k: t for k, t in self._last.items() if now - t < TYPING_INTERVAL}
        self._last[key] = now
        if recipients:
            ctx.hub.deliver(recipients, encode(TypingEvent(from_=user.nick, to=f.to)))
