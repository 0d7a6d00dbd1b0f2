"""Reconnect delays: exponential backoff with full jitter; no I/O."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays before successive reconnect attempts.

    The n-th delay (from 0) is drawn uniformly from `[0, min(cap, base * factor**n)]` ("full
    jitter"), so that clients dropped together by one server restart do not all come back at the
    same instant. Call `next()` before each attempt and `reset()` once an attempt succeeds.
    Tests inject one with a tiny `base`, or `jitter=False` and a seeded `rng`, to stay fast
    and deterministic.
    """

    base: float = 0.5
    """Ceiling of the first delay, in seconds."""
    factor: float = 2.0
    """How much the ceiling grows after each failed attempt."""
    cap: float = 30.0
    """The ceiling never exceeds this many seconds."""
    jitter: bool = True
    """False: always wait the full ceiling (deterministic; for tests)."""
    rng: random.Random = field(default_factory=random.Random, repr=False)
    attempt: int = 0
    """How many delays have been handed out since the last `reset()`."""

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ValueError("backoff base and cap must not be negative")
        if self.factor < 1:
            raise ValueError("backoff factor must be at least 1")

    def ceiling(self, attempt: int) -> float:
        """The largest delay of attempt number `attempt` (0 is the first)."""
        ceiling = self.base
        # Multiply step by step instead of `factor ** attempt`, which overflows a float after
        # a long outage; stop as soon as the cap is reached.
        for _ in range(attempt):
            if ceiling >= self.cap:
                break
            ceiling *= self.factor
        return min(self.cap, ceiling)

    def next(self) -> float:
        """The delay before the next attempt, in seconds; advances the attempt counter."""
        ceiling = self.ceiling(self.attempt)
        self.attempt += 1
        return self.rng.uniform(0.0, ceiling) if self.jitter else ceiling

    def reset(self) -> None:
        """Start again from the first delay (after a successful connection)."""
        self.attempt = 0
