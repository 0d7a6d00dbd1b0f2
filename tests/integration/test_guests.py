"""PROTOCOL.md "Session" → Guests (the hold) and "Conversations and read markers", over real TLS."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.integration.helpers_rules import Dialer, assert_error, drain, drain_all, say

PASSWORD = "correct horse battery staple"
pytestmark = pytest.mark.usefixtures("conformance")


async def _guest_in_two_groups(server: Any, dial: Dialer) -> tuple[Any, Any, str]:
    """bob (registered) and guest alice in #one and #two; alice's resume token."""
    bob = await dial.open(server, "bob", PASSWORD)
    alice = await dial.open(server, "alice")
    token = alice.welcome["resume"]
    assert isinstance(token, str)
    assert 1 <= len(token) <= 64
    for room in ("one", "two"):
        await bob.request({"type": "create", "room": room, "invite": ["alice"]})
        await alice.recv_type("invited")
        assert (await alice.request({"type": "accept", "room": room}))["type"] == "joined"
    await drain_all(alice, bob)
    return alice, bob, token


async def test_a_guest_gets_a_token_and_registered_users_none(server: Any, dial: Dialer) -> None:
    guest = await dial.open(server, "ghost")
    account = await dial.open(server, "owner", PASSWORD)
    assert guest.welcome["resume"]
    assert "resume" not in account.welcome


async def test_welcome_limits_say_the_guest_hold(start_server: Any, dial: Dialer) -> None:
    server = await start_server(guest_hold=90.0)
    gus = await dial.open(server, "gus")
    assert gus.welcome["limits"]["guest_hold"] == 90  # type: ignore[attr-defined]


async def test_a_guest_survives_a_dropped_connection(server: Any, dial: Dialer) -> None:
    alice, bob, token = await _guest_in_two_groups(server, dial)
    seen = (await say(bob, "#one", "before"))["id"]
    await alice.recv_type("message")
    await alice.close()
    await bob.recv_type("presence")  # alice went offline (not gone)
    # While alice is away: a group message and a DM are kept for her.
    missed_room = await say(bob, "#two", "while you were away")
    missed_dm = await say(bob, "@alice", "a direct one")
    back = await dial.open(server)
    welcome = await back.hello("alice", resume=token, last_seen=seen)
    assert welcome["type"] == "welcome"
    assert welcome["resume"] != token  # a new token each time
    assert {r["room"] for r in welcome["rooms"]} == {"one", "two"}
    replayed = [await back.recv_type("message") for _ in range(2)]
    assert [m["id"] for m in replayed] == [missed_room["id"], missed_dm["id"]]
    page = await back.request({"type": "history", "with": "@bob"})
    assert [m["text"] for m in page["messages"]] == ["a direct one"]


async def test_a_guest_survives_a_server_restart(start_server: Any, dial: Dialer) -> None:
    server = await start_server()
    _, bob, token = await _guest_in_two_groups(server, dial)
    await say(bob, "@alice", "remember me")
    await dial.close_all()
    await server.close()
    again = await start_server()
    back = await dial.open(again)
    welcome = await back.hello("alice", resume=token)
    assert welcome["type"] == "welcome", welcome
    assert {r["room"] for r in welcome["rooms"]} == {"one", "two"}
    page = await back.request({"type": "history", "with": "@bob"})
    assert [m["text"] for m in page["messages"]] == ["remember me"]
    assert (await say(back, "#one", "still here"))["type"] == "message"


async def test_the_nick_is_held_against_anyone_without_the_latest_token(
    server: Any, dial: Dialer
) -> None:
    alice = await dial.open(server, "alice")
    old_token = alice.welcome["resume"]
    await alice.close()
    back = await dial.open(server)
    welcome = await back.hello("alice", resume=old_token)
    assert welcome["type"] == "welcome"
    await back.close()
    intruder = await dial.open(server)
    assert_error(await intruder.hello("alice"), "nick_taken")
    assert_error(await intruder.hello("alice", resume=old_token), "nick_taken")  # spent
    assert_error(await intruder.hello("alice", resume="x" * 43), "nick_taken")
    assert_error(await intruder.hello("alice", PASSWORD), "nick_taken")  # no registering it
    # And while the guest is online, even its token is refused.
    online = await dial.open(server)
    assert (await online.hello("alice", resume=welcome["resume"]))["type"] == "welcome"
    second = await dial.open(server)
    assert_error(await second.hello("alice", resume=welcome["resume"]), "nick_taken")


