"""PROTOCOL.md "Messages" (send, delivery, replay, history), rule by rule, over real TLS."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from tests.integration.helpers_rules import (
    PASSWORD,
    TS_RE,
    Dialer,
    assert_error,
    drain,
    drain_all,
    messages,
    recv_raw,
    say,
    wait_presence,
    without,
)

pytestmark = pytest.mark.usefixtures("conformance")


async def make_room(owner: Any, room: str, *others: Any, public: bool = False) -> None:
    """`owner` creates `room`; each of `others` is invited and accepts."""
    joined = await owner.request({"type": "create", "room": room, "public": public})
    assert joined["type"] == "joined", joined
    for other in others:
        nick = other.welcome["nick"]
        assert (await owner.request({"type": "invite", "room": room, "nick": nick}))["type"] == "ok"
        await other.recv_type("invited")
        assert (await other.request({"type": "accept", "room": room}))["type"] == "joined"


def check_message(frame: dict[str, Any], sender: str, to: str, text: str) -> None:
    assert frame["type"] == "message"
    assert frame["from"] == sender
    assert frame["to"] == to
    assert frame["text"] == text
    assert isinstance(frame["id"], int)
    assert not isinstance(frame["id"], bool)
    assert frame["id"] >= 1
    assert TS_RE.fullmatch(frame["ts"]), frame["ts"]
    assert set(frame) <= {"type", "id", "ts", "from", "to", "text", "file", "ref"}


# --- direct messages ----------------------------------------------------------------------------


async def test_direct_message_echo_and_delivery(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    await drain_all(alice, bob, carol)
    await alice.send({"type": "send", "to": "@bob", "text": "hi <b>bob</b>", "ref": "m1"})
    echo = await alice.recv()
    check_message(echo, "alice", "@bob", "hi <b>bob</b>")
    assert echo["ref"] == "m1"
    delivered = await bob.recv()
    assert delivered == without(echo, "ref")  # same id, ts, from, to ("@bob" as written), text
    await carol.no_frame(0.3)
    await alice.no_frame(0.1)
    await bob.no_frame(0.1)


async def test_reply_keeps_to_as_written(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await drain_all(alice, bob)
    echo = await say(bob, "@alice", "hi alice")
    got = await alice.recv_type("message")
    assert got["to"] == echo["to"] == "@alice"
    assert got["from"] == "bob"


async def test_notes_to_self(connect: Any) -> None:
    a1 = await connect("alice", PASSWORD)
    a2 = await connect("alice", PASSWORD)
    await drain_all(a1, a2)
    echo = await say(a1, "@alice", "note", ref="n1")
    check_message(echo, "alice", "@alice", "note")
    assert echo["ref"] == "n1"
    assert await a2.recv_type("message") == without(echo, "ref")
    await a1.no_frame(0.3)  # exactly one copy per session
    await a2.no_frame(0.1)


async def test_message_to_offline_registered_user_is_accepted(connect: Any) -> None:
    bob = await connect("bob", PASSWORD)
    alice = await connect("alice")
    await bob.close()
    await wait_presence(alice, "bob", online=False)
    echo = await say(alice, "@bob", "later")
    check_message(echo, "alice", "@bob", "later")


@pytest.mark.parametrize("to", ["@nobody", "@NOBODY2"])
async def test_no_such_user(connect: Any, to: str) -> None:
    alice = await connect("alice")
    await drain(alice, 0.1)
    assert_error(await say(alice, to, "hi", ref="x"), "no_such_user", ref="x")


async def test_departed_guest_is_no_such_user(connect: Any) -> None:
    alice = await connect("alice")
    gus = await connect("gus")
    await drain_all(alice, gus)
    await gus.close()
    await wait_presence(alice, "gus", online=False)
    assert_error(await say(alice, "@gus", "hi", ref="g"), "no_such_user", ref="g")


async def test_recipient_nick_is_case_insensitive(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("Bob")
    await drain_all(alice, bob)
    echo = await say(alice, "@bOB", "hey")
    assert echo["type"] == "message"
    got = await bob.recv_type("message")
    assert got["text"] == "hey"


# --- groups -------------------------------------------------------------------------------------


async def test_group_message_to_every_member(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    outsider = await connect("dave")
    await make_room(alice, "Den", bob, carol)
    await drain_all(alice, bob, carol, outsider)
    echo = await say(bob, "#Den", "hello den", ref="g1")
    check_message(echo, "bob", "#Den", "hello den")
    assert echo["ref"] == "g1"
    assert await alice.recv_type("message") == without(echo, "ref")
    assert await carol.recv_type("message") == without(echo, "ref")
    await outsider.no_frame(0.3)
    await bob.no_frame(0.1)


async def test_no_such_room(connect: Any) -> None:
    alice = await connect("alice")
    await drain(alice, 0.1)
    assert_error(await say(alice, "#nowhere", "hi", ref="r"), "no_such_room", ref="r")


async def test_not_member(connect: Any) -> None:
    """A public room tells an outsider it is not a member; a private one answers as absent."""
    alice = await connect("alice")
    bob = await connect("bob")
    await make_room(alice, "Hall", public=True)
    await make_room(alice, "Den")
    await drain_all(alice, bob)
    assert_error(await say(bob, "#Hall", "let me in", ref="n"), "not_member", ref="n")
    assert_error(await say(bob, "#Den", "let me in", ref="p"), "no_such_room", ref="p")
    await alice.no_frame(0.3)


# --- text rules ---------------------------------------------------------------------------------


async def test_text_too_long(start_server: Any, dial: Dialer) -> None:
    server = await start_server(max_text=10)
    alice = await dial.open(server, "alice")
    bob = await dial.open(server, "bob")
    await drain_all(alice, bob)
    ok = await say(alice, "@bob", "é😀" * 5)  # 10 characters (more bytes)
    assert ok["type"] == "message"
    assert (await bob.recv_type("message"))["text"] == "é😀" * 5
    assert_error(await say(alice, "@bob", "x" * 11, ref="long"), "text_too_long", ref="long")
    await bob.no_frame(0.3)


async def test_default_max_text_is_4000(connect: Any) -> None:
    alice = await connect("alice")
    await drain(alice, 0.1)
    assert alice.welcome["limits"]["max_text"] == 4000
    assert (await say(alice, "@alice", "x" * 4000))["type"] == "message"
    assert_error(await say(alice, "@alice", "x" * 4001, ref="l"), "text_too_long", ref="l")


async def test_empty_text_without_file_is_bad_request(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await drain_all(alice, bob)
    frame = await say(alice, "@bob", "", ref="e")
    assert_error(frame, "bad_request", ref="e")
    assert "text" in frame["message"]
    await bob.no_frame(0.3)


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\r", "\x0b", "\x7f", "\x80", "\x9b"])
async def test_control_characters_are_bad_request(connect: Any, char: str) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await drain_all(alice, bob)
    assert_error(await say(alice, "@bob", f"a{char}b", ref="c"), "bad_request", ref="c")
    await bob.no_frame(0.3)


async def test_newline_and_tab_are_allowed(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await drain_all(alice, bob)
    text = "line 1\n\tline 2\n[red]markup[/red] *x* \u00a0é"
    assert (await say(alice, "@bob", text))["text"] == text
    assert (await bob.recv_type("message"))["text"] == text


# --- ids and timestamps -------------------------------------------------------------------------


async def test_ids_unique_and_increasing_across_conversations(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    await make_room(alice, "Den", bob)
    await drain_all(alice, bob, carol)
    ids = []
    plan = [
        (alice, "@bob"), (bob, "#Den"), (carol, "@alice"), (alice, "#Den"), (bob, "@carol"),
        (carol, "@carol"), (alice, "@alice"), (bob, "@alice"), (alice, "#Den"), (carol, "@bob"),
    ]  # fmt: skip
    for i, (wire, to) in enumerate(plan):
        echo = await say(wire, to, f"m{i}")
        assert echo["type"] == "message", echo
        ids.append(echo["id"])
    assert ids == sorted(set(ids)), ids  # strictly increasing
    assert len(set(ids)) == len(ids)
    # every recipient sees them in increasing order too
    for wire in (alice, bob, carol):
        got = [f["id"] for f in await drain(wire, 0.3) if f["type"] == "message"]
        assert got == sorted(got)
        assert set(got) <= set(ids)


async def test_ts_is_utc_iso8601_with_milliseconds(connect: Any) -> None:
    alice = await connect("alice")
    await drain(alice, 0.1)
    before = datetime.now(UTC)
    echo = await say(alice, "@alice", "when?")
    after = datetime.now(UTC)
    assert TS_RE.fullmatch(echo["ts"]), echo["ts"]
    moment = datetime.strptime(echo["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    # UTC, not local time: within the request's round trip (to the millisecond)
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= moment <= after


# --- offline delivery and replay ----------------------------------------------------------------


async def test_offline_registered_user_gets_messages_on_next_hello(connect: Any) -> None:
    bob = await connect("bob", PASSWORD)
    alice = await connect("alice")
    carol = await connect("carol")
    await make_room(alice, "Den", bob)
    await bob.close()
    await wait_presence(alice, "bob", online=False)
    sent = [
        await say(alice, "@bob", "one"),
        await say(carol, "@carol", "not for bob"),
        await say(alice, "#Den", "two"),
        await say(carol, "@bob", "three"),
    ]
    again = await connect()
    welcome = await again.hello("bob", PASSWORD)
    assert welcome["type"] == "welcome"
    replay = [f for f in await drain(again, 0.5) if f["type"] == "message"]
    expected = [without(m, "ref") for m in (sent[0], sent[2], sent[3])]
    assert replay == expected


async def test_replay_comes_after_welcome(connect: Any) -> None:
    bob = await connect("bob", PASSWORD)
    alice = await connect("alice")
    await bob.close()
    await wait_presence(alice, "bob", online=False)
    await say(alice, "@bob", "queued")
    again = await connect()
    await again.send({"type": "hello", "v": 1, "nick": "bob", "password": PASSWORD, "ref": "h"})
    first = await again.recv()
    assert first["type"] == "welcome"
    assert (await again.recv_type("message"))["text"] == "queued"


async def test_guest_gets_no_offline_delivery(connect: Any) -> None:
    alice = await connect("alice")
    gus = await connect("gus")
    await make_room(alice, "Den", gus)
    await say(alice, "@gus", "while online")
    await gus.close()
    await wait_presence(alice, "gus", online=False)
    assert_error(await say(alice, "@gus", "while away", ref="a"), "no_such_user", ref="a")
    await say(alice, "#Den", "group while away")
    again = await connect()
    welcome = await again.hello("gus")
    assert welcome["type"] == "welcome"
    assert [f for f in await drain(again, 0.5) if f["type"] == "message"] == []


async def test_last_seen_replay_is_exact(connect: Any) -> None:
    bob = await connect("bob", PASSWORD)
    alice = await connect("alice", PASSWORD)
    carol = await connect("carol")
    await make_room(alice, "Den", bob)
    await drain_all(alice, bob, carol)
    to_bob: list[dict[str, Any]] = []
    for i in range(4):
        to_bob.append(without(await say(alice, "@bob", f"dm{i}"), "ref"))
        await say(carol, "@alice", f"noise{i}")  # not addressed to bob
        to_bob.append(without(await say(alice, "#Den", f"grp{i}"), "ref"))
    received = await messages(bob, len(to_bob))
    assert received == to_bob
    await bob.close()
    await wait_presence(alice, "bob", online=False)
    for i in range(3):
        to_bob.append(without(await say(carol, "@bob", f"late{i}"), "ref"))
        await say(carol, "@alice", f"late-noise{i}")

    for cut in (0, 3, len(to_bob) - 4, len(to_bob) - 1):
        last_seen = to_bob[cut]["id"]
        wire = await connect()
        welcome = await wire.hello("bob", PASSWORD, last_seen=last_seen)
        assert welcome["type"] == "welcome"
        replay = [f for f in await drain(wire, 0.5) if f["type"] == "message"]
        assert replay == to_bob[cut + 1 :], f"last_seen={last_seen}"
        await wire.close()
        await wait_presence(alice, "bob", online=False)


async def test_last_seen_zero_replays_everything(connect: Any) -> None:
    bob = await connect("bob", PASSWORD)
    alice = await connect("alice")
    await drain_all(alice, bob)
    sent = [without(await say(alice, "@bob", f"m{i}"), "ref") for i in range(3)]
    await bob.close()
    await wait_presence(alice, "bob", online=False)
    wire = await connect()
    assert (await wire.hello("bob", PASSWORD, last_seen=0))["type"] == "welcome"
    assert [f for f in await drain(wire, 0.5) if f["type"] == "message"] == sent


async def test_without_last_seen_only_undelivered_messages(connect: Any) -> None:
    bob = await connect("bob", PASSWORD)
    alice = await connect("alice")
    await drain_all(alice, bob)
    delivered = [without(await say(alice, "@bob", f"seen{i}"), "ref") for i in range(2)]
    assert await messages(bob, 2) == delivered
    await bob.close()
    await wait_presence(alice, "bob", online=False)
    pending = [without(await say(alice, "@bob", f"new{i}"), "ref") for i in range(2)]
    again = await connect()
    assert (await again.hello("bob", PASSWORD))["type"] == "welcome"
    assert [f for f in await drain(again, 0.5) if f["type"] == "message"] == pending
    await again.close()
    await wait_presence(alice, "bob", online=False)
    third = await connect()
    assert (await third.hello("bob", PASSWORD))["type"] == "welcome"
    assert [f for f in await drain(third, 0.5) if f["type"] == "message"] == []


async def test_replay_goes_to_the_new_session_only(connect: Any) -> None:
    b1 = await connect("bob", PASSWORD)
    alice = await connect("alice")
    await drain_all(alice, b1)
    sent = without(await say(alice, "@bob", "x"), "ref")
    assert await b1.recv_type("message") == sent
    b2 = await connect()
    assert (await b2.hello("bob", PASSWORD, last_seen=0))["type"] == "welcome"
    assert [f for f in await drain(b2, 0.5) if f["type"] == "message"] == [sent]
    assert [f for f in await drain(b1, 0.3) if f["type"] == "message"] == []


# --- history ------------------------------------------------------------------------------------


async def test_history_paging(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    await drain_all(alice, bob, carol)
    sent = []
    for i in range(7):
        sender, to = (alice, "@bob") if i % 2 == 0 else (bob, "@alice")
        sent.append(without(await say(sender, to, f"h{i}"), "ref"))
        await say(carol, "@alice", f"other{i}")  # another conversation, never in this history

    page = await alice.request({"type": "history", "with": "@bob", "limit": 3})
    assert page["type"] == "history"
    assert page["with"] == "@bob"
    assert page["messages"] == sent[4:]
    assert page["more"] is True

    page = await alice.request(
        {"type": "history", "with": "@bob", "limit": 3, "before": sent[4]["id"]}
    )
    assert page["messages"] == sent[1:4]
    assert page["more"] is True

    page = await alice.request(
        {"type": "history", "with": "@bob", "limit": 3, "before": sent[1]["id"]}
    )
    assert page["messages"] == sent[:1]
    assert page["more"] is False

    page = await bob.request({"type": "history", "with": "@alice"})
    assert page["with"] == "@alice"
    assert page["messages"] == sent
    assert page["more"] is False


async def test_history_exact_limit_has_no_more(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await drain_all(alice, bob)
    sent = [without(await say(alice, "@bob", f"x{i}"), "ref") for i in range(3)]
    page = await alice.request({"type": "history", "with": "@bob", "limit": 3})
    assert page["messages"] == sent
    assert page["more"] is False


async def test_history_default_limit_is_50(connect: Any) -> None:
    alice = await connect("alice")
    await drain(alice, 0.1)
    sent = [without(await say(alice, "@alice", f"n{i}"), "ref") for i in range(52)]
    page = await alice.request({"type": "history", "with": "@alice"})
    assert page["messages"] == sent[2:]
    assert page["more"] is True


async def test_history_of_empty_conversation(connect: Any) -> None:
    alice = await connect("alice")
    await connect("bob")
    page = await alice.request({"type": "history", "with": "@bob"})
    assert page["messages"] == []
    assert page["more"] is False


async def test_history_of_a_group_for_members_only(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    await make_room(alice, "Den", bob)
    await drain_all(alice, bob, carol)
    sent = [
        without(await say(alice, "#Den", "g0"), "ref"),
        without(await say(bob, "#Den", "g1"), "ref"),
    ]
    page = await bob.request({"type": "history", "with": "#Den"})
    assert page["messages"] == sent
    assert page["more"] is False
    # Den is private: to outsiders it answers as a room that does not exist (PROTOCOL.md).
    assert_error(await carol.request({"type": "history", "with": "#Den"}), "no_such_room")
    # a former member loses access
    assert (await bob.request({"type": "leave", "room": "Den"}))["type"] == "left"
    assert_error(await bob.request({"type": "history", "with": "#Den"}), "no_such_room")
    # a public room's history is for members only too, but the room is no secret
    await make_room(alice, "Hall", public=True)
    assert_error(await carol.request({"type": "history", "with": "#Hall"}), "forbidden")


async def test_history_of_a_dm_shows_only_own_conversations(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    await drain_all(alice, bob, carol)
    await say(alice, "@bob", "private")
    page = await carol.request({"type": "history", "with": "@bob"})
    assert page["messages"] == []
    page = await carol.request({"type": "history", "with": "@alice"})
    assert page["messages"] == []


async def test_history_limit_out_of_range_is_bad_request(connect: Any) -> None:
    alice = await connect("alice")
    for limit in (0, 201):
        assert_error(
            await alice.request({"type": "history", "with": "@alice", "limit": limit}),
            "bad_request",
        )


async def test_history_cut_short_by_max_frame(start_server: Any, dial: Dialer) -> None:
    server = await start_server(max_frame=2048, chunk=1024, max_text=1000)
    alice = await dial.open(server, "alice")
    await drain(alice, 0.1)
    sent = [without(await say(alice, "@alice", f"{i:03d}" + "x" * 300), "ref") for i in range(20)]
    collected: list[dict[str, Any]] = []
    before = None
    for _ in range(40):
        request: dict[str, Any] = {"type": "history", "with": "@alice", "limit": 20, "ref": "h"}
        if before is not None:
            request["before"] = before
        await alice.send(request)
        length, page = await recv_raw(alice)
        assert page["type"] == "history"
        assert page["ref"] == "h"
        assert length <= 2048
        ids = [m["id"] for m in page["messages"]]
        assert ids == sorted(ids)
        collected[:0] = page["messages"]
        if not page["more"]:
            break
        assert 0 < len(page["messages"]) < 20
        before = ids[0]
    assert collected == sent


@pytest.mark.parametrize("to", ["bob", "", "@", "#", "!bob", "@bo b"])
async def test_bad_address_is_refused_and_not_delivered(connect: Any, to: str) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await drain_all(alice, bob)
    reply = await say(alice, to, "hi", ref="addr")
    assert reply["type"] == "error", reply
    assert reply["ref"] == "addr"
    await bob.no_frame(0.3)


@pytest.mark.slow
async def test_replay_stops_at_the_newest_1000(connect: Any) -> None:
    bob = await connect("bob", PASSWORD)
    alice = await connect("alice")
    await bob.close()
    await wait_presence(alice, "bob", online=False)
    sent = [without(await say(alice, "@bob", f"m{i}"), "ref") for i in range(1005)]
    again = await connect()
    assert (await again.hello("bob", PASSWORD, last_seen=0))["type"] == "welcome"
    replay = [f for f in await drain(again, 1.0) if f["type"] == "message"]
    assert replay == sent[5:]
    # the older ones are there for history
    page = await again.request({"type": "history", "with": "@alice", "before": sent[5]["id"]})
    assert page["messages"] == sent[:5]
    assert page["more"] is False
