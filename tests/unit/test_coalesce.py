"""The announcement coalescer: first at once, a burst collapses into one trailing event."""

from __future__ import annotations

import asyncio

from tlschat.server.coalesce import Coalescer


async def test_first_goes_at_once_and_a_burst_collapses() -> None:
    news = Coalescer(0.05)
    sent: list[int] = []
    state = {"n": 0}

    def send() -> None:
        sent.append(state["n"])

    for n in range(1, 11):
        state["n"] = n
        news.announce("room", send)
    assert sent == [1]  # the first, immediately
    await asyncio.sleep(0.15)
    assert sent == [1, 10]  # one more, carrying the state when it was sent


async def test_keys_are_independent_and_quiet_keys_are_immediate() -> None:
    news = Coalescer(0.05)
    sent: list[str] = []
    news.announce("a", lambda: sent.append("a"))
    news.announce("b", lambda: sent.append("b"))
    assert sent == ["a", "b"]
    await asyncio.sleep(0.08)
    news.announce("a", lambda: sent.append("a2"))
    assert sent == ["a", "b", "a2"]


async def test_forget_cancels_the_pending_one() -> None:
    news = Coalescer(0.05)
    sent: list[str] = []
    news.announce("r", lambda: sent.append("first"))
    news.announce("r", lambda: sent.append("late"))
    news.forget("r")
    await asyncio.sleep(0.1)
    assert sent == ["first"]
    news.announce("r", lambda: sent.append("again"))
    assert sent == ["first", "again"]
