"""PROTOCOL.md "Frames" and "Requests and replies", rule by rule, over real TLS."""

from __future__ import annotations

import json
import ssl
from typing import Any

import pytest
from tests.integration.helpers_rules import (
    Dialer,
    assert_error,
    drain,
    drain_all,
    wait_presence,
)

from tlschat.protocol import HEADER

pytestmark = [
    pytest.mark.usefixtures("conformance"),
    pytest.mark.store_agnostic,
]


async def still_open(wire: Any, ref: str = "alive") -> None:
    """The connection is still usable: a ping gets its pong."""
    await wire.send({"type": "ping", "ref": ref})
    assert await wire.recv_match(ref=ref) == {"type": "pong", "ref": ref}


# --- length prefix ------------------------------------------------------------------------------


async def test_length_zero_is_bad_frame_then_close(connect: Any) -> None:
    alice = await connect("alice")
    await drain(alice, 0.1)
    await alice.send_bytes(HEADER.pack(0))
    frame = await alice.recv_type("error")
    assert_error(frame, "bad_frame")
    assert await alice.closed_by_server()


async def test_length_zero_before_login_is_bad_frame_then_close(connect: Any) -> None:
    wire = await connect()
    await wire.send_bytes(HEADER.pack(0))
    assert_error(await wire.recv_type("error"), "bad_frame")
    assert await wire.closed_by_server()


@pytest.mark.parametrize("length", [2049, 2**32 - 1])
async def test_oversize_length_refused_before_any_body(
    start_server: Any, dial: Dialer, length: int
) -> None:
    # frame_timeout is long: the answer must come from the 4 length bytes alone.
    server = await start_server(max_frame=2048, chunk=1024, frame_timeout=60)
    alice = await dial.open(server, "alice")
    assert alice.welcome["limits"]["max_frame"] == 2048
    await alice.send_bytes(HEADER.pack(length))  # and never a body
    frame = await alice.recv_type("error")
    assert_error(frame, "frame_too_large")
    assert await alice.closed_by_server()


async def test_oversize_length_before_login(start_server: Any, dial: Dialer) -> None:
    server = await start_server(max_frame=2048, chunk=1024, frame_timeout=60)
    wire = await dial.open(server)
    await wire.send_bytes(HEADER.pack(2049))
    assert_error(await wire.recv_type("error"), "frame_too_large")
    assert await wire.closed_by_server()


async def test_frame_of_exactly_max_frame_is_accepted(start_server: Any, dial: Dialer) -> None:
    server = await start_server(max_frame=2048, chunk=1024)
    alice = await dial.open(server, "alice")
    base = json.dumps({"type": "ping", "ref": "big", "pad": ""}).encode()
    payload = json.dumps({"type": "ping", "ref": "big", "pad": "x" * (2048 - len(base))}).encode()
    assert len(payload) == 2048
    await alice.send_payload(payload)
    assert await alice.recv_match(ref="big") == {"type": "pong", "ref": "big"}


async def test_welcome_advertises_default_max_frame(connect: Any) -> None:
    alice = await connect("alice")
    assert alice.welcome["limits"]["max_frame"] == 64 * 1024


