"""Ordering guarantees under concurrency: welcome first, replay in id order, no duplicates."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

from tests.wire import Wire


async def test_welcome_is_the_first_frame_under_concurrent_logins(
    server: Any, client_ctx: ssl.SSLContext
) -> None:
    """Registered users logging in together: presence events of the others must never reach a
    connection before its own `welcome`."""
    first = await Wire.open(server.port, client_ctx)
    await first.hello("seed", "pw")
    for i in range(5):  # give "seed" DM partners, so the login has store work to do
        await first.request({"type": "send", "to": "@seed", "text": f"note {i}"})

    async def login(i: int) -> dict[str, Any]:
        wire = await Wire.open(server.port, client_ctx)
        hello: dict[str, Any] = {"type": "hello", "v": 1, "nick": f"u{i}", "ref": "h"}
        if i % 10 == 0:
            hello["password"] = "pw"
        await wire.send(hello)
        frame = await wire.recv(15)
        await asyncio.sleep(0.5)  # stay online while the others log in
        await wire.close()
        return frame

    firsts = await asyncio.gather(*(login(i) for i in range(100)))
    assert [f["type"] for f in firsts] == ["welcome"] * 100
    await first.close()


async def test_live_messages_during_replay_arrive_after_it_in_id_order(
    server: Any, client_ctx: ssl.SSLContext
) -> None:
    """While bob's replay of 300 offline messages is being sent, alice keeps sending: bob sees
    every id once, strictly increasing."""
    alice = await Wire.open(server.port, client_ctx)
    await alice.hello("alice", "pw")
    bob = await Wire.open(server.port, client_ctx)
    await bob.hello("bob", "pw")
    await bob.close()
    for i in range(300):
        await alice.send({"type": "send", "to": "@bob", "text": f"offline {i}"})
    await alice.recv_match(10, type="message", text="offline 299")

    bob = await Wire.open(server.port, client_ctx)
    await bob.send({"type": "hello", "v": 1, "nick": "bob", "password": "pw", "last_seen": 0})
    for i in range(100):
        await alice.send({"type": "send", "to": "@bob", "text": f"live {i}"})
    ids = []
    texts = set()
    while len(texts) < 400:
        frame = await bob.recv(15)
        if frame["type"] == "message":
            ids.append(frame["id"])
            texts.add(frame["text"])
    assert ids == sorted(set(ids))
    assert len(ids) == 400
    await alice.close()
    await bob.close()


async def test_a_burst_of_joins_ends_with_one_complete_member_list(
    server: Any, client_ctx: ssl.SSLContext
) -> None:
    """30 joins at once: the owner sees far fewer than 30 `members` frames, and the last one
    lists everybody (coalesced, never lost)."""
    owner = await Wire.open(server.port, client_ctx)
    await owner.hello("owner")
    await owner.request({"type": "create", "room": "burst", "public": True})
    joiners = [await Wire.open(server.port, client_ctx) for _ in range(30)]
    for i, wire in enumerate(joiners):
        await wire.hello(f"j{i}")
    for wire in joiners:
        await wire.send({"type": "join", "room": "burst"})
    lists = []
    while not lists or len(lists[-1]) < 31:
        frame = await owner.recv_type("members", 10)
        lists.append(frame["members"])
    assert sorted(lists[-1]) == sorted(["owner", *(f"j{i}" for i in range(30))])
    assert len(lists) < 30
    for wire in [owner, *joiners]:
        await wire.close()


async def test_replies_never_exceed_max_frame(
    start_server: Any, client_ctx: ssl.SSLContext
) -> None:
    """PROTOCOL.md: max_frame bounds the server's frames too. 80 users online and 40 public
    rooms would make a 1 KiB welcome overflow: it is cut, and so are `users` and `rooms`."""
    server = await start_server(max_frame=1024, chunk=512)
    crowd = []
    for i in range(80):
        wire = await Wire.open(server.port, client_ctx)
        await wire.hello(f"someone-with-a-long-nick-{i:03d}")
        crowd.append(wire)
    for i in range(40):
        await crowd[i].request(
            {"type": "create", "room": f"public-room-number-{i:03d}", "public": True}
        )
    late = await Wire.open(server.port, client_ctx)
    raw_sizes: list[int] = []
    original = late._read_frame

    async def measuring(seconds: float) -> dict[str, Any]:
        frame = await original(seconds)
        raw_sizes.append(len(json.dumps(frame, separators=(",", ":"), ensure_ascii=False).encode()))
        return frame

    late._read_frame = measuring  # type: ignore[method-assign]
    welcome = await late.hello("latecomer")
    assert welcome["type"] == "welcome"
    assert any(u["nick"] == "latecomer" for u in welcome["users"])
    assert len(welcome["users"]) < 81
    users = await late.request({"type": "users"})
    rooms = await late.request({"type": "rooms"})
    assert users["type"] == "users"
    assert rooms["type"] == "rooms"
    assert len(rooms["public_rooms"]) < 40
    assert max(raw_sizes) <= 1024
    for wire in [late, *crowd]:
        await wire.close()
