"""The room registry with plain calls: no sockets, no loop."""

from __future__ import annotations

from tlschat.server.registry import Invitation, Registry, Room, User


def test_rooms_are_case_insensitive_but_keep_their_spelling() -> None:
    registry = Registry()
    room = Room(name="Ops", public=False)
    registry.add_room(room)
    assert registry.room("OPS") is room
    assert room.address == "#Ops"


def test_guest_identity_is_unique_per_login() -> None:
    first = User(nick="guest", registered=False)
    second = User(nick="guest", registered=False)
    account = User(nick="Guest", registered=True)
    assert first.identity != second.identity
    assert account.identity == "guest"
    assert not first.identity.startswith("guest")


def test_membership_and_rooms_of() -> None:
    registry = Registry()
    room = Room(name="team", public=True)
    registry.add_room(room)
    registry.add_member(room, "Alice", 5)
    registry.add_member(room, "bob", 7)
    assert room.member_names() == ("Alice", "bob")
    assert room.joined_after["alice"] == 5
    assert registry.rooms_of("ALICE") == [room]
    assert registry.public_rooms() == [room]
    registry.remove_member(room, "alice")
    assert registry.rooms_of("alice") == []
    assert room.member_names() == ("bob",)
    registry.remove_room(room)
    assert registry.room("team") is None
    assert registry.rooms_of("bob") == []


def test_accepting_clears_the_invitation() -> None:
    registry = Registry()
    room = Room(name="r", public=False)
    registry.add_room(room)
    room.invites["carol"] = Invitation(nick="carol", by="alice", created=100.0)
    assert [r for r, _ in registry.invitations_for("Carol", now=101.0, ttl=60)] == [room]
    registry.add_member(room, "carol", 0)
    assert registry.invitations_for("carol", now=101.0, ttl=60) == []


def test_invitations_expire() -> None:
    registry = Registry()
    room = Room(name="r", public=False)
    registry.add_room(room)
    room.invites["old"] = Invitation(nick="old", by="a", created=0.0)
    room.invites["new"] = Invitation(nick="new", by="a", created=50.0)
    assert registry.invitations_for("old", now=100.0, ttl=60) == []
    assert len(registry.invitations_for("new", now=100.0, ttl=60)) == 1
    dropped = registry.expire_invitations(now=100.0, ttl=60)
    assert dropped == [(room, "old")]
    assert set(room.invites) == {"new"}