async def test_oversize_frame_does_not_affect_other_clients(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await drain_all(alice, bob)
    await alice.send_bytes(HEADER.pack(10 * 1024 * 1024))
    assert_error(await alice.recv_type("error"), "frame_too_large")
    assert await alice.closed_by_server()
    await wait_presence(bob, "alice", online=False)
    await still_open(bob)


async def test_body_not_arriving_in_time_is_bad_frame_then_close(
    start_server: Any, dial: Dialer
) -> None:
    server = await start_server(frame_timeout=0.5, idle_timeout=60)
    alice = await dial.open(server, "alice")
    await drain(alice, 0.1)
    await alice.send_bytes(HEADER.pack(100) + b'{"type":')  # 8 of 100 bytes, then silence
    frame = await alice.recv_type("error")
    assert_error(frame, "bad_frame")
    assert await alice.closed_by_server()


# --- payloads that are not a frame: bad_frame, connection stays open ---------------------------

BAD_PAYLOADS = {
    "not utf-8": b'{"type":"ping","x":"\xff\xfe"}',
    "not json": b'{"type":"ping"',
    "garbage": b"hello there",
    "array": b'[{"type":"ping"}]',
    "string": b'"ping"',
    "number": b"42",
    "null": b"null",
    "repeated member": b'{"type":"ping","type":"pong"}',
    "repeated nested member": b'{"type":"ping","x":{"a":1,"a":2}}',
    "NaN": b'{"type":"ping","x":NaN}',
    "Infinity": b'{"type":"ping","x":Infinity}',
    "-Infinity": b'{"type":"ping","x":-Infinity}',
    "no type": b'{"ref":"a"}',
    "type not a string": b'{"type":7}',
}


@pytest.mark.parametrize("payload", BAD_PAYLOADS.values(), ids=BAD_PAYLOADS.keys())
async def test_bad_payload_is_bad_frame_and_connection_stays_open(
    connect: Any, payload: bytes
) -> None:
    alice = await connect("alice")
    await drain(alice, 0.1)
    await alice.send_payload(payload)
    frame = await alice.recv_type("error")
    assert_error(frame, "bad_frame")
    await still_open(alice)


async def test_bad_payload_before_login_keeps_connection_open(connect: Any) -> None:
    wire = await connect()
    await wire.send_payload(b"not json at all")
    assert_error(await wire.recv_type("error"), "bad_frame")
    welcome = await wire.hello("alice")
    assert welcome["type"] == "welcome"


async def test_unknown_type_is_unknown_type_and_connection_stays_open(connect: Any) -> None:
    alice = await connect("alice")
    await drain(alice, 0.1)
    await alice.send({"type": "frobnicate", "ref": "u1", "x": 1})
    assert_error(await alice.recv_type("error"), "unknown_type", ref="u1")
    await still_open(alice)


async def test_server_only_type_from_client_is_unknown_type(connect: Any) -> None:
    alice = await connect("alice")
    await drain(alice, 0.1)
    await alice.send({"type": "welcome", "ref": "u2"})
    assert_error(await alice.recv_type("error"), "unknown_type", ref="u2")
    await still_open(alice)


# --- bad_request: a known type with missing or ill-typed members ---------------------------------

BAD_REQUESTS: list[tuple[str, dict[str, Any], str]] = [
    ("send without text", {"type": "send", "to": "@alice"}, "text"),
    ("send without to", {"type": "send", "text": "hi"}, "to"),
    ("send to is a number", {"type": "send", "to": 5, "text": "hi"}, "to"),
    ("join without room", {"type": "join"}, "room"),
    ("history without with", {"type": "history"}, "with"),
    ("history limit 0", {"type": "history", "with": "@alice", "limit": 0}, "limit"),
    ("history limit 201", {"type": "history", "with": "@alice", "limit": 201}, "limit"),
    ("history limit as string", {"type": "history", "with": "@alice", "limit": "5"}, "limit"),
    ("history limit 1.5", {"type": "history", "with": "@alice", "limit": 1.5}, "limit"),
    ("history before true", {"type": "history", "with": "@alice", "before": True}, "before"),
    ("invite without nick", {"type": "invite", "room": "den"}, "nick"),
    ("create public as string", {"type": "create", "room": "den", "public": "yes"}, "public"),
]


@pytest.mark.parametrize(
    ("obj", "member"), [(o, m) for _, o, m in BAD_REQUESTS], ids=[i for i, _, _ in BAD_REQUESTS]
)
async def test_bad_request_names_the_member_and_keeps_connection(
    connect: Any, obj: dict[str, Any], member: str
) -> None:
    alice = await connect("alice")
    await drain(alice, 0.1)
    await alice.send({**obj, "ref": "bad"})
    frame = await alice.recv_type("error")
    assert_error(frame, "bad_request", ref="bad")
    assert member in frame["message"], frame
    await still_open(alice)


async def test_hello_missing_nick_is_bad_request_naming_it(connect: Any) -> None:
    wire = await connect()
    await wire.send({"type": "hello", "v": 1, "ref": "h"})
    frame = await wire.recv_type("error")
    assert_error(frame, "bad_request", ref="h")
    assert "nick" in frame["message"]
    assert (await wire.hello("alice"))["type"] == "welcome"


@pytest.mark.parametrize("v", ["1", 1.5, True, None])
async def test_hello_ill_typed_version_is_bad_request(connect: Any, v: Any) -> None:
    wire = await connect()
    await wire.send({"type": "hello", "v": v, "nick": "alice", "ref": "h"})
    frame = await wire.recv_type("error")
    assert_error(frame, "bad_request", ref="h")
    assert "v" in frame["message"]


# --- extra members ------------------------------------------------------------------------------


async def test_extra_members_are_ignored(connect: Any) -> None:
    wire = await connect()
    await wire.send({"type": "hello", "v": 1, "nick": "alice", "ref": "h", "theme": {"x": [1]}})
    assert (await wire.recv_match(ref="h"))["type"] == "welcome"
    bob = await connect("bob")
    await drain_all(wire, bob)
    await wire.send({"type": "ping", "ref": "p", "future": True})
    assert await wire.recv_match(ref="p") == {"type": "pong", "ref": "p"}
    await wire.send({"type": "send", "to": "@bob", "text": "hi", "ref": "s", "color": "red"})
    echo = await wire.recv_match(ref="s")
    assert echo["type"] == "message"
    assert echo["text"] == "hi"
    delivered = await bob.recv_type("message")
    assert "color" not in delivered
    assert delivered["text"] == "hi"


# --- ref ----------------------------------------------------------------------------------------


async def test_ref_is_echoed_on_every_direct_reply(connect: Any) -> None:
    wire = await connect()
    await wire.send({"type": "hello", "v": 1, "nick": "alice", "ref": "w"})
    welcome = await wire.recv()
    assert welcome["type"] == "welcome"
    assert welcome["ref"] == "w"
    bob = await connect("bob")
    await drain_all(wire, bob)

    replies: dict[str, tuple[dict[str, Any], str]] = {
        "pong": ({"type": "ping"}, "pong"),
        "message": ({"type": "send", "to": "@bob", "text": "hi"}, "message"),
        "history": ({"type": "history", "with": "@bob"}, "history"),
        "joined": ({"type": "create", "room": "den"}, "joined"),
        "ok": ({"type": "invite", "room": "den", "nick": "bob"}, "ok"),
        "rooms": ({"type": "rooms"}, "rooms"),
        "users": ({"type": "users"}, "users"),
        "error": ({"type": "send", "to": "@nobody", "text": "hi"}, "error"),
        "left": ({"type": "leave", "room": "den"}, "left"),
    }
    for ref, (obj, kind) in replies.items():
        ref_value = f"ref-{ref}-\u00e9\U0001f600"
        await wire.send({**obj, "ref": ref_value})
        reply = await wire.recv_match(ref=ref_value)
        assert reply["type"] == kind, (obj, reply)


async def test_ref_is_echoed_on_error_before_login(connect: Any) -> None:
    wire = await connect()
    await wire.send({"type": "users", "ref": "early"})
    assert_error(await wire.recv_type("error"), "not_logged_in", ref="early")


async def test_reply_without_ref_has_no_ref(connect: Any) -> None:
    alice = await connect("alice")
    await drain(alice, 0.1)
    await alice.send({"type": "ping"})
    assert await alice.recv_type("pong") == {"type": "pong"}


async def test_pushed_events_carry_no_ref(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await drain_all(alice, bob)
    carol = await connect("carol")
    presence = await alice.recv_type("presence")
    assert "ref" not in presence
    await drain_all(alice, bob, carol)
    await bob.send({"type": "send", "to": "@alice", "text": "x", "ref": "mine"})
    echo = await bob.recv_match(ref="mine")
    pushed = await alice.recv_type("message")
    assert "ref" not in pushed
    assert {k: v for k, v in echo.items() if k != "ref"} == pushed


async def test_ref_of_64_characters_is_accepted(connect: Any) -> None:
    alice = await connect("alice")
    await drain(alice, 0.1)
    ref = "é" * 64
    await alice.send({"type": "ping", "ref": ref})
    assert await alice.recv_type("pong") == {"type": "pong", "ref": ref}


@pytest.mark.parametrize("ref", ["x" * 65, "é" * 65, 5, ["a"]])
async def test_bad_ref_is_bad_request(connect: Any, ref: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await drain_all(alice, bob)
    await alice.send({"type": "send", "to": "@bob", "text": "never", "ref": ref})
    frame = await alice.recv_type("error")
    assert_error(frame, "bad_request")
    assert "ref" in frame["message"]
    await bob.no_frame(0.3)  # refused: nothing delivered
    await still_open(alice)


# --- persistent bad frames ----------------------------------------------------------------------


async def test_client_that_keeps_sending_bad_frames_is_disconnected(
    start_server: Any, dial: Dialer
) -> None:
    server = await start_server(max_bad_frames=3)
    alice = await dial.open(server, "alice")
    bob = await dial.open(server, "bob")
    await drain_all(alice, bob)
    for _ in range(10):
        try:
            await alice.send_payload(b"garbage")
        except (ConnectionError, ssl.SSLError):
            break
    errors = []
    while True:
        try:
            frame = await alice.recv(5)
        except Exception:
            break
        errors.append(frame)
    assert errors, "no error before the disconnect"
    for frame in errors:
        assert frame["type"] == "error", errors
    assert errors[0]["code"] == "bad_frame"
    assert await alice.closed_by_server()
    # one client's misbehaviour never ends another's session
    await wait_presence(bob, "alice", online=False)
    await still_open(bob)


async def test_bad_frames_count_over_a_minute_even_between_good_ones(
    start_server: Any, dial: Dialer
) -> None:
    """PROTOCOL.md: more than `max_bad_frames` bad frames in a minute close the connection; a
    valid frame in between does not wipe the count (an attacker could otherwise go on forever)."""
    server = await start_server(max_bad_frames=3)
    alice = await dial.open(server, "alice")
    await drain(alice, 0.1)
    for i in range(3):
        await alice.send_payload(b"garbage")
        assert_error(await alice.recv_type("error"), "bad_frame")
        await still_open(alice, ref=f"ok{i}")
    await alice.send_payload(b"garbage")
    assert_error(await alice.recv_type("error"), "bad_frame")
    assert_error(await alice.recv_type("error"), "bad_frame")
    assert await alice.closed_by_server()