async def test_wrong_tokens_count_as_failed_logins(start_server: Any, dial: Dialer) -> None:
    server = await start_server(max_login_failures=2)
    alice = await dial.open(server, "alice")
    await alice.close()
    guesser = await dial.open(server)
    for n in range(2):
        assert_error(await guesser.hello("alice", resume=f"guess{n}"), "nick_taken")
    assert_error(await guesser.hello("alice", resume="guess"), "rate_limited")


async def test_when_the_hold_ends_the_guest_is_gone(start_server: Any, dial: Dialer) -> None:
    server = await start_server(guest_hold=0.5)
    alice, bob, token = await _guest_in_two_groups(server, dial)
    carol = await dial.open(server, "carol")
    await say(bob, "@alice", "a secret for the first alice")
    await bob.request({"type": "create", "room": "three"})
    await bob.request({"type": "invite", "room": "three", "nick": "alice"})
    await drain_all(alice, bob, carol)
    await alice.close()
    gone = await bob.recv_match(5, type="presence", gone=True)
    assert gone == {"type": "presence", "nick": "alice", "online": False, "gone": True}
    await carol.recv_match(5, type="presence", gone=True)
    frames = await drain(bob, 0.3)
    members = {f["room"]: f["members"] for f in frames if f["type"] == "members"}
    assert members == {"one": ["bob"], "two": ["bob"]}
    # The nick is free, and the new alice is someone else.
    new = await dial.open(server)
    welcome = await new.hello("alice", resume=token)
    assert welcome["type"] == "welcome"
    assert welcome["rooms"] == []
    assert welcome["invites"] == []
    page = await new.request({"type": "history", "with": "@bob"})
    assert page["messages"] == []
    assert_error(await new.request({"type": "accept", "room": "three"}), "no_invite")


async def test_a_hold_that_ended_while_the_server_was_down_ends_at_start(
    start_server: Any, dial: Dialer
) -> None:
    server = await start_server(guest_hold=0.3)
    await _guest_in_two_groups(server, dial)
    await dial.close_all()
    await server.close()
    await asyncio.sleep(0.6)
    again = await start_server(guest_hold=0.3)
    bob = await dial.open(again, "bob", PASSWORD)
    rooms = {r["room"]: r["members"] for r in bob.welcome["rooms"]}
    assert rooms == {"one": ["bob"], "two": ["bob"]}
    assert "alice" not in {u["nick"] for u in bob.welcome["users"]}


# --- conversations and read markers -----------------------------------------------------------


async def test_conversations_list_the_newest_first_with_unread_counts(
    server: Any, dial: Dialer
) -> None:
    alice = await dial.open(server, "alice", PASSWORD)
    bob = await dial.open(server, "bob", PASSWORD)
    await alice.request({"type": "create", "room": "team", "invite": ["bob"]})
    await bob.recv_type("invited")
    await bob.request({"type": "accept", "room": "team"})
    await drain_all(alice, bob)
    await say(bob, "@alice", "one")
    await say(bob, "@alice", "two")
    await say(alice, "@bob", "mine does not count")
    last = await say(bob, "#team", "in the room")
    await say(alice, "@alice", "note to self")
    reply = await alice.request({"type": "conversations"})
    convs = reply["conversations"]
    assert [c["with"] for c in convs] == ["@alice", "#team", "@bob"]
    by = {c["with"]: c for c in convs}
    assert by["@bob"]["unread"] == 2
    assert by["@bob"]["read"] == 0
    assert by["#team"] == {"with": "#team", "last_id": last["id"], "read": 0, "unread": 1}
    assert by["@alice"]["unread"] == 0
    # welcome carries the same list
    again = await dial.open(server, "alice", PASSWORD)
    assert again.welcome["conversations"] == convs


async def test_read_markers_sync_to_other_sessions_and_never_move_back(
    start_server: Any, dial: Dialer
) -> None:
    server = await start_server()
    alice = await dial.open(server, "alice", PASSWORD)
    phone = await dial.open(server, "alice", PASSWORD)
    bob = await dial.open(server, "bob", PASSWORD)
    await drain_all(alice, phone, bob)
    first = await say(bob, "@alice", "one")
    second = await say(bob, "@alice", "two")
    await drain_all(alice, phone)
    ok = await alice.request({"type": "read", "with": "@bob", "id": second["id"]})
    assert ok["type"] == "ok"
    assert await phone.recv_type("read") == {"type": "read", "with": "@bob", "id": second["id"]}
    assert await drain(bob, 0.3) == []  # never shown to anyone else
    assert (await alice.request({"type": "read", "with": "@bob", "id": first["id"]}))[
        "type"
    ] == "ok"
    assert await drain(phone, 0.3) == []  # it did not move back
    convs = (await phone.request({"type": "conversations"}))["conversations"]
    assert convs[0] == {"with": "@bob", "last_id": second["id"], "read": second["id"], "unread": 0}
    await dial.close_all()
    await server.close()
    again = await start_server()
    back = await dial.open(again, "alice", PASSWORD)
    assert back.welcome["conversations"][0]["read"] == second["id"]


