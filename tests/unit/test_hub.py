"""The in-process hub with plain calls: presence, fan-out to sessions, one flush per loop turn."""

from __future__ import annotations

import asyncio

from tlschat.server.hub import LocalHub
from tlschat.server.registry import User


class FakePeer:
    def __init__(self, hub: LocalHub) -> None:
        self.hub = hub
        self.queued: list[bytes] = []
        self.written: list[bytes] = []

    def deliver(self, data: bytes, msg_id: int = 0) -> None:
        self.queued.append(data)
        self.hub.want_flush(self)

    def flush(self) -> None:
        self.written.append(b"".join(self.queued))
        self.queued.clear()


def test_first_and_last_session_decide_presence() -> None:
    hub = LocalHub()
    one, two = FakePeer(hub), FakePeer(hub)
    alice, first = hub.attach(User(nick="Alice", registered=True), one)
    assert first
    again, first = hub.attach(User(nick="alice", registered=True), two)
    assert again is alice
    assert not first
    assert alice.sessions == [one, two]
    assert [info.nick for info in hub.online_users()] == ["Alice"]
    assert not hub.detach(alice, one)
    assert hub.online("ALICE") is alice
    assert hub.detach(alice, two)
    assert hub.online("alice") is None
    assert list(hub.online_users()) == []


async def test_fan_out_reaches_every_session_once_and_flushes_once_per_turn() -> None:
    hub = LocalHub()
    a1, a2, b1, c1 = (FakePeer(hub) for _ in range(4))
    alice, _ = hub.attach(User(nick="alice", registered=True), a1)
    hub.attach(alice, a2)
    hub.attach(User(nick="bob", registered=True), b1)
    hub.attach(User(nick="carol", registered=True), c1)
    # alice named twice, an offline user, and the sender's own session skipped.
    hub.deliver(["alice", "bob", "alice", "nobody"], b"m1", 1, skip=a1)
    hub.deliver(["bob"], b"m2", 2)
    hub.broadcast(b"p")
    assert a1.queued == [b"p"]
    assert a2.queued == [b"m1", b"p"]
    assert b1.queued == [b"m1", b"m2", b"p"]
    assert c1.queued == [b"p"]
    assert b1.written == []  # nothing is written before the loop turns
    await asyncio.sleep(0)
    assert b1.written == [b"m1m2p"]  # one write for the whole turn
    assert a2.written == [b"m1p"]
