"""PROTOCOL.md "Administration": `ban`, `unban`, `register` (administrators only)."""

from __future__ import annotations

import logging

from tlschat.protocol import (
    Ban,
    Bye,
    ErrorCode,
    Ok,
    Register,
    RequestError,
    Unban,
    is_valid_name,
    name_key,
)
from tlschat.server.auth import Passwords
from tlschat.server.rules.base import Context, Peer, logged_in_user
from tlschat.server.rules.coherence import BANS

log = logging.getLogger("tlschat.server.admin")


class AdminRules:
    def __init__(self, ctx: Context, passwords: Passwords) -> None:
        self.ctx = ctx
        self.passwords = passwords

    def _admin(self, peer: Peer, what: str) -> str:
        user = logged_in_user(peer)
        if not self.ctx.is_admin(user):
            raise RequestError(ErrorCode.FORBIDDEN, f"only administrators may {what}")
        return user.nick

    async def load(self) -> None:
        """Read the stored bans (once, at start)."""
        self.ctx.bans.update(await self.ctx.store.bans())

    async def ban(self, peer: Peer, f: Ban) -> None:
        by = self._admin(peer, "ban")
        if not is_valid_name(f.nick):
            raise RequestError(ErrorCode.NO_SUCH_USER, f"no user {f.nick[:40]}")
        key = name_key(f.nick)
        if key in self.ctx.admins:
            raise RequestError(ErrorCode.FORBIDDEN, "administrators cannot be banned")
        reason = f.reason or "banned by an administrator"
        await self.ctx.store.ban(key, reason)
        self.ctx.bans[key] = reason
        self.ctx.hub.changed(BANS)  # the other nodes close the user's sessions there
        peer.send(Ok(ref=f.ref))
        log.info("ban: %s banned %s", by, f.nick)
        online = self.ctx.hub.online(key)
        if online is not None:
            for session in list(online.sessions):
                session.shutdown(Bye(reason=reason), reason="banned")

    async def unban(self, peer: Peer, f: Unban) -> None:
        by = self._admin(peer, "unban")
        key = name_key(f.nick) if is_valid_name(f.nick) else ""
        if key:
            await self.ctx.store.unban(key)
            self.ctx.bans.pop(key, None)
            self.ctx.hub.changed(BANS)
        peer.send(Ok(ref=f.ref))
        log.info("unban: %s unbanned %s", by, f.nick[:40])

    async def register(self, peer: Peer, f: Register) -> None:
        by = self._admin(peer, "register accounts")
        if not is_valid_name(f.nick):
            raise RequestError(
                ErrorCode.NICK_INVALID,
                "a nick is 1-32 of A-Z a-z 0-9 _ - . and starts with a letter, digit or _",
            )
        if not f.password:
            raise RequestError(ErrorCode.BAD_REQUEST, "member 'password': must not be empty")
        key = name_key(f.nick)
        store = self.ctx.store
        # An account, a guest online, or a guest within its hold: the nick is someone's.
        if await store.get_user(key) is not None or await store.get_guest(key) is not None:
            raise RequestError(ErrorCode.NICK_TAKEN, f"{f.nick} exists")
        pw_hash = await self.passwords.hash(f.password)
        if not await self.ctx.store.create_user(key, f.nick, pw_hash):
            raise RequestError(ErrorCode.NICK_TAKEN, f"{f.nick} exists")
        peer.send(Ok(ref=f.ref))
        log.info("register: %s registered %s", by, f.nick)
