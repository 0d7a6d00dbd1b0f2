"""Token bucket, failure window and the bounded outbox: the abuse limits' arithmetic."""

from __future__ import annotations

import pytest

from tlschat.ratelimit import FailureWindow, TokenBucket


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
