"""Counters behind the limits that protect accounts, local or shared by every node in Redis.

PROTOCOL.md "Limits and abuse": with several nodes behind one address, a limit counted per node
would multiply by the number of nodes, so the account limits (registrations per IP; failed
logins, server/auth.py `FailedLogins`) are counted where every node sees them.
The per-connection limits stay in each connection (sansio.py).
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Protocol

from tlschat.ratelimit import FailureWindow

if TYPE_CHECKING:
    import redis.asyncio as aioredis


class EventWindow(Protocol):
    """At most `limit` events per key within `window` seconds."""

    async def blocked_for(self, key: str) -> float:
        """0.0 if `key` may act now, else the seconds until it may."""
        ...

    async def record(self, key: str) -> None: ...


class LocalEventWindow:
    """One process: a `FailureWindow` in memory."""

    def __init__(self, limit: int, window: float) -> None:
        self._window = FailureWindow(limit, window)

    async def blocked_for(self, key: str) -> float:
        return self._window.blocked_for(key)

    async def record(self, key: str) -> None:
        self._window.record(key)


class RedisEventWindow:
    """Every node: a sorted set per key (score: when), trimmed to the window, expiring with it.
    If Redis cannot answer, redis-py's error reaches the rule, which answers `unavailable`
    (a limit that protects accounts is not skipped because it cannot be counted)."""

    def __init__(self, client: aioredis.Redis, name: str, limit: int, window: float) -> None:
        self._client = client
        self._prefix = f"tlschat:limit:{name}:"
        self.limit = limit
        self.window = window

    async def blocked_for(self, key: str) -> float:
        now = time.time()
        name = self._prefix + key
        pipe = self._client.pipeline(transaction=False)
        pipe.zremrangebyscore(name, "-inf", now - self.window)
        pipe.zrange(name, 0, -1, withscores=True)
        _, events = await pipe.execute()
        if len(events) < self.limit:
            return 0.0
        oldest_counted = sorted(float(score) for _, score in events)[-self.limit]
        return max(0.001, self.window - (now - oldest_counted))

    async def record(self, key: str) -> None:
        now = time.time()
        name = self._prefix + key
        pipe = self._client.pipeline(transaction=False)
        pipe.zadd(name, {secrets.token_hex(8): now})  # unique members: two at once both count
        pipe.pexpire(name, int(self.window * 1000) + 1000)
        await pipe.execute()
