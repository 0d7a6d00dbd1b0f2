"""PROTOCOL.md "Groups" (create, invite, answer, public rooms, leave), rule by rule, over real TLS."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.integration.helpers_rules import (
    PASSWORD,
    Dialer,
    assert_error,
    drain,
    drain_all,
    say,
    wait_presence,
)

pytestmark = pytest.mark.usefixtures("conformance")


def norm(frame: dict[str, Any]) -> dict[str, Any]:
    """Member lists compared as sets (their order is not part of the contract)."""
    out = dict(frame)
    if isinstance(out.get("members"), list):
        out["members"] = sorted(out["members"], key=str.lower)
    return out


def only(frames: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [norm(f) for f in frames if f["type"] == kind]


# --- create -------------------------------------------------------------------------------------


async def test_create_replies_joined_with_ref(connect: Any) -> None:
    alice = await connect("alice")
    await drain(alice, 0.1)
    await alice.send({"type": "create", "room": "Den", "ref": "c1"})
    assert await alice.recv_match(ref="c1") == {
        "type": "joined",
        "room": "Den",
        "members": ["alice"],
        "public": False,
        "ref": "c1",
    }


async def test_create_public_replies_joined_public(connect: Any) -> None:
    alice = await connect("alice")
    await drain(alice, 0.1)
    joined = await alice.request({"type": "create", "room": "Pub", "public": True})
    assert joined["type"] == "joined"
    assert joined["public"] is True
    assert joined["members"] == ["alice"]


@pytest.mark.parametrize("second", ["Den", "den", "DEN"])
async def test_room_exists(connect: Any, second: str) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    assert (await alice.request({"type": "create", "room": "Den"}))["type"] == "joined"
    assert_error(await bob.request({"type": "create", "room": second}), "room_exists")
    assert_error(await alice.request({"type": "create", "room": second}), "room_exists")


async def test_private_room_name_taken_is_room_exists_even_for_outsiders(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    assert (await alice.request({"type": "create", "room": "Hidden"}))["type"] == "joined"
    assert_error(await bob.request({"type": "create", "room": "hidden"}), "room_exists")


@pytest.mark.parametrize("room", ["", "x" * 33, ".dot", "-dash", "a b", "é", "#den", "a/b"])
async def test_room_invalid(connect: Any, room: str) -> None:
    alice = await connect("alice")
    assert_error(await alice.request({"type": "create", "room": room}), "room_invalid")


async def test_room_name_32_characters_is_valid(connect: Any) -> None:
    alice = await connect("alice")
    joined = await alice.request({"type": "create", "room": "r" * 32})
    assert joined["type"] == "joined"


async def test_create_with_invite_list(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    await drain_all(alice, bob, carol)
    joined = await alice.request({"type": "create", "room": "Den", "invite": ["bob", "Carol"]})
    assert joined["type"] == "joined"
    assert joined["members"] == ["alice"]
    for wire in (bob, carol):
        invited = await wire.recv_type("invited")
        assert norm(invited) == {
            "type": "invited",
            "room": "Den",
            "by": "alice",
            "members": ["alice"],
        }


# --- invite -------------------------------------------------------------------------------------


async def test_invite_online_user_every_session(connect: Any) -> None:
    alice = await connect("alice")
    b1 = await connect("bob", PASSWORD)
    b2 = await connect("bob", PASSWORD)
    await alice.request({"type": "create", "room": "Den"})
    await drain_all(alice, b1, b2)
    await alice.send({"type": "invite", "room": "Den", "nick": "bob", "ref": "i1"})
    assert await alice.recv() == {"type": "ok", "ref": "i1"}
    expected = {"type": "invited", "room": "Den", "by": "alice", "members": ["alice"]}
    for session in (b1, b2):
        assert await session.recv() == expected
        await session.no_frame(0.2)
    await alice.no_frame(0.1)


async def test_invite_offline_registered_user_shown_in_next_welcome(connect: Any) -> None:
    bob = await connect("bob", PASSWORD)
    alice = await connect("alice")
    await bob.close()
    await wait_presence(alice, "bob", online=False)
    await alice.request({"type": "create", "room": "Den"})
    assert (await alice.request({"type": "invite", "room": "Den", "nick": "Bob"}))["type"] == "ok"
    again = await connect()
    welcome = await again.hello("bob", PASSWORD)
    assert welcome["invites"] == [{"room": "Den", "by": "alice"}]
    joined = await again.request({"type": "accept", "room": "Den"})
    assert norm(joined) == {
        "type": "joined",
        "room": "Den",
        "members": ["alice", "bob"],
        "public": False,
        "ref": joined["ref"],
    }


async def test_invite_by_non_member_is_not_member(connect: Any) -> None:
    """A public room: an outsider who may see it is told it is not a member; a private room is
    answered to outsiders as if it did not exist (PROTOCOL.md "Groups")."""
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    await alice.request({"type": "create", "room": "Den"})
    await alice.request({"type": "create", "room": "Hall", "public": True})
    await drain_all(alice, bob, carol)
    assert_error(
        await carol.request({"type": "invite", "room": "Hall", "nick": "bob"}), "not_member"
    )
    assert_error(
        await carol.request({"type": "invite", "room": "Den", "nick": "bob"}), "no_such_room"
    )
    await bob.no_frame(0.3)


async def test_invite_unknown_user_is_no_such_user(connect: Any) -> None:
    alice = await connect("alice")
    await alice.request({"type": "create", "room": "Den"})
    assert_error(
        await alice.request({"type": "invite", "room": "Den", "nick": "ghost"}), "no_such_user"
    )


async def test_invite_member_is_already_member(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await alice.request({"type": "create", "room": "Den", "invite": ["bob"]})
    await bob.recv_type("invited")
    await bob.request({"type": "accept", "room": "Den"})
    for nick in ("alice", "bob", "BOB"):
        assert_error(
            await alice.request({"type": "invite", "room": "Den", "nick": nick}), "already_member"
        )


# --- accept / decline ---------------------------------------------------------------------------


async def test_accept(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    outsider = await connect("dave")
    await alice.request({"type": "create", "room": "Den", "invite": ["bob", "carol"]})
    await carol.recv_type("invited")
    await carol.request({"type": "accept", "room": "Den"})
    await drain_all(alice, bob, carol, outsider)

    await bob.send({"type": "accept", "room": "Den", "ref": "a1"})
    bob_frames = await drain(bob, 0.4)
    assert only(bob_frames, "joined") == [
        {
            "type": "joined",
            "room": "Den",
            "members": ["alice", "bob", "carol"],
            "public": False,
            "ref": "a1",
        }
    ]
    members = {"type": "members", "room": "Den", "members": ["alice", "bob", "carol"]}
    assert only(bob_frames, "members") == [members]
    for wire in (alice, carol):
        assert [norm(f) for f in await drain(wire, 0.3)] == [members]
    await outsider.no_frame(0.1)
    # the invitation is used up
    assert_error(await bob.request({"type": "accept", "room": "Den"}), "no_invite")


async def test_decline(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await alice.request({"type": "create", "room": "Den", "invite": ["bob"]})
    await drain_all(alice, bob)
    await bob.send({"type": "decline", "room": "Den", "ref": "d1"})
    assert await bob.recv() == {"type": "ok", "ref": "d1"}
    assert await alice.recv() == {"type": "declined", "room": "Den", "nick": "bob"}
    await bob.no_frame(0.2)
    await alice.no_frame(0.1)
    assert_error(await bob.request({"type": "accept", "room": "Den"}), "no_invite")
    assert_error(await bob.request({"type": "decline", "room": "Den"}), "no_invite")


async def test_no_invite(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await alice.request({"type": "create", "room": "Den"})
    await drain_all(alice, bob)
    assert_error(await bob.request({"type": "accept", "room": "Den"}), "no_invite")
    assert_error(await bob.request({"type": "decline", "room": "Den"}), "no_invite")
    assert_error(await bob.request({"type": "accept", "room": "Nowhere"}), "no_invite")
    await alice.no_frame(0.2)


# --- public rooms -------------------------------------------------------------------------------


async def test_public_room_lifecycle_events(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")  # never a member
    guest = await connect()  # not logged in: receives nothing
    await drain_all(alice, bob, carol)

    await alice.request({"type": "create", "room": "Pub", "public": True})
    appeared = {"type": "room", "room": "Pub", "public": True, "members": 1}
    for wire in (alice, bob, carol):
        assert appeared in await drain(wire, 0.3)

    await bob.send({"type": "join", "room": "pub", "ref": "j1"})
    bob_frames = await drain(bob, 0.4)
    assert only(bob_frames, "joined") == [
        {"type": "joined", "room": "Pub", "members": ["alice", "bob"], "public": True, "ref": "j1"}
    ]
    members = {"type": "members", "room": "Pub", "members": ["alice", "bob"]}
    assert only(bob_frames, "members") == [members]
    grown = {"type": "room", "room": "Pub", "public": True, "members": 2}
    assert only(bob_frames, "room") == [grown]
    alice_frames = await drain(alice, 0.2)
    assert only(alice_frames, "members") == [members]
    assert only(alice_frames, "room") == [grown]
    assert await drain(carol, 0.2) == [grown]

    await bob.send({"type": "leave", "room": "Pub", "ref": "l1"})
    bob_frames = await drain(bob, 0.4)
    assert only(bob_frames, "left") == [{"type": "left", "room": "Pub", "ref": "l1"}]
    assert only(bob_frames, "members") == []
    shrunk = {"type": "room", "room": "Pub", "public": True, "members": 1}
    alice_frames = await drain(alice, 0.2)
    assert only(alice_frames, "members") == [
        {"type": "members", "room": "Pub", "members": ["alice"]}
    ]
    assert only(alice_frames, "room") == [shrunk]
    assert await drain(carol, 0.2) == [shrunk]

    await alice.request({"type": "leave", "room": "Pub"})
    gone = {"type": "room", "room": "Pub", "public": True, "members": 0}
    assert gone in await drain(alice, 0.3)
    assert await drain(bob, 0.2) == [gone]
    assert await drain(carol, 0.2) == [gone]
    await guest.no_frame(0.1)


async def test_private_room_is_never_announced(connect: Any) -> None:
    alice = await connect("alice")
    carol = await connect("carol")
    await drain_all(alice, carol)
    await alice.request({"type": "create", "room": "Den"})
    await carol.no_frame(0.3)
    rooms = await carol.request({"type": "rooms"})
    assert rooms["rooms"] == []
    assert rooms["public_rooms"] == []


async def test_join_private_or_missing_room_is_no_such_room(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await alice.request({"type": "create", "room": "Den"})
    await drain_all(alice, bob)
    assert_error(await bob.request({"type": "join", "room": "Den"}), "no_such_room")
    assert_error(await bob.request({"type": "join", "room": "Nowhere"}), "no_such_room")
    await alice.no_frame(0.2)


async def test_join_private_room_even_when_invited_is_no_such_room(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await alice.request({"type": "create", "room": "Den", "invite": ["bob"]})
    await bob.recv_type("invited")
    assert_error(await bob.request({"type": "join", "room": "Den"}), "no_such_room")


async def test_join_when_already_member(connect: Any) -> None:
    alice = await connect("alice")
    await alice.request({"type": "create", "room": "Pub", "public": True})
    assert_error(await alice.request({"type": "join", "room": "Pub"}), "already_member")


async def test_rooms_and_users_requests(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await alice.request({"type": "create", "room": "Den", "invite": ["bob"]})
    await bob.recv_type("invited")
    await bob.request({"type": "accept", "room": "Den"})
    await bob.request({"type": "create", "room": "Pub", "public": True})
    await drain_all(alice, bob)
    rooms = await alice.request({"type": "rooms"})
    assert rooms["type"] == "rooms"
    assert [norm(r) for r in rooms["rooms"]] == [
        {"room": "Den", "members": ["alice", "bob"], "public": False}
    ]
    assert rooms["public_rooms"] == [{"room": "Pub", "members": 1}]
    users = await alice.request({"type": "users"})
    assert users["type"] == "users"
    assert sorted(users["users"], key=lambda u: u["nick"]) == [
        {"nick": "alice", "online": True},
        {"nick": "bob", "online": True},
    ]


# --- leave --------------------------------------------------------------------------------------


async def test_leave(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    await alice.request({"type": "create", "room": "Den", "invite": ["bob", "carol"]})
    for wire in (bob, carol):
        await wire.recv_type("invited")
        await wire.request({"type": "accept", "room": "Den"})
    await drain_all(alice, bob, carol)
    await bob.send({"type": "leave", "room": "Den", "ref": "l"})
    assert await drain(bob, 0.4) == [{"type": "left", "room": "Den", "ref": "l"}]
    members = {"type": "members", "room": "Den", "members": ["alice", "carol"]}
    for wire in (alice, carol):
        assert [norm(f) for f in await drain(wire, 0.2)] == [members]
    # Den is private: once out, bob is an outsider and Den answers as absent.
    assert_error(await say(bob, "#Den", "hi"), "no_such_room")
    assert_error(await bob.request({"type": "leave", "room": "Den"}), "no_such_room")


async def test_last_member_leaving_deletes_room_and_history(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await alice.request({"type": "create", "room": "Den"})
    await say(alice, "#Den", "old secret")
    assert (await alice.request({"type": "leave", "room": "Den"}))["type"] == "left"
    assert_error(await say(alice, "#Den", "x"), "no_such_room")
    joined = await bob.request({"type": "create", "room": "den"})
    assert joined["type"] == "joined"
    assert joined["room"] == "den"
    history = await bob.request({"type": "history", "with": "#den"})
    assert history["messages"] == []
    assert history["more"] is False


async def test_guest_memberships_end_with_its_connection(connect: Any) -> None:
    alice = await connect("alice")
    gus = await connect("gus")
    await alice.request({"type": "create", "room": "Den", "invite": ["gus"]})
    await gus.recv_type("invited")
    await gus.request({"type": "accept", "room": "Den"})
    await gus.request({"type": "create", "room": "GusOnly"})
    await drain_all(alice, gus)
    await gus.close()
    frames = await drain(alice, 0.5)
    assert {"type": "members", "room": "Den", "members": ["alice"]} in frames
    again = await connect("gus")
    assert again.welcome["rooms"] == []
    assert (await alice.request({"type": "create", "room": "GusOnly"}))["type"] == "joined"


async def test_registered_membership_survives_disconnect(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob", PASSWORD)
    await alice.request({"type": "create", "room": "Den", "invite": ["bob"]})
    await bob.recv_type("invited")
    await bob.request({"type": "accept", "room": "Den"})
    await bob.close()
    await wait_presence(alice, "bob", online=False)
    again = await connect("bob", PASSWORD)
    assert [norm(r) for r in again.welcome["rooms"]] == [
        {"room": "Den", "members": ["alice", "bob"], "public": False}
    ]


async def test_pending_invite_to_a_deleted_room_disappears(connect: Any) -> None:
    bob = await connect("bob", PASSWORD)
    alice = await connect("alice")
    await alice.request({"type": "create", "room": "Den", "invite": ["bob"]})
    await bob.recv_type("invited")
    await alice.request({"type": "leave", "room": "Den"})
    assert_error(await bob.request({"type": "accept", "room": "Den"}), "no_invite")


# --- limits on groups ---------------------------------------------------------------------------


async def test_max_members(start_server: Any, dial: Dialer) -> None:
    server = await start_server(max_members=2)
    alice = await dial.open(server, "alice")
    bob = await dial.open(server, "bob")
    carol = await dial.open(server, "carol")
    await alice.request({"type": "create", "room": "Pub", "public": True, "invite": ["bob"]})
    await bob.recv_type("invited")
    assert (await bob.request({"type": "accept", "room": "Pub"}))["type"] == "joined"
    await drain_all(alice, bob, carol)
    refused = await carol.request({"type": "join", "room": "Pub"})
    assert refused["type"] == "error", refused
    await alice.no_frame(0.3)  # no members event: nobody joined
    refused = await alice.request({"type": "invite", "room": "Pub", "nick": "carol"})
    if refused["type"] == "ok":  # an invitation may be sent, but cannot be accepted
        await carol.recv_type("invited")
        refused = await carol.request({"type": "accept", "room": "Pub"})
    assert refused["type"] == "error", refused
    rooms = await carol.request({"type": "rooms"})
    assert rooms["public_rooms"] == [{"room": "Pub", "members": 2}]
    assert rooms["rooms"] == []


async def test_invitations_expire(start_server: Any, dial: Dialer) -> None:
    server = await start_server(invite_ttl=0.5)
    alice = await dial.open(server, "alice")
    bob = await dial.open(server, "bob")
    carol = await dial.open(server, "carol", PASSWORD)
    await carol.close()
    await alice.request({"type": "create", "room": "Den", "invite": ["bob", "carol"]})
    await bob.recv_type("invited")
    await asyncio.sleep(1.0)
    assert_error(await bob.request({"type": "accept", "room": "Den"}), "no_invite")
    again = await dial.open(server, "carol", PASSWORD)
    assert again.welcome["invites"] == []
    assert_error(await again.request({"type": "accept", "room": "Den"}), "no_invite")


async def test_max_rooms_per_user(start_server: Any, dial: Dialer) -> None:
    server = await start_server(max_rooms_per_user=2)
    alice = await dial.open(server, "alice")
    bob = await dial.open(server, "bob")
    await bob.request({"type": "create", "room": "Pub", "public": True, "invite": ["alice"]})
    for room in ("R1", "R2"):
        assert (await alice.request({"type": "create", "room": room}))["type"] == "joined"
    assert (await alice.request({"type": "create", "room": "R3"}))["type"] == "error"
    assert (await alice.request({"type": "join", "room": "Pub"}))["type"] == "error"
    await alice.recv_type("invited")
    assert (await alice.request({"type": "accept", "room": "Pub"}))["type"] == "error"
    rooms = await alice.request({"type": "rooms"})
    assert sorted(r["room"] for r in rooms["rooms"]) == ["R1", "R2"]


async def test_group_events_reach_every_session_of_the_user(connect: Any) -> None:
    a1 = await connect("alice", PASSWORD)
    a2 = await connect("alice", PASSWORD)
    bob = await connect("bob")
    await drain_all(a1, a2, bob)
    await a1.send({"type": "create", "room": "Den", "ref": "c"})
    assert await a1.recv_match(ref="c") == {
        "type": "joined", "room": "Den", "members": ["alice"], "public": False, "ref": "c",
    }  # fmt: skip
    assert await a2.recv_type("joined") == {
        "type": "joined", "room": "Den", "members": ["alice"], "public": False,
    }  # fmt: skip
    await a1.request({"type": "invite", "room": "Den", "nick": "bob"})
    await bob.recv_type("invited")
    await bob.request({"type": "decline", "room": "Den"})
    for session in (a1, a2):
        assert await session.recv_type("declined") == {
            "type": "declined", "room": "Den", "nick": "bob",
        }  # fmt: skip
    await a2.send({"type": "leave", "room": "Den", "ref": "l"})
    assert await a2.recv_match(ref="l") == {"type": "left", "room": "Den", "ref": "l"}
    assert await a1.recv_type("left") == {"type": "left", "room": "Den"}


async def test_guest_leaving_changes_public_room_size(connect: Any) -> None:
    alice = await connect("alice")
    watcher = await connect("watcher")
    gus = await connect("gus")
    await alice.request({"type": "create", "room": "Pub", "public": True})
    await gus.request({"type": "join", "room": "Pub"})
    await gus.request({"type": "create", "room": "GusPub", "public": True})
    await drain_all(alice, watcher, gus)
    await gus.close()
    shrunk = {"type": "room", "room": "Pub", "public": True, "members": 1}
    gone = {"type": "room", "room": "GusPub", "public": True, "members": 0}
    alice_frames = await drain(alice, 0.5)
    assert shrunk in alice_frames
    assert gone in alice_frames
    assert {"type": "members", "room": "Pub", "members": ["alice"]} in alice_frames
    watcher_frames = await drain(watcher, 0.2)
    assert shrunk in watcher_frames
    assert gone in watcher_frames
