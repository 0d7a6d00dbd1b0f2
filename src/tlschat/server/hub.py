"""The hub seam: who is online and where their sessions are; fan-out of encoded frames.

The rules hand the hub frames that are already encoded (once per event) and the users they are
for; the hub finds the sessions. `LocalHub` serves one process; a Redis hub is a new module
implementing the same Protocol (publishing what it delivers to the other nodes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from typing import Protocol

from tlschat.protocol import UserInfo, name_key
from tlschat.server.registry import User


class Peer(Protocol):
    """One logged-in session, as the hub sees it: somewhere to queue encoded frames."""

    def deliver(self, data: bytes, msg_id: int = 0) -> None:
        """Queue an encoded frame; never waits (a slow consumer is dropped instead)."""
        ...

    def flush(self) -> None:
        """Write what is queued (one write), called once per loop turn at most."""
        ...


class Hub(Protocol):
    """Presence and fan-out. Every method is synchronous: delivering only queues."""

    def online(self, nick: str) -> User | None: ...
    def attach(self, user: User, peer: Peer) -> tuple[User, bool]:
        """Add a session; the (possibly existing) online user and whether it just came online."""
        ...

    def detach(self, user: User, peer: Peer) -> bool:
        """Remove a session; True if it was the user's last (it went offline)."""
        ...

    def online_users(self) -> Iterable[UserInfo]:
        """Every online user, ready to put in a `welcome` or `users` reply."""
        ...

    def deliver(
        self, nick_keys: Iterable[str], data: bytes, msg_id: int = 0, skip: Peer | None = None
    ) -> None:
        """Queue `data` on every session of these users (each session once), except `skip`."""
        ...

    def broadcast(self, data: bytes) -> None:
        """Queue `data` on every logged-in session."""
        ...

    def want_flush(self, peer: Peer) -> None:
        """`peer` queued something: flush it at the end of this loop turn."""
        ...


class LocalHub:
    """The in-process hub: one dict of online users; one flush per loop turn for all sessions."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        """Online users by nick key."""
        self._infos: dict[str, UserInfo] = {}
        """The `users` entry of each online user, made once when it comes online."""
        self._dirty: dict[Peer, None] = {}
        self._flush_scheduled = False

    # --- presence --------------------------------------------------------------------------

    def online(self, nick: str) -> User | None:
        return self.users.get(name_key(nick))

    def attach(self, user: User, peer: Peer) -> tuple[User, bool]:
        existing = self.users.get(user.key)
        if existing is None:
            self.users[user.key] = existing = user
            self._infos[user.key] = UserInfo(nick=user.nick, online=True)
        existing.sessions.append(peer)
        return existing, len(existing.sessions) == 1

    def detach(self, user: User, peer: Peer) -> bool:
        if peer in user.sessions:
            user.sessions.remove(peer)
        if user.sessions:
            return False
        if self.users.get(user.key) is user:
            del self.users[user.key]
            del self._infos[user.key]
        return True

    def online_users(self) -> Iterable[UserInfo]:
        return self._infos.values()

    def sessions(self) -> Iterator[Peer]:
        for user in self.users.values():
            yield from user.sessions

    # --- fan-out ---------------------------------------------------------------------------

    def deliver(
        self, nick_keys: Iterable[str], data: bytes, msg_id: int = 0, skip: Peer | None = None
    ) -> None:
        users = self.users
        seen: set[str] = set()
        for key in nick_keys:
            user = users.get(key)
            if user is None or key in seen:
                continue
            seen.add(key)
            for peer in user.sessions:
                if peer is not skip:
                    peer.deliver(data, msg_id)

    def broadcast(self, data: bytes) -> None:
        for user in self.users.values():
            for peer in user.sessions:
                peer.deliver(data)

    def want_flush(self, peer: Peer) -> None:
        self._dirty[peer] = None
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Once per loop turn: one TLS write per session that has frames queued."""
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, {}
        for peer in dirty:
            peer.flush()
