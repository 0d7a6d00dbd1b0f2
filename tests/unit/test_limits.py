"""Token bucket, failure window and the bounded outbox: the abuse limits' arithmetic."""

from __future__ import annotations

import asyncio

import pytest

from tlschat.server.outbox import Outbox
from tlschat.server.ratelimit import FailureWindow, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=5, burst=20, clock=clock)
    assert all(bucket.take() == 0.0 for _ in range(20))
    wait = bucket.take()
    assert wait == pytest.approx(0.2)
    clock.now += 0.2
    assert bucket.take() == 0.0
    assert bucket.take() > 0
    clock.now += 100
    assert bucket.tokens <= 20
    assert all(bucket.take() == 0.0 for _ in range(20))
    assert bucket.take() > 0


def test_refused_requests_do_not_spend_tokens() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=1, burst=1, clock=clock)
    assert bucket.take() == 0.0
    for _ in range(10):
        assert bucket.take() > 0
    clock.now += 1.0
    assert bucket.take() == 0.0


def test_failure_window_blocks_after_the_limit_and_forgets() -> None:
    clock = Clock()
    window = FailureWindow(limit=3, window=60, clock=clock)
    for _ in range(3):
        assert window.blocked_for("alice") == 0.0
        window.record("alice")
    assert window.blocked_for("alice") == pytest.approx(60)
    assert window.blocked_for("bob") == 0.0
    clock.now += 30
    assert window.blocked_for("alice") == pytest.approx(30)
    clock.now += 30
    assert window.blocked_for("alice") == 0.0


async def test_outbox_refuses_overflow_without_waiting() -> None:
    box = Outbox(limit=10)
    assert box.put(b"12345")
    assert box.put(b"12345")
    assert not box.put(b"1")
    batch = await box.take()
    assert batch == [(b"12345", 0), (b"12345", 0)]
    assert box.size == 0
    assert box.put(b"1" * 10)


async def test_outbox_takes_one_oversized_frame_when_empty() -> None:
    box = Outbox(limit=4)
    assert box.put(b"123456789")
    assert not box.put(b"1")


async def test_paced_put_waits_for_room() -> None:
    box = Outbox(limit=10)
    box.put(b"x" * 8, 1)
    waiter = asyncio.create_task(box.put_paced(b"y" * 8, 2))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    assert await box.take() == [(b"x" * 8, 1)]
    await asyncio.wait_for(waiter, 1)
    assert await box.take() == [(b"y" * 8, 2)]


async def test_closed_outbox_drains_then_ends() -> None:
    box = Outbox(limit=100)
    box.put(b"last")
    box.close()
    assert await box.take() == [(b"last", 0)]
    assert await box.take() is None
