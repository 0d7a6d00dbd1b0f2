"""Accounts' passwords: argon2id hashing off the event loop, bounded, and the failed-login throttle."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from tlschat.ratelimit import FailureWindow


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


class LoginThrottle:
    """At most `limit` failed logins per `window` seconds per nick and per IP address."""

    def __init__(self, limit: int, window: float) -> None:
        self._by_nick = FailureWindow(limit, window)
        self._by_ip = FailureWindow(limit, window)

    def blocked_for(self, nick_key: str, ip: str) -> float:
        return max(self._by_nick.blocked_for(nick_key), self._by_ip.blocked_for(ip))

    def failed(self, nick_key: str, ip: str) -> None:
        self._by_nick.record(nick_key)
        self._by_ip.record(ip)
