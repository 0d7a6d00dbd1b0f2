"""Accounts' passwords: argon2id hashing off the event loop, bounded; the failed-login throttle and
the registration limit."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from tlschat.server.account_limits import EventWindow


class Passwords:
    """Hash and verify in worker threads: argon2id is memory-hard and takes ~100 ms a hash,
    which would stall every connection if run on the loop. A semaphore bounds the memory."""

    def __init__(self, concurrency: int, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()  # argon2id, RFC 9106 low-memory profile
        self._slots = asyncio.Semaphore(max(1, concurrency))

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str, password: str) -> bool:
        async with self._slots:
            return await asyncio.to_thread(self._verify, stored, password)

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False


@dataclass(frozen=True)
class Attempt:
    """A login attempt holding its slots (`LoginThrottle.begin`)."""

    nick_key: str
    ip: str
    started: float


class LoginThrottle:
    """PROTOCOL.md "Limits and abuse", failed logins.

    Every `hello` that must check a password (or a token) takes a slot when it starts, so
    parallel guesses count too: at most `per_ip` in a `window` per IP, and `per_nick` per nick
    over all IPs. A success gives its slots back; a failure keeps them. The per-nick limit never
    refuses an IP that has not failed for that nick within `remember` seconds: an attack on a
    nick from elsewhere cannot lock its owner out.
    """

    REMEMBER = 600.0
    """Seconds an IP that failed for a nick stays subject to that nick's limit."""

    def __init__(
        self,
        per_ip: int,
        per_nick: int,
        window: float,
        remember: float = REMEMBER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_ip = per_ip
        self.per_nick = per_nick
        self.window = window
        self.remember = remember
        self._clock = clock
        self._by_ip: dict[str, deque[float]] = {}
        self._by_nick: dict[str, deque[float]] = {}
        self._failed: dict[tuple[str, str], float] = {}
        """(nick key, IP) -> when that IP last failed for that nick."""

    def begin(self, nick_key: str, ip: str) -> Attempt | float:
        """Take the slots for an attempt, or return the seconds to wait (`rate_limited`)."""
        now = self._clock()
        ip_slots = self._slots(self._by_ip, ip, now)
        nick_slots = self._slots(self._by_nick, nick_key, now)
        waits = []
        if len(ip_slots) >= self.per_ip:
            waits.append(self.window - (now - ip_slots[-self.per_ip]))
        if len(nick_slots) >= self.per_nick and self._has_failed(nick_key, ip, now):
            waits.append(self.window - (now - nick_slots[-self.per_nick]))
        if waits:
            self._drop_empty(ip, nick_key)
            return max(0.001, max(waits))
        ip_slots.append(now)
        nick_slots.append(now)
        return Attempt(nick_key, ip, now)

    def succeeded(self, attempt: Attempt) -> None:
        """The attempt was right: its slots go back."""
        for table, key in ((self._by_ip, attempt.ip), (self._by_nick, attempt.nick_key)):
            slots = table.get(key)
            if slots is not None:
                with contextlib.suppress(ValueError):
                    slots.remove(attempt.started)
        self._drop_empty(attempt.ip, attempt.nick_key)

    def failed(self, attempt: Attempt) -> None:
        """The attempt was wrong: its slots stay taken until the window passes."""
        now = self._clock()
        self._failed[(attempt.nick_key, attempt.ip)] = now
        if len(self._failed) > 10_000:  # keep the memory bounded under a spraying attack
            cutoff = now - self.remember
            self._failed = {k: t for k, t in self._failed.items() if t > cutoff}

    def abandoned(self, attempt: Attempt) -> None:
        """The attempt ended without a verdict (an error of ours): treat it as a success."""
        self.succeeded(attempt)

    def _has_failed(self, nick_key: str, ip: str, now: float) -> bool:
        when = self._failed.get((nick_key, ip))
        return when is not None and now - when < self.remember

    def _slots(self, table: dict[str, deque[float]], key: str, now: float) -> deque[float]:
        slots = table.setdefault(key, deque())
        while slots and now - slots[0] >= self.window:
            slots.popleft()
        return slots

    def _drop_empty(self, ip: str, nick_key: str) -> None:
        if not self._by_ip.get(ip, True):
            del self._by_ip[ip]
        if not self._by_nick.get(nick_key, True):
            del self._by_nick[nick_key]


class FailedLogins:
    """The failed-login limits for every node at once (PROTOCOL.md "Limits and abuse").

    `LoginThrottle` holds this node's slots (attempts in flight count, as before); the failures
    themselves are also counted in the hub's event windows, shared by every node: per IP, per
    nick, and which IP failed for which nick (so the per-nick limit still never refuses an IP
    that has not failed for that nick). One node alone gets the same answers as before."""

    def __init__(
        self,
        local: LoginThrottle,
        by_ip: EventWindow,
        by_nick: EventWindow,
        pairs: EventWindow,
    ) -> None:
        self.local = local
        self._by_ip = by_ip
        self._by_nick = by_nick
        self._pairs = pairs
        """`nick key IP` -> that IP failed for that nick (limit 1: one failure blocks)."""

    async def begin(self, nick_key: str, ip: str) -> Attempt | float:
        """Take the slots for an attempt, or return the seconds to wait (`rate_limited`)."""
        attempt = self.local.begin(nick_key, ip)
        try:
            # Asked even when this node refuses: the wait is the longer of the two (a failure
            # is counted when its verdict comes, after its slot was taken here).
            wait = await self._by_ip.blocked_for(ip)
            if await self._pairs.blocked_for(f"{nick_key} {ip}"):
                wait = max(wait, await self._by_nick.blocked_for(nick_key))
        except BaseException:
            if isinstance(attempt, Attempt):
                self.local.abandoned(attempt)
            raise
        if not isinstance(attempt, Attempt):
            return max(attempt, wait)
        if wait:
            self.local.abandoned(attempt)
            return wait
        return attempt

    def succeeded(self, attempt: Attempt) -> None:
        self.local.succeeded(attempt)

    def abandoned(self, attempt: Attempt) -> None:
        self.local.abandoned(attempt)

    async def failed(self, attempt: Attempt) -> None:
        """The attempt was wrong: counted here and for every node."""
        self.local.failed(attempt)
        await self._by_ip.record(attempt.ip)
        await self._by_nick.record(attempt.nick_key)
        await self._pairs.record(f"{attempt.nick_key} {attempt.ip}")


REGISTRATION_WINDOW = 3600.0


class RegistrationLimit:
    """At most `limit` new accounts per IP per `window` (PROTOCOL.md: 10 an hour), counted in
    `events` (the hub's: in Redis when there are several nodes)."""

    def __init__(self, events: EventWindow) -> None:
        self._events = events

    async def blocked_for(self, ip: str) -> float:
        return await self._events.blocked_for(ip)

    async def registered(self, ip: str) -> None:
        await self._events.record(ip)
