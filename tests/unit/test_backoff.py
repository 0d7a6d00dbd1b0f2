"""Reconnect backoff: exponential ceilings, a cap, full jitter, reset."""

from __future__ import annotations

import random

import pytest

from tlschat.client import Backoff


def test_defaults_double_from_half_a_second_up_to_thirty() -> None:
    backoff = Backoff(jitter=False)
    delays = [backoff.next() for _ in range(10)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]


def test_full_jitter_stays_between_zero_and_the_ceiling() -> None:
    backoff = Backoff(rng=random.Random(7))
    for attempt in range(50):
        delay = backoff.next()
        assert 0.0 <= delay <= backoff.ceiling(attempt)
    assert backoff.attempt == 50


def test_jitter_spreads_the_delays() -> None:
    backoff = Backoff(rng=random.Random(1))
    delays = set()
    for _ in range(20):
        backoff.reset()
        delays.add(backoff.next())
    assert len(delays) > 1


def test_seeded_rng_is_reproducible() -> None:
    first = Backoff(rng=random.Random(42))
    second = Backoff(rng=random.Random(42))
    assert [first.next() for _ in range(8)] == [second.next() for _ in range(8)]


def test_reset_starts_over() -> None:
    backoff = Backoff(jitter=False)
    for _ in range(5):
        backoff.next()
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next() == 0.5


def test_a_very_long_outage_does_not_overflow() -> None:
    backoff = Backoff(jitter=False)
    backoff.attempt = 100_000
    assert backoff.next() == 30.0
    assert Backoff(jitter=False).ceiling(5000) == 30.0


def test_custom_parameters() -> None:
    backoff = Backoff(base=0.01, factor=3, cap=0.1, jitter=False)
    assert [backoff.next() for _ in range(4)] == pytest.approx([0.01, 0.03, 0.09, 0.1])


@pytest.mark.parametrize("options", [{"base": -1.0}, {"cap": -1.0}, {"factor": 0.5}])
def test_invalid_parameters(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(**options)  # type: ignore[arg-type]