async def test_read_follows_the_reading_rules(connect: Any) -> None:
    alice = await connect("alice")
    await connect("bob")
    assert_error(await alice.request({"type": "read", "with": "@nobody", "id": 1}), "no_such_user")
    assert_error(await alice.request({"type": "read", "with": "#nowhere", "id": 1}), "no_such_room")
    assert_error(await alice.request({"type": "read", "with": "@bob", "id": 2**53}), "bad_request")


async def test_conversations_ignore_edit_and_delete_entries(server: Any, dial: Dialer) -> None:
    """PROTOCOL.md "Edit and delete": `last_id` and unread counts ignore the edit and delete
    entries (new ids in the message sequence), and a deleted message is not unread."""
    alice = await dial.open(server, "alice", PASSWORD)
    bob = await dial.open(server, "bob", PASSWORD)
    await alice.request({"type": "create", "room": "team", "invite": ["bob"]})
    await bob.recv_type("invited")
    await bob.request({"type": "accept", "room": "team"})
    await drain_all(alice, bob)
    mine = await say(alice, "@bob", "mine")
    one = await say(bob, "@alice", "one")
    two = await say(bob, "@alice", "two")
    three = await say(bob, "@alice", "three")
    first = await say(bob, "#team", "first")
    second = await say(bob, "#team", "second")
    changes = [
        await bob.request({"type": "edit", "id": one["id"], "text": "one, edited"}),
        await bob.request({"type": "edit", "id": three["id"], "text": "three, edited"}),
        await bob.request({"type": "delete", "id": two["id"]}),
        await alice.request({"type": "edit", "id": mine["id"], "text": "mine, edited"}),
        await bob.request({"type": "edit", "id": second["id"], "text": "second, edited"}),
        await bob.request({"type": "delete", "id": first["id"]}),
    ]
    assert all(c["type"] == "message" for c in changes), changes
    assert min(c["id"] for c in changes) > second["id"]  # entries are newer than every message
    await drain_all(alice, bob)
    by = {c["with"]: c for c in (await alice.request({"type": "conversations"}))["conversations"]}
    assert by["@bob"] == {"with": "@bob", "last_id": three["id"], "read": 0, "unread": 2}
    assert by["#team"] == {"with": "#team", "last_id": second["id"], "read": 0, "unread": 1}
    ok = await alice.request({"type": "read", "with": "@bob", "id": one["id"]})
    assert ok["type"] == "ok"
    by = {c["with"]: c for c in (await alice.request({"type": "conversations"}))["conversations"]}
    assert by["@bob"]["unread"] == 1  # three; two is deleted, the entries are no messages
    # bob's view: alice's edit entry is not newer news either
    theirs = {c["with"]: c for c in (await bob.request({"type": "conversations"}))["conversations"]}
    assert theirs["@alice"] == {"with": "@alice", "last_id": three["id"], "read": 0, "unread": 1}
    # and welcome carries the same
    again = await dial.open(server, "alice", PASSWORD)
    assert {c["with"]: c for c in again.welcome["conversations"]}["#team"]["last_id"] == second[
        "id"
    ]


async def test_a_held_guest_edits_and_deletes_what_it_sent_before(
    server: Any, dial: Dialer
) -> None:
    """The hold keeps the guest's identity, so its messages stay its own to edit (PROTOCOL.md
    "Edit and delete": only the sender may)."""
    alice, bob, token = await _guest_in_two_groups(server, dial)
    sent = await say(alice, "#one", "frist")
    other = await say(alice, "@bob", "oops")
    await alice.close()
    await bob.recv_type("presence")
    back = await dial.open(server)
    assert (await back.hello("alice", resume=token))["type"] == "welcome"
    await drain(back, 0.3)
    edited = await back.request({"type": "edit", "id": sent["id"], "text": "first"})
    assert edited["edit_of"] == sent["id"]
    deleted = await back.request({"type": "delete", "id": other["id"]})
    assert deleted["delete_of"] == other["id"]
    page = await bob.request({"type": "history", "with": "#one"})
    assert [(m["text"], "edited" in m) for m in page["messages"]] == [("first", True)]
