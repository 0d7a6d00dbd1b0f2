"""PROTOCOL.md "Session" and "Names", rule by rule, over real TLS."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest
from tests.integration.helpers_rules import (
    PASSWORD,
    SERVER_RE,
    Dialer,
    assert_error,
    drain,
    drain_all,
    say,
    wait_presence,
    without,
)
from tests.wire import Closed

pytestmark = pytest.mark.usefixtures("conformance")


# --- before welcome -----------------------------------------------------------------------------

BEFORE_LOGIN = [
    {"type": "send", "to": "@bob", "text": "hi"},
    {"type": "history", "with": "@bob"},
    {"type": "create", "room": "den"},
    {"type": "invite", "room": "den", "nick": "bob"},
    {"type": "accept", "room": "den"},
    {"type": "decline", "room": "den"},
    {"type": "join", "room": "den"},
    {"type": "leave", "room": "den"},
    {"type": "rooms"},
    {"type": "users"},
    {"type": "download", "file": "abc"},
]


@pytest.mark.parametrize("obj", BEFORE_LOGIN, ids=[o["type"] for o in BEFORE_LOGIN])
async def test_request_before_hello_is_not_logged_in(connect: Any, obj: dict[str, Any]) -> None:
    wire = await connect()
    await wire.send({**obj, "ref": "early"})
    assert_error(await wire.recv_type("error"), "not_logged_in", ref="early")
    assert (await wire.hello("alice"))["type"] == "welcome"  # still open, hello works


async def test_nothing_is_delivered_to_a_connection_before_hello(connect: Any) -> None:
    wire = await connect()
    alice = await connect("alice")
    bob = await connect("bob")
    await drain(alice, 0.2)
    await say(alice, "@bob", "hello")
    await bob.close()
    await wait_presence(alice, "bob", online=False)
    await wire.no_frame(0.3)  # no presence, no message for the anonymous connection


async def test_login_timeout_disconnects(start_server: Any, dial: Dialer) -> None:
    server = await start_server(login_timeout=0.5)
    wire = await dial.open(server)
    assert await wire.closed_by_server(5)


async def test_login_timeout_is_not_reset_by_other_frames(start_server: Any, dial: Dialer) -> None:
    server = await start_server(login_timeout=0.8)
    wire = await dial.open(server)
    closed = False
    for _ in range(50):  # keep talking, but never log in
        try:
            await wire.send({"type": "ping"})
            await wire.recv(0.2)
        except (Closed, ConnectionError, ssl.SSLError):
            closed = True
            break
        except TimeoutError:
            continue
    assert closed or await wire.closed_by_server(3)


async def test_logged_in_client_outlives_login_timeout(start_server: Any, dial: Dialer) -> None:
    server = await start_server(login_timeout=0.5, idle_timeout=60)
    alice = await dial.open(server, "alice")
    await asyncio.sleep(1.0)
    await alice.send({"type": "ping", "ref": "p"})
    assert await alice.recv_match(ref="p") == {"type": "pong", "ref": "p"}


async def test_hello_optional_members(connect: Any) -> None:
    wire = await connect()
    welcome = await wire.hello("alice", client="tlschat-tui/0.1 (" + "x" * 1000 + ")", last_seen=0)
    assert welcome["type"] == "welcome"  # `client` is free text: PROTOCOL.md sets no bound


# --- failed hello: connection stays open --------------------------------------------------------


@pytest.mark.parametrize(
    "nick", ["", "x" * 33, ".dot", "-dash", "a b", "é", "a@b", "#room", "@bob", "tab\t"]
)
async def test_nick_invalid_then_another_hello(connect: Any, nick: str) -> None:
    wire = await connect()
    assert_error(await wire.hello(nick), "nick_invalid")
    welcome = await wire.hello("alice")
    assert welcome["type"] == "welcome"
    assert welcome["nick"] == "alice"


@pytest.mark.parametrize("nick", ["a", "x" * 32, "_under", "9lives", "a.b-c_d"])
async def test_valid_nicks_are_accepted(connect: Any, nick: str) -> None:
    wire = await connect()
    welcome = await wire.hello(nick)
    assert welcome["type"] == "welcome"
    assert welcome["nick"] == nick


@pytest.mark.parametrize("v", [2, 0, 99])
async def test_version_unsupported_then_v1(connect: Any, v: int) -> None:
    wire = await connect()
    assert_error(await wire.hello("alice", v=v), "version_unsupported")
    assert (await wire.hello("alice"))["type"] == "welcome"


async def test_auth_failed_then_right_password(connect: Any) -> None:
    first = await connect("dave", PASSWORD)
    await first.close()
    wire = await connect()
    assert_error(await wire.hello("dave", "wrong"), "auth_failed")
    welcome = await wire.hello("dave", PASSWORD)
    assert welcome["type"] == "welcome"


async def test_nick_taken_then_another_nick(connect: Any) -> None:
    await connect("gus")
    wire = await connect()
    assert_error(await wire.hello("gus"), "nick_taken")
    assert (await wire.hello("gus2"))["type"] == "welcome"


async def test_hello_after_welcome_is_refused(connect: Any) -> None:
    alice = await connect("alice")
    await drain(alice, 0.1)
    reply = await alice.hello("other")
    assert reply["type"] == "error", reply
    await alice.send({"type": "users", "ref": "u"})
    users = await alice.recv_match(ref="u")
    nicks = {u["nick"] for u in users["users"]}
    assert "alice" in nicks
    assert "other" not in nicks


# --- accounts -----------------------------------------------------------------------------------


async def test_registered_nick_is_case_insensitive_and_shown_as_first_written(
    connect: Any,
) -> None:
    first = await connect("Alice", PASSWORD)
    assert first.welcome["nick"] == "Alice"
    await first.close()
    wire = await connect()
    welcome = await wire.hello("alice", PASSWORD)
    assert welcome["type"] == "welcome"
    assert welcome["nick"] == "Alice"
    other = await connect()
    welcome2 = await other.hello("ALICE", PASSWORD)  # a second session, another spelling
    assert welcome2["nick"] == "Alice"


async def test_registered_nick_other_case_wrong_password_fails(connect: Any) -> None:
    first = await connect("Alice", PASSWORD)
    await first.close()
    wire = await connect()
    assert_error(await wire.hello("aLiCe", "nope"), "auth_failed")


async def test_guest_nick_shown_as_given(connect: Any) -> None:
    wire = await connect("CaRoL")
    assert wire.welcome["nick"] == "CaRoL"


async def test_guest_nick_taken_case_insensitively_and_free_after_its_hold(
    start_server: Any, dial: Dialer
) -> None:
    # Guests are held for `--guest-hold` after they leave: 0 here, the hold ends at once.
    server = await start_server(guest_hold=0)
    watcher = await dial.open(server, "watcher")
    gus = await dial.open(server, "Gus")
    await drain_all(watcher, gus)
    for spelling in ("Gus", "gus", "GUS"):
        wire = await dial.open(server)
        assert_error(await wire.hello(spelling), "nick_taken")
        await wire.close()
    await gus.close()
    await wait_presence(watcher, "Gus", online=False)
    again = await dial.open(server)
    welcome = await again.hello("gus")
    assert welcome["type"] == "welcome"
    assert welcome["nick"] == "gus"  # a new guest, as given


async def test_guest_cannot_take_a_registered_nick(connect: Any) -> None:
    first = await connect("dave", PASSWORD)
    await first.close()
    wire = await connect()
    assert_error(await wire.hello("dave"), "auth_required")
    assert_error(await wire.hello("DAVE"), "auth_required")
    assert_error(await wire.hello("dave", "wrong"), "auth_failed")
    assert (await wire.hello("dave", PASSWORD))["type"] == "welcome"


async def test_registered_user_online_still_requires_password(connect: Any) -> None:
    await connect("dave", PASSWORD)
    wire = await connect()
    assert_error(await wire.hello("dave"), "auth_required")


async def test_require_password_refuses_guests(start_server: Any, dial: Dialer) -> None:
    server = await start_server(require_password=True)
    wire = await dial.open(server)
    assert_error(await wire.hello("gus"), "auth_required")
    welcome = await wire.hello("gus", PASSWORD)  # registers
    assert welcome["type"] == "welcome"
    assert welcome["nick"] == "gus"


async def test_password_is_not_stored_in_clear(
    start_server: Any, dial: Dialer, tmp_path: Any
) -> None:
    secret = "Sup3r-s3cret-pass-phrase"
    server = await start_server(data_dir=tmp_path / "pwdata")
    await dial.open(server, "dave", secret)
    await dial.close_all()
    await server.close()
    for path in (tmp_path / "pwdata").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


# --- several sessions of one user ---------------------------------------------------------------


async def test_every_session_receives_every_event(connect: Any) -> None:
    a1 = await connect("alice", PASSWORD)
    a2 = await connect("alice", PASSWORD)
    bob = await connect("bob")
    await drain_all(a1, a2, bob)

    # incoming DM: both sessions
    echo = await say(bob, "@alice", "to both", ref="b1")
    assert echo["ref"] == "b1"
    got1 = await a1.recv_type("message")
    got2 = await a2.recv_type("message")
    assert got1 == got2 == without(echo, "ref")

    # outgoing DM: the sending session gets the echo with ref, the other session without
    echo = await say(a1, "@bob", "from a1", ref="a1ref")
    assert echo["ref"] == "a1ref"
    assert echo["from"] == "alice"
    assert echo["to"] == "@bob"
    other = await a2.recv_type("message")
    assert other == without(echo, "ref")
    assert await bob.recv_type("message") == without(echo, "ref")
    for wire in (a1, a2, bob):
        await wire.no_frame(0.3)


async def test_one_session_leaving_keeps_the_other(connect: Any) -> None:
    a1 = await connect("alice", PASSWORD)
    a2 = await connect("alice", PASSWORD)
    bob = await connect("bob")
    await drain_all(a1, a2, bob)
    await a1.close()
    await bob.no_frame(0.5)  # alice is still online: no presence
    await say(bob, "@alice", "still there?")
    assert (await a2.recv_type("message"))["text"] == "still there?"


# --- presence -----------------------------------------------------------------------------------


async def test_presence_only_on_first_and_last_session(connect: Any) -> None:
    watcher = await connect("watcher")
    await drain(watcher, 0.1)
    b1 = await connect("bob", PASSWORD)
    assert await watcher.recv() == {"type": "presence", "nick": "bob", "online": True}
    b2 = await connect("bob", PASSWORD)
    await watcher.no_frame(0.4)
    await b2.close()
    await watcher.no_frame(0.4)
    await b1.close()
    assert await watcher.recv() == {"type": "presence", "nick": "bob", "online": False}
    await watcher.no_frame(0.3)


async def test_presence_reaches_every_logged_in_client(connect: Any) -> None:
    watchers = [await connect(f"w{i}") for i in range(3)]
    await drain_all(*watchers)
    gus = await connect("Gus")
    for w in watchers:
        await wait_presence(w, "Gus", online=True)
    await gus.close()
    for w in watchers:
        await wait_presence(w, "Gus", online=False)


# --- ping / pong and idleness -------------------------------------------------------------------


async def test_ping_is_answered_with_pong_and_ref(connect: Any) -> None:
    alice = await connect("alice")
    await drain(alice, 0.1)
    await alice.send({"type": "ping", "ref": "p1"})
    assert await alice.recv_type("pong") == {"type": "pong", "ref": "p1"}
    await alice.send({"type": "ping"})
    assert await alice.recv_type("pong") == {"type": "pong"}


async def test_server_pings_a_silent_client_then_disconnects_it(
    start_server: Any, dial: Dialer
) -> None:
    server = await start_server(idle_timeout=1.5, login_timeout=5)
    alice = await dial.open(server, "alice")
    frame = await alice.recv_type("ping", seconds=5)
    assert frame == {"type": "ping"}  # a pushed event: no ref
    assert await alice.closed_by_server(5)  # never answered


async def test_a_client_answering_pings_stays_connected(start_server: Any, dial: Dialer) -> None:
    server = await start_server(idle_timeout=1.5, login_timeout=5)
    alice = await dial.open(server, "alice")
    loop = asyncio.get_running_loop()
    end = loop.time() + 4.5  # three idle timeouts
    pings = 0
    while loop.time() < end:
        try:
            frame = await alice.recv(0.2)
        except TimeoutError:
            continue
        if frame["type"] == "ping":
            pings += 1
            await alice.send({"type": "pong", **({"ref": frame["ref"]} if "ref" in frame else {})})
        else:
            assert frame["type"] != "error", frame
    assert pings >= 2
    await alice.send({"type": "ping", "ref": "still"})
    assert await alice.recv_match(ref="still") == {"type": "pong", "ref": "still"}


async def test_a_client_that_talks_is_not_pinged_out(start_server: Any, dial: Dialer) -> None:
    server = await start_server(idle_timeout=1.5, login_timeout=5)
    alice = await dial.open(server, "alice")
    for i in range(10):  # 3 s of traffic, twice the idle timeout
        await alice.send({"type": "ping", "ref": f"k{i}"})
        assert (await alice.recv_match(ref=f"k{i}"))["type"] == "pong"
        await asyncio.sleep(0.3)


# --- welcome ------------------------------------------------------------------------------------


async def test_welcome_fields(start_server: Any, dial: Dialer) -> None:
    server = await start_server(
        max_text=123, max_upload=4567, chunk=2048, max_frame=8192, guest_hold=300.0
    )
    alice = await dial.open(server, "alice")
    welcome = alice.welcome
    assert welcome["v"] == 1
    assert welcome["nick"] == "alice"
    assert SERVER_RE.fullmatch(welcome["server"]), welcome["server"]
    assert welcome["limits"] == {
        "max_frame": 8192,
        "max_text": 123,
        "max_upload": 4567,
        "chunk": 2048,
        "guest_hold": 300,  # an addition (docs/protocol.md)
    }
    assert welcome["users"] == [{"nick": "alice", "online": True}]
    assert welcome["rooms"] == []
    assert welcome["public_rooms"] == []
    assert welcome["invites"] == []
    assert welcome["last_id"] == 0


async def test_welcome_lists_users_rooms_public_rooms_invites_last_id(connect: Any) -> None:
    alice = await connect("alice", PASSWORD)
    bob = await connect("bob", PASSWORD)
    erin = await connect("erin", PASSWORD)
    frank = await connect("frank", PASSWORD)  # registered, no conversation with alice
    carol = await connect("carol")  # guest online
    dave = await connect("dave")  # guest online
    await drain_all(alice, bob, erin, frank, carol, dave)

    # alice and bob share the private room "Den"
    assert (await alice.request({"type": "create", "room": "Den", "invite": ["bob"]}))[
        "type"
    ] == "joined"
    await bob.recv_type("invited")
    assert (await bob.request({"type": "accept", "room": "Den"}))["type"] == "joined"
    # carol runs a public room; dave a private one, with an invitation for alice
    assert (await carol.request({"type": "create", "room": "Lobby", "public": True}))[
        "type"
    ] == "joined"
    assert (await dave.request({"type": "create", "room": "Secret"}))["type"] == "joined"
    assert (await dave.request({"type": "invite", "room": "Secret", "nick": "alice"}))[
        "type"
    ] == "ok"
    # frank talks to bob only; erin shares a conversation with alice, then goes offline
    await say(frank, "@bob", "not for alice")
    last = await say(alice, "@erin", "hi erin")
    await erin.close()
    await frank.close()
    await alice.close()
    await wait_presence(bob, "frank", online=False)
    await wait_presence(bob, "alice", online=False)

    again = await connect()
    welcome = await again.hello("alice", PASSWORD)
    assert welcome["type"] == "welcome"
    users = {u["nick"]: u["online"] for u in welcome["users"]}
    assert users == {
        "alice": True,
        "bob": True,
        "carol": True,
        "dave": True,
        "erin": False,
    }
    assert [{**r, "members": sorted(r["members"])} for r in welcome["rooms"]] == [
        {"room": "Den", "members": ["alice", "bob"], "public": False, "owner": "alice", "topic": ""}
    ]
    assert welcome["public_rooms"] == [{"room": "Lobby", "members": 1, "topic": ""}]
    assert welcome["invites"] == [{"room": "Secret", "by": "dave"}]
    assert welcome["last_id"] == last["id"]


async def test_welcome_users_lists_each_user_once(connect: Any) -> None:
    await connect("bob", PASSWORD)
    await connect("bob", PASSWORD)
    alice = await connect("alice")
    nicks = [u["nick"] for u in alice.welcome["users"]]
    assert sorted(nicks) == ["alice", "bob"]
