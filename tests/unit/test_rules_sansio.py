"""The rules through the sans-I/O core (`SessionPair`): bytes in, frames out, no sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.sessionpair import SessionPair, config_for

from tlschat.protocol import HEADER, encode_raw


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[SessionPair]:
    server = SessionPair(config_for(tmp_path, rate_burst=1000, rate_per_sec=1000.0))
    await server.open()
    yield server
    await server.close()


async def test_direct_message_is_echoed_with_ref_and_delivered(pair: SessionPair) -> None:
    alice = await pair.login("alice")
    bob = await pair.login("bob")
    await alice.frames()  # bob's presence
    echo = await alice.request({"type": "send", "ref": "r1", "to": "@bob", "text": "hi"})
    got = [f for f in await bob.frames() if f["type"] == "message"]
    assert [f["type"] for f in echo] == ["message"]
    assert echo[0]["ref"] == "r1"
    assert got[0]["id"] == echo[0]["id"]
    assert "ref" not in got[0]
    assert got[0]["to"] == "@bob"
    assert got[0]["from"] == "alice"


async def test_concurrent_senders_are_seen_in_id_order_by_everyone(pair: SessionPair) -> None:
    """Group commit: many sends in one batch; every member sees strictly increasing ids."""
    members = [await pair.login(f"u{i}") for i in range(5)]
    await members[0].request({"type": "create", "room": "team", "public": True})
    for member in members[1:]:
        await member.request({"type": "join", "room": "team"})
    for member in members:
        await member.frames()
    sends = [
        member.session._receive(
            _frame({"type": "send", "to": "#team", "text": f"m{n}", "ref": str(n)})
        )
        for n in range(20)
        for member in members
    ]
    await asyncio.gather(*sends)
    for member in members:
        ids = [f["id"] for f in await member.frames() if f["type"] == "message"]
        assert len(ids) == 100
        assert ids == sorted(ids)
        assert len(set(ids)) == 100


async def test_history_sees_the_message_once_acknowledged(pair: SessionPair) -> None:
    alice = await pair.login("alice")
    echo = await alice.request({"type": "send", "to": "@alice", "text": "note"})
    reply = await alice.request({"type": "history", "with": "@alice", "ref": "h"})
    assert reply[0]["messages"][-1]["id"] == echo[0]["id"]


async def test_ping_is_answered_with_its_ref_before_and_after_hello(pair: SessionPair) -> None:
    client = pair.connect()
    assert await client.request({"type": "ping", "ref": "p"}) == [{"type": "pong", "ref": "p"}]
    reply = await client.request({"type": "send", "to": "@x", "text": "t", "ref": "s"})
    assert reply[0]["code"] == "not_logged_in"
    assert reply[0]["ref"] == "s"


async def test_bad_frames_are_counted_in_a_window_not_reset_by_a_good_one(
    pair: SessionPair,
) -> None:
    alice = await pair.login("alice")
    for _ in range(10):
        assert (await alice.feed(_raw(b"not json")))[0]["code"] == "bad_frame"
    await alice.request({"type": "ping"})  # a valid frame does not wipe the count
    for _ in range(10):
        assert (await alice.feed(_raw(b"[]")))[0]["code"] == "bad_frame"
    assert not alice.session.closing
    last = await alice.feed(_raw(b"{}"))  # the 21st within a minute: its error, then close
    assert [f["code"] for f in last] == ["bad_frame", "bad_frame"]
    assert alice.session.closing


async def test_invalid_frames_are_billed_by_the_rate_limit(tmp_path: Path) -> None:
    server = SessionPair(config_for(tmp_path, rate_burst=3, rate_per_sec=0.001))
    await server.open()
    try:
        client = server.connect()
        codes = [(await client.feed(_raw(b"nope")))[0]["code"] for _ in range(4)]
        assert codes == ["bad_frame", "bad_frame", "bad_frame", "rate_limited"]
    finally:
        await server.close()


async def test_a_lone_surrogate_is_a_bad_frame_and_the_connection_stays(pair: SessionPair) -> None:
    alice = await pair.login("alice")
    reply = await alice.feed(_raw(b'{"type":"ping","ref":"\\ud800"}'))
    assert reply[0]["code"] == "bad_frame"
    assert not alice.session.closing
    assert (await alice.request({"type": "ping", "ref": "ok"}))[0]["type"] == "pong"


async def test_guest_identities_never_repeat(tmp_path: Path) -> None:
    pair = SessionPair(config_for(tmp_path, guest_hold=0.0))  # the hold ends as it leaves
    await pair.open()
    try:
        first = await pair.login("ghost")
        identity = first.session.user.identity  # type: ignore[union-attr]
        await pair.rules.session_ended(first.session)  # type: ignore[union-attr]
        second = await pair.login("ghost")
        assert second.session.user.identity != identity  # type: ignore[union-attr]
    finally:
        await pair.close()


def _raw(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


def _frame(obj: dict[str, object]) -> bytes:
    return encode_raw(obj)
