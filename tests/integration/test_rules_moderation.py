"""PROTOCOL.md "Groups" (owner, topic, kick) and "Administration" (admin, ban, unban,
registration, register), rule by rule, over real TLS."""

from __future__ import annotations

from typing import Any

import pytest
from tests.integration.helpers_rules import (
    PASSWORD,
    Dialer,
    assert_error,
    drain,
    drain_all,
    say,
)

pytestmark = pytest.mark.usefixtures("conformance")


# --- owner and topic -----------------------------------------------------------------------------


async def test_create_with_topic_shows_owner_and_topic(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await drain_all(alice, bob)
    joined = await alice.request(
        {"type": "create", "room": "Pub", "public": True, "topic": "deploys"}
    )
    assert joined["owner"] == "alice"
    assert joined["topic"] == "deploys"
    room = await bob.recv_type("room")
    assert room == {"type": "room", "room": "Pub", "public": True, "members": 1, "topic": "deploys"}
    joined = await bob.request({"type": "join", "room": "Pub"})
    assert (joined["owner"], joined["topic"]) == ("alice", "deploys")


async def test_topic_reaches_every_member_with_ref_for_the_setter(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    await alice.request({"type": "create", "room": "Den", "invite": ["bob"]})
    await bob.recv_type("invited")
    await bob.request({"type": "accept", "room": "Den"})
    await drain_all(alice, bob, carol)
    await bob.send({"type": "topic", "room": "Den", "topic": "ship it", "ref": "t1"})
    event = {"type": "topic", "room": "Den", "topic": "ship it", "by": "bob"}
    assert await bob.recv_match(ref="t1") == {**event, "ref": "t1"}
    assert await alice.recv_type("topic") == event
    assert not [f for f in await drain(carol, 0.2) if f["type"] == "topic"]
    assert_error(
        await carol.request({"type": "topic", "room": "Pub2", "topic": "x"}), "no_such_room"
    )
    assert_error(await alice.request({"type": "topic", "room": "Den", "topic": "x" * 301}),
                 "text_too_long")  # fmt: skip
    assert_error(
        await alice.request({"type": "topic", "room": "Den", "topic": "a\x07b"}), "bad_request"
    )
    rooms = await alice.request({"type": "rooms"})
    assert rooms["rooms"][0]["topic"] == "ship it"


async def test_topic_by_non_member_of_public_room_is_not_member(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await alice.request({"type": "create", "room": "Pub", "public": True})
    assert_error(await bob.request({"type": "topic", "room": "Pub", "topic": "mine"}), "not_member")


async def test_topic_and_owner_survive_a_restart(
    start_server: Any, dial: Dialer, tmp_path: Any
) -> None:
    data = tmp_path / "keep"
    server = await start_server(data_dir=data)
    alice = await dial.open(server, "alice", PASSWORD)
    bob = await dial.open(server, "bob", PASSWORD)
    await alice.request({"type": "create", "room": "Den", "invite": ["bob"], "topic": "t0"})
    await bob.recv_type("invited")
    await bob.request({"type": "accept", "room": "Den"})
    await alice.request({"type": "topic", "room": "Den", "topic": "kept"})
    await dial.close_all()
    await server.close()
    server = await start_server(data_dir=data)
    again = await dial.open(server, "bob", PASSWORD)
    room = again.welcome["rooms"][0]
    assert (room["owner"], room["topic"]) == ("alice", "kept")


async def test_ownership_passes_to_the_earliest_joiner(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    await alice.request({"type": "create", "room": "Pub", "public": True})
    await bob.request({"type": "join", "room": "Pub"})
    await carol.request({"type": "join", "room": "Pub"})
    await drain_all(alice, bob, carol)
    await alice.request({"type": "leave", "room": "Pub"})
    members = await carol.recv_type("members")
    assert members["owner"] == "bob"
    assert sorted(members["members"]) == ["bob", "carol"]
    # the new owner may kick; the others may not
    assert_error(await carol.request({"type": "kick", "room": "Pub", "nick": "bob"}), "forbidden")
    assert (await bob.request({"type": "kick", "room": "Pub", "nick": "carol"}))["type"] == "ok"


# --- kick ---------------------------------------------------------------------------------------


async def test_kick_from_public_room(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    await alice.request({"type": "create", "room": "Pub", "public": True})
    await bob.request({"type": "join", "room": "Pub"})
    await carol.request({"type": "join", "room": "Pub"})
    await drain_all(alice, bob, carol)

    await alice.send({"type": "kick", "room": "Pub", "nick": "BOB", "reason": "spam", "ref": "k1"})
    assert await alice.recv_match(ref="k1") == {"type": "ok", "ref": "k1"}
    assert await bob.recv_type("left") == {"type": "left", "room": "Pub", "by": "alice",
                                           "reason": "spam"}  # fmt: skip
    members = await carol.recv_type("members")
    assert sorted(members["members"]) == ["alice", "carol"]
    assert members["owner"] == "alice"
    assert_error(await say(bob, "#Pub", "still here?"), "not_member")
    # no rejoin for 10 minutes from a public room
    assert_error(await bob.request({"type": "join", "room": "Pub"}), "forbidden")
    # ...but an invitation still works
    assert (await alice.request({"type": "invite", "room": "Pub", "nick": "bob"}))["type"] == "ok"
    await bob.recv_type("invited")
    assert (await bob.request({"type": "accept", "room": "Pub"}))["type"] == "joined"


async def test_kick_refusals(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    await alice.request({"type": "create", "room": "Den", "invite": ["bob"]})
    await bob.recv_type("invited")
    await bob.request({"type": "accept", "room": "Den"})
    await drain_all(alice, bob, carol)
    assert_error(await bob.request({"type": "kick", "room": "Den", "nick": "alice"}), "forbidden")
    assert_error(await alice.request({"type": "kick", "room": "Den", "nick": "carol"}),
                 "not_member")  # fmt: skip
    # a private room is absent to outsiders
    assert_error(await carol.request({"type": "kick", "room": "Den", "nick": "bob"}),
                 "no_such_room")  # fmt: skip
    # kicked from a private room: no `left` reason member when none was given
    assert (await alice.request({"type": "kick", "room": "Den", "nick": "bob"}))["type"] == "ok"
    assert await bob.recv_type("left") == {"type": "left", "room": "Den", "by": "alice"}


# --- administration -----------------------------------------------------------------------------


async def test_admin_welcome_ban_unban(start_server: Any, dial: Dialer) -> None:
    server = await start_server(admin=("root",))
    root = await dial.open(server, "root", PASSWORD)
    assert root.welcome["admin"] is True
    bob1 = await dial.open(server, "bob", PASSWORD)
    bob2 = await dial.open(server, "bob", PASSWORD)
    assert bob1.welcome["admin"] is False
    carol = await dial.open(server, "carol")
    await drain_all(root, bob1, bob2, carol)

    assert_error(await carol.request({"type": "ban", "nick": "bob"}), "forbidden")
    assert_error(await root.request({"type": "ban", "nick": "root"}), "forbidden")
    ok = await root.request({"type": "ban", "nick": "bob", "reason": "abuse"})
    assert ok["type"] == "ok"
    for wire in (bob1, bob2):
        assert await wire.recv_type("bye") == {"type": "bye", "reason": "abuse"}
        assert await wire.closed_by_server()
    refused = await (await dial.open(server)).hello("bob", PASSWORD)
    assert_error(refused, "banned")
    # a guest nick can be banned too: the nick is reserved
    assert (await root.request({"type": "ban", "nick": "mallory"}))["type"] == "ok"
    assert_error(await (await dial.open(server)).hello("mallory"), "banned")

    assert (await root.request({"type": "unban", "nick": "bob"}))["type"] == "ok"
    back = await dial.open(server, "bob", PASSWORD)
    assert back.welcome["nick"] == "bob"


async def test_bans_are_stored(start_server: Any, dial: Dialer, tmp_path: Any) -> None:
    data = tmp_path / "keep"
    server = await start_server(data_dir=data, admin=("root",))
    root = await dial.open(server, "root", PASSWORD)
    assert (await root.request({"type": "ban", "nick": "eve"}))["type"] == "ok"
    await dial.close_all()
    await server.close()
    server = await start_server(data_dir=data, admin=("root",))
    assert_error(await (await dial.open(server)).hello("eve"), "banned")


async def test_closed_registration_and_admin_register(start_server: Any, dial: Dialer) -> None:
    server = await start_server(admin=("root",), registration="closed")
    # a nick named by --admin may register itself even when registration is closed
    root = await dial.open(server, "root", PASSWORD)
    assert root.welcome["admin"] is True
    assert_error(await (await dial.open(server)).hello("dave", PASSWORD), "registration_closed")
    # guests are governed by --require-password alone
    guest = await dial.open(server, "gus")
    assert_error(await guest.request({"type": "register", "nick": "x1", "password": "p"}),
                 "forbidden")  # fmt: skip
    assert (await root.request({"type": "register", "nick": "dave", "password": PASSWORD}))[
        "type"
    ] == "ok"
    assert_error(
        await root.request({"type": "register", "nick": "Dave", "password": "other"}),
        "nick_taken",
    )
    # a guest's nick (online, or within its hold) is taken too
    assert_error(
        await root.request({"type": "register", "nick": "GUS", "password": "other"}),
        "nick_taken",
    )
    dave = await dial.open(server, "dave", PASSWORD)
    assert dave.welcome["nick"] == "dave"
    assert_error(await (await dial.open(server)).hello("dave", "wrong"), "auth_failed")


async def test_admin_may_kick_in_any_room(start_server: Any, dial: Dialer) -> None:
    server = await start_server(admin=("root",))
    root = await dial.open(server, "root", PASSWORD)
    alice = await dial.open(server, "alice")
    bob = await dial.open(server, "bob")
    await alice.request({"type": "create", "room": "Den", "invite": ["bob"]})
    await bob.recv_type("invited")
    await bob.request({"type": "accept", "room": "Den"})
    await drain_all(root, alice, bob)
    assert (await root.request({"type": "kick", "room": "Den", "nick": "bob"}))["type"] == "ok"
    assert await bob.recv_type("left") == {"type": "left", "room": "Den", "by": "root"}
    members = await alice.recv_type("members")
    assert members["members"] == ["alice"]


async def test_kick_no_rejoin_survives_a_restart(
    start_server: Any, dial: Dialer, tmp_path: Any
) -> None:
    data = tmp_path / "keep"
    server = await start_server(data_dir=data)
    alice = await dial.open(server, "alice", PASSWORD)
    bob = await dial.open(server, "bob", PASSWORD)
    carol = await dial.open(server, "carol", PASSWORD)
    await alice.request({"type": "create", "room": "Pub", "public": True})
    await bob.request({"type": "join", "room": "Pub"})
    await carol.request({"type": "join", "room": "Pub"})
    assert (await alice.request({"type": "kick", "room": "Pub", "nick": "bob"}))["type"] == "ok"
    await dial.close_all()
    await server.close()
    server = await start_server(data_dir=data)
    bob = await dial.open(server, "bob", PASSWORD)
    assert_error(await bob.request({"type": "join", "room": "Pub"}), "forbidden")
    carol = await dial.open(server, "carol", PASSWORD)
    assert (await carol.request({"type": "leave", "room": "Pub"}))["type"] == "left"
