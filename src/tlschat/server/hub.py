"""The hub seam: who is online and where their sessions are; fan-out of encoded frames.

The rules hand the hub frames that are already encoded (once per event) and the users they are
for; the hub finds the sessions. `LocalHub` serves one process; a Redis hub is a new module
implementing the same Protocol (publishing what it delivers to the other nodes).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Protocol

from tlschat.protocol import ErrorCode, RequestError, UserInfo, encode_payload, name_key
from tlschat.server import metrics
from tlschat.server.account_limits import EventWindow, LocalEventWindow
from tlschat.server.registry import User


class HubUnavailable(RequestError):
    """The hub cannot deliver to the other nodes right now (Redis is gone): the request is
    refused before anything is stored; the client may retry (PROTOCOL.md `unavailable`)."""

    def __init__(self, message: str = "the chat cluster is unreachable: try again soon") -> None:
        super().__init__(ErrorCode.UNAVAILABLE, message)


ChangeListener = Callable[[str, str], Awaitable[None]]
"""`(what, key)`: the store's `what` changed on some node (`room` KEY, `bans`, `guest_gone`
KEY); the node reads it again from the store (docs/architecture.md "Several nodes")."""


class Peer(Protocol):
    """One logged-in session, as the hub sees it: somewhere to queue encoded frames."""

    def deliver(self, data: bytes, msg_id: int = 0) -> None:
        """Queue an encoded frame; never waits (a slow consumer is dropped instead)."""
        ...

    def flush(self) -> None:
        """Write what is queued (one write), called once per loop turn at most."""
        ...

    def catch_up(self) -> None:
        """Queue the broadcasts this session has not queued yet (`Hub.broadcasts_after`)."""
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

    def online_entries(self) -> Iterable[tuple[str, bytes]]:
        """(nick key, encoded `users` entry) of every online user, made once when it came
        online: a `welcome` or `users` reply splices them in without encoding anything."""
        ...

    def may_have_other_sessions(self, user: User) -> bool:
        """Whether `user` may have sessions besides the one asking, on any node."""
        ...

    def writing(self) -> contextlib.AbstractContextManager[None]:
        """Wrap the store write that gives a message its id: raises `HubUnavailable` if what
        is written could not be delivered, and lets a hub with several writers know a write is
        in flight (docs/architecture.md "Several nodes"). Call `deliver` with the new id after
        the block, with no await in between."""
        ...

    def deliver(
        self,
        nick_keys: Iterable[str],
        data: bytes,
        msg_id: int = 0,
        skip: Peer | None = None,
        echo: bytes | None = None,
    ) -> None:
        """Queue `data` on every session of these users (each session once), except `skip`;
        `skip` gets `echo` instead, if given (a message's acknowledgement, with its `ref`), in
        the same place in the order of messages."""
        ...

    def broadcast(self, data: bytes) -> None:
        """Queue `data` on every logged-in session."""
        ...

    def want_flush(self, peer: Peer) -> None:
        """`peer` queued something: flush it at the end of this loop turn."""
        ...

    def broadcast_cursor(self) -> tuple[int, int]:
        """Where the broadcast list stands now: a session that logs in starts there."""
        ...

    def event_window(self, name: str, limit: int, window: float) -> EventWindow:
        """A counter of events per key shared by every node the hub reaches (the limits that
        protect accounts, PROTOCOL.md "Limits and abuse")."""
        ...

    def broadcasts_after(self, cursor: tuple[int, int]) -> tuple[tuple[int, int], list[bytes]]:
        """The broadcast frames a session at `cursor` has not queued yet, and its new cursor."""
        ...

    def changed(self, what: str, key: str = "") -> None:
        """This node changed `what` in the store (committed): every node's change listener is
        called with it, in the stream's order, before the frames handed to the hub after this
        call are delivered there. Call it after the store write, before the events about it."""
        ...

    def listen_changes(self, listener: ChangeListener) -> None:
        """`listener` keeps this node's view (registry, bans) in step with the store."""
        ...


BROADCAST_DELAY_MIN = 0.01
BROADCAST_DELAY_MAX = 0.5
BROADCAST_DELAY_PER_SESSION = 50e-6
"""Broadcasts (presence, public room sizes) go out together: after at most this long per
logged-in session (10 ms at 200, 250 ms at 5000). Sending one to every session costs a TLS write
each; batching keeps that cost per batch, not per event, so a login costs the same with 5000
online as with 1000. A session that gets a frame of its own meanwhile gets them first, in order."""


class LocalHub:
    """The in-process hub: one dict of online users; one flush per loop turn for all sessions."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        """Online users by nick key."""
        self._entries: dict[str, bytes] = {}
        """The encoded `users` entry of each online user, made once when it comes online."""
        self._dirty: dict[Peer, None] = {}
        self._flush_scheduled = False
        self._sessions = 0
        self._broadcasts: list[bytes] = []
        self._generation = 0
        """Counts the broadcast batches sent: a cursor from an older one has seen everything."""
        self._broadcast_due: asyncio.TimerHandle | None = None
        self.change_listener: ChangeListener | None = None
        """Called for the changes other nodes made to the store (never, in one process)."""

    # --- presence --------------------------------------------------------------------------

    def online(self, nick: str) -> User | None:
        return self.users.get(name_key(nick))

    def attach(self, user: User, peer: Peer) -> tuple[User, bool]:
        existing = self.users.get(user.key)
        if existing is None:
            self.users[user.key] = existing = user
            self._entries[user.key] = encode_payload(UserInfo(nick=user.nick, online=True))
        existing.sessions.append(peer)
        self._sessions += 1
        return existing, len(existing.sessions) == 1

    def detach(self, user: User, peer: Peer) -> bool:
        if peer in user.sessions:
            user.sessions.remove(peer)
            self._sessions -= 1
        if user.sessions:
            return False
        if self.users.get(user.key) is user:
            del self.users[user.key]
            del self._entries[user.key]
        return True

    def online_entries(self) -> Iterable[tuple[str, bytes]]:
        return self._entries.items()

    def sessions(self) -> Iterator[Peer]:
        for user in self.users.values():
            yield from user.sessions

    # --- fan-out ---------------------------------------------------------------------------

    def may_have_other_sessions(self, user: User) -> bool:
        return len(user.sessions) > 1

    def writing(self) -> contextlib.AbstractContextManager[None]:
        # One process, one store writer that commits in id order: nothing to track.
        return contextlib.nullcontext()

    def deliver(
        self,
        nick_keys: Iterable[str],
        data: bytes,
        msg_id: int = 0,
        skip: Peer | None = None,
        echo: bytes | None = None,
    ) -> None:
        if echo is not None and skip is not None:
            skip.deliver(echo, msg_id)
        users = self.users
        seen: set[str] = set()
        queued = 0
        for key in nick_keys:
            user = users.get(key)
            if user is None or key in seen:
                continue
            seen.add(key)
            for peer in user.sessions:
                if peer is not skip:
                    peer.deliver(data, msg_id)
                    queued += 1
        if queued:  # one counter update per fan-out, not per session
            metrics.FANOUT.inc(queued)
            if msg_id:
                metrics.MESSAGES_DELIVERED.inc(queued)

    def broadcast(self, data: bytes) -> None:
        self._broadcasts.append(data)
        if self._broadcast_due is None:
            delay = min(
                BROADCAST_DELAY_MAX,
                max(BROADCAST_DELAY_MIN, self._sessions * BROADCAST_DELAY_PER_SESSION),
            )
            loop = asyncio.get_running_loop()
            self._broadcast_due = loop.call_later(delay, self._send_broadcasts)

    def broadcast_cursor(self) -> tuple[int, int]:
        return self._generation, len(self._broadcasts)

    def broadcasts_after(self, cursor: tuple[int, int]) -> tuple[tuple[int, int], list[bytes]]:
        generation, seen = cursor
        if generation != self._generation:
            seen = 0  # that batch went out already
        now = (self._generation, len(self._broadcasts))
        return now, self._broadcasts[seen:] if seen < now[1] else []

    def _send_broadcasts(self) -> None:
        """Every session takes the broadcasts it has not queued yet, and is written once."""
        self._broadcast_due = None
        for user in list(self.users.values()):
            for peer in list(user.sessions):
                peer.catch_up()
                peer.flush()
        self._broadcasts = []
        self._generation += 1

    def event_window(self, name: str, limit: int, window: float) -> EventWindow:
        return LocalEventWindow(limit, window)

    def changed(self, what: str, key: str = "") -> None:
        # One process: the rules changed the registry themselves; no other view to update.
        pass

    def listen_changes(self, listener: ChangeListener) -> None:
        self.change_listener = listener

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
