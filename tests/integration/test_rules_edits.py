"""PROTOCOL.md "Messages" → Edit and delete, Typing; and "Search": rule by rule, over real TLS."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from tests.integration.helpers_rules import (
    PASSWORD,
    TS_RE,
    Dialer,
    assert_error,
    drain,
    drain_all,
    say,
    wait_presence,
    without,
)
from tests.integration.test_files import download, uploaded
from tests.integration.test_rules_messages import make_room
from tests.wire import Wire

pytestmark = pytest.mark.usefixtures("conformance")


async def edit(wire: Wire, msg_id: int, text: str) -> dict[str, Any]:
    """The echo of an edit (or the error)."""
    return await wire.request({"type": "edit", "id": msg_id, "text": text})


async def delete(wire: Wire, msg_id: int) -> dict[str, Any]:
    return await wire.request({"type": "delete", "id": msg_id})


async def search(wire: Wire, query: str, **extra: Any) -> dict[str, Any]:
    reply = await wire.request({"type": "search", "query": query, **extra})
    return reply


async def found(wire: Wire, query: str, **extra: Any) -> list[str]:
    """The texts a search finds, newest first."""
    reply = await search(wire, query, **extra)
    assert reply["type"] == "search", reply
    assert reply["query"] == query
    return [m["text"] for m in reply["messages"]]


def message_frames(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in frames if f["type"] == "message"]


# --- edit and delete: delivery -------------------------------------------------------------------


async def test_edit_and_delete_reach_every_session_of_every_party(connect: Any) -> None:
    a1 = await connect("alice", PASSWORD)
    a2 = await connect("alice", PASSWORD)
    bob = await connect("bob")
    carol = await connect("carol")
    await drain_all(a1, a2, bob, carol)
    sent = await say(a1, "@bob", "helo bob")
    await drain_all(a2, bob)
    await a1.send({"type": "edit", "id": sent["id"], "text": "hello bob", "ref": "e1"})
    echo = await a1.recv()
    assert echo["ref"] == "e1"
    assert echo["edit_of"] == sent["id"]
    assert echo["id"] > sent["id"]
    assert TS_RE.fullmatch(echo["ts"])
    assert (echo["from"], echo["to"], echo["text"]) == ("alice", "@bob", "hello bob")
    assert set(echo) == {"type", "id", "ts", "from", "to", "text", "edit_of", "ref"}
    assert await a2.recv() == without(echo, "ref")
    assert await bob.recv() == without(echo, "ref")

    await a1.send({"type": "delete", "id": sent["id"], "ref": "d1"})
    gone = await a1.recv()
    assert gone["ref"] == "d1"
    assert gone["delete_of"] == sent["id"]
    assert gone["id"] > echo["id"]
    assert (gone["from"], gone["to"], gone["text"]) == ("alice", "@bob", "")
    assert set(gone) == {"type", "id", "ts", "from", "to", "text", "delete_of", "ref"}
    assert await a2.recv() == without(gone, "ref")
    assert await bob.recv() == without(gone, "ref")
    await carol.no_frame(0.3)
    await a1.no_frame(0.1)


async def test_group_edit_reaches_the_members_only(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    await make_room(alice, "Den", bob)
    await drain_all(alice, bob, carol)
    sent = await say(bob, "#Den", "first")
    await alice.recv_type("message")
    echo = await edit(bob, sent["id"], "first!")
    assert echo["to"] == "#Den"
    assert await alice.recv() == without(echo, "ref")
    await carol.no_frame(0.3)


# --- edit and delete: who, and what ------------------------------------------------------------


async def test_only_the_sender_may_edit_or_delete(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await make_room(alice, "Den", bob)
    dm = await say(alice, "@bob", "from alice")
    group = await say(alice, "#Den", "to the den")
    await drain_all(alice, bob)
    for msg_id in (dm["id"], group["id"]):
        assert_error(await edit(bob, msg_id, "mine now"), "forbidden")
        assert_error(await delete(bob, msg_id), "forbidden")
    await alice.no_frame(0.3)  # nothing was delivered
    history = await alice.request({"type": "history", "with": "@bob"})
    assert [m["text"] for m in history["messages"]] == ["from alice"]


async def test_no_such_message(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    await make_room(alice, "Den", bob)
    private = await say(alice, "@bob", "between us")
    group = await say(alice, "#Den", "members only")
    entry = await edit(alice, private["id"], "between us two")
    await drain_all(bob, carol)
    for msg_id in (0, 999_999, 2**53 - 1, private["id"], group["id"], entry["id"]):
        # carol can read none of these: as if they did not exist, never `forbidden`
        assert_error(await edit(carol, msg_id, "x"), "no_such_message")
        assert_error(await delete(carol, msg_id), "no_such_message")
    # an edit or delete entry is not a message of its own
    assert_error(await edit(alice, entry["id"], "x"), "no_such_message")
    assert_error(await delete(alice, entry["id"]), "no_such_message")
    # a deleted message is gone
    assert (await delete(alice, private["id"]))["delete_of"] == private["id"]
    assert_error(await edit(alice, private["id"], "back"), "no_such_message")
    assert_error(await delete(alice, private["id"]), "no_such_message")
    # a group the sender left
    await alice.request({"type": "leave", "room": "Den"})
    assert_error(await edit(alice, group["id"], "x"), "no_such_message")


async def test_edit_text_follows_the_send_rules(start_server: Any, dial: Dialer) -> None:
    server = await start_server(max_text=10)
    alice = await dial.open(server, "alice")
    sent = await say(alice, "@alice", "short")
    assert_error(await edit(alice, sent["id"], "x" * 11), "text_too_long")
    assert_error(await edit(alice, sent["id"], ""), "bad_request")
    assert_error(await edit(alice, sent["id"], "bell\x07"), "bad_request")
    for bad in (-1, 2**53, "1", 1.0):
        assert_error(await alice.request({"type": "edit", "id": bad, "text": "x"}), "bad_request")
        assert_error(await alice.request({"type": "delete", "id": bad}), "bad_request")
    await drain(alice)
    assert (await edit(alice, sent["id"], "x" * 10))["edit_of"] == sent["id"]
    await alice.no_frame(0.2)  # the refused edits delivered nothing


async def test_a_message_with_a_file_may_be_edited_to_empty_text(connect: Any) -> None:
    alice = await connect("alice")
    meta = await uploaded(alice, b"data", "a.bin")
    await alice.send({"type": "send", "to": "@alice", "text": "a file", "file": meta["id"]})
    sent = await alice.recv_type("message")
    assert (await edit(alice, sent["id"], ""))["text"] == ""
    history = await alice.request({"type": "history", "with": "@alice"})
    assert history["messages"][0]["text"] == ""
    assert history["messages"][0]["file"]["id"] == meta["id"]


async def test_a_deleted_messages_file_is_the_uploaders_alone(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await drain_all(alice, bob)
    meta = await uploaded(alice, b"secret bytes", "s.bin")
    await alice.send({"type": "send", "to": "@bob", "text": "", "file": meta["id"], "ref": "f"})
    sent = await alice.recv_match(ref="f")
    await bob.recv_type("message")
    assert await download(bob, meta["id"]) == b"secret bytes"
    await delete(alice, sent["id"])
    await bob.recv_type("message")
    assert_error(await download(bob, meta["id"]), "no_such_file")  # type: ignore[arg-type]
    assert await download(alice, meta["id"]) == b"secret bytes"
    history = await bob.request({"type": "history", "with": "@alice"})
    assert history["messages"] == [
        {k: sent[k] for k in ("type", "id", "ts", "from", "to")} | {"text": "", "deleted": True}
    ]


# --- history, replay -----------------------------------------------------------------------------


async def test_history_returns_messages_as_they_stand(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await drain_all(alice, bob)
    one = await say(alice, "@bob", "one")
    two = await say(alice, "@bob", "two")
    three = await say(bob, "@alice", "three")
    first = await edit(alice, one["id"], "uno")
    second = await edit(alice, one["id"], "eins")
    await delete(alice, two["id"])
    history = await bob.request({"type": "history", "with": "@alice"})
    assert history["messages"] == [
        without(one, "ref") | {"text": "eins", "edited": second["ts"]},
        {k: two[k] for k in ("type", "id", "ts", "from", "to")} | {"text": "", "deleted": True},
        without(three, "ref"),
    ]
    assert first["ts"] <= second["ts"]
    # paging counts messages, never the entries between them
    page = await bob.request({"type": "history", "with": "@alice", "limit": 2})
    assert [m["id"] for m in page["messages"]] == [two["id"], three["id"]]
    assert page["more"] is True
    older = await bob.request(
        {"type": "history", "with": "@alice", "limit": 2, "before": two["id"]}
    )
    assert [m["id"] for m in older["messages"]] == [one["id"]]
    assert older["more"] is False


async def test_replay_after_reconnect_catches_up_on_edits_and_deletions(connect: Any) -> None:
    bob = await connect("bob", PASSWORD)
    alice = await connect("alice", PASSWORD)
    await drain_all(alice, bob)
    keep = await say(alice, "@bob", "draft one")
    drop = await say(alice, "@bob", "my password is hunter2")
    assert len(message_frames(await drain(bob))) == 2
    last_seen = drop["id"]
    await bob.close()
    await wait_presence(alice, "bob", online=False)
    edited = await edit(alice, keep["id"], "final one")
    typo = await edit(alice, drop["id"], "my password is hunter3")
    gone = await delete(alice, drop["id"])

    again = await connect()
    assert (await again.hello("bob", PASSWORD, last_seen=last_seen))["type"] == "welcome"
    replay = message_frames(await drain(again, 0.5))
    assert replay == [
        without(edited, "ref"),
        without(typo, "ref") | {"text": ""},  # the deleted message's edits lose their text too
        without(gone, "ref"),
    ]
    await again.close()
    await wait_presence(alice, "bob", online=False)

    # From the start: every message as it stands now; deleted text is never sent again.
    third = await connect()
    assert (await third.hello("bob", PASSWORD, last_seen=0))["type"] == "welcome"
    everything = message_frames(await drain(third, 0.5))
    assert [m["id"] for m in everything] == [
        keep["id"], drop["id"], edited["id"], typo["id"], gone["id"]
    ]  # fmt: skip
    assert everything[0]["text"] == "final one"
    assert everything[0]["edited"] == edited["ts"]
    assert everything[1]["deleted"] is True
    assert "hunter" not in json.dumps(everything)


# --- typing --------------------------------------------------------------------------------------


async def test_typing_is_relayed_to_the_other_party_without_a_reply(connect: Any) -> None:
    a1 = await connect("alice", PASSWORD)
    a2 = await connect("alice", PASSWORD)
    b1 = await connect("bob", PASSWORD)
    b2 = await connect("bob", PASSWORD)
    carol = await connect("carol")
    await drain_all(a1, a2, b1, b2, carol)
    await a1.send({"type": "typing", "to": "@BOB", "ref": "t1"})
    expected = {"type": "typing", "from": "alice", "to": "@BOB"}
    assert await b1.recv() == expected
    assert await b2.recv() == expected
    await a1.no_frame(0.3)  # no reply on success
    await a2.no_frame(0.1)  # nor to the sender's other sessions
    await carol.no_frame(0.1)


async def test_typing_in_a_group_goes_to_the_other_members(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    dave = await connect("dave")
    await make_room(alice, "Den", bob, carol)
    await drain_all(alice, bob, carol, dave)
    await bob.send({"type": "typing", "to": "#den"})
    expected = {"type": "typing", "from": "bob", "to": "#den"}
    assert await alice.recv() == expected
    assert await carol.recv() == expected
    await bob.no_frame(0.3)
    await dave.no_frame(0.1)


async def test_typing_is_throttled_per_sender_and_address(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    await drain_all(alice, bob, carol)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(5):
        await alice.send({"type": "typing", "to": "@bob"})
    await alice.send({"type": "typing", "to": "@carol"})  # another address: its own allowance
    assert (await bob.recv())["from"] == "alice"
    assert (await carol.recv())["from"] == "alice"
    await bob.no_frame(max(0.1, 1.5 - (loop.time() - start)))  # the other four were dropped
    await alice.no_frame(0.1)
    await asyncio.sleep(max(0.0, 2.1 - (loop.time() - start)))
    await alice.send({"type": "typing", "to": "@bob"})
    assert (await bob.recv())["type"] == "typing"


async def test_typing_follows_the_send_address_rules(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await bob.request({"type": "create", "room": "Secret"})
    await bob.request({"type": "create", "room": "Open", "public": True})
    await drain_all(alice, bob)
    assert_error(await alice.request({"type": "typing", "to": "@nobody"}), "no_such_user")
    assert_error(await alice.request({"type": "typing", "to": "#nowhere"}), "no_such_room")
    assert_error(await alice.request({"type": "typing", "to": "#Open"}), "not_member")
    assert_error(await alice.request({"type": "typing", "to": "bob"}), "bad_request")
    await bob.no_frame(0.3)


async def test_typing_is_never_stored(connect: Any) -> None:
    bob = await connect("bob", PASSWORD)
    alice = await connect("alice")
    await bob.close()
    await wait_presence(alice, "bob", online=False)
    await drain(alice)
    await alice.send({"type": "typing", "to": "@bob"})
    await alice.no_frame(0.2)
    again = await connect()
    assert (await again.hello("bob", PASSWORD, last_seen=0))["type"] == "welcome"
    assert [f for f in await drain(again, 0.5) if f["type"] in ("typing", "message")] == []
    history = await again.request({"type": "history", "with": "@alice"})
    assert history["messages"] == []


# --- search: matching ----------------------------------------------------------------------------


async def test_search_matching_rules(connect: Any) -> None:
    alice = await connect("alice")
    for text in (
        "We deployed the new build",  # 0
        "Display settings changed",  # 1
        "new york pizza is great",  # 2
        "pizza in new york",  # 3
        "York New is not a city",  # 4
        "DEPLOY tomorrow, maybe",  # 5
        "café au lait",  # 6
    ):
        await say(alice, "@alice", text)
    # every word, case-insensitive, in any order
    assert await found(alice, "PIZZA new") == ["pizza in new york", "new york pizza is great"]
    # the last word may be the start of a word; the others must equal a word
    assert await found(alice, "deplo") == ["DEPLOY tomorrow, maybe", "We deployed the new build"]
    assert await found(alice, "deplo new") == []
    assert await found(alice, "new deplo") == ["We deployed the new build"]
    assert await found(alice, "play") == []  # not the middle or end of a word
    assert await found(alice, "tomorrow") == ["DEPLOY tomorrow, maybe"]
    assert await found(alice, "tomorro maybe") == []
    # a quoted part must appear as those words, in that order
    assert await found(alice, '"new york"') == ["pizza in new york", "new york pizza is great"]
    assert await found(alice, '"york new"') == ["York New is not a city"]
    assert await found(alice, '"new york" great') == ["new york pizza is great"]
    assert await found(alice, '"new yor"') == []  # a quoted word is never a prefix
    # punctuation is no word; letters beyond ASCII are
    assert await found(alice, "tomorrow,") == ["DEPLOY tomorrow, maybe"]
    assert await found(alice, "CAFÉ") == ["café au lait"]
    # FTS syntax in the query is only words
    assert await found(alice, "new OR york") == []
    assert await found(alice, "NEAR(new york)") == []


async def test_search_sees_latest_text_and_never_deleted_text(connect: Any) -> None:
    alice = await connect("alice")
    first = await say(alice, "@alice", "rollout at noon")
    second = await say(alice, "@alice", "rollout password swordfish")
    await edit(alice, first["id"], "release at noon")
    await delete(alice, second["id"])
    assert await found(alice, "rollout") == []
    assert await found(alice, "swordfish") == []
    reply = await search(alice, "release")
    assert reply["messages"] == [without(first, "ref") | {"text": "release at noon"} | {
        "edited": reply["messages"][0]["edited"]
    }]  # fmt: skip
    assert TS_RE.fullmatch(reply["messages"][0]["edited"])


@pytest.mark.parametrize(
    "query",
    ["", "x" * 201, "!!!", '""', " - ", 5, None],
)
async def test_search_query_must_hold_words(connect: Any, query: Any) -> None:
    alice = await connect("alice")
    frame = {"type": "search"} if query is None else {"type": "search", "query": query}
    assert_error(await alice.request(frame), "bad_request")


async def test_search_query_of_200_characters_is_allowed(connect: Any) -> None:
    alice = await connect("alice")
    assert (await search(alice, "y" * 200))["messages"] == []


# --- search: paging ------------------------------------------------------------------------------


async def test_search_paging_newest_first(connect: Any) -> None:
    alice = await connect("alice")
    sent = [await say(alice, "@alice", f"note {i}") for i in range(25)]
    ids = [m["id"] for m in reversed(sent)]
    reply = await search(alice, "note")
    assert [m["id"] for m in reply["messages"]] == ids[:20]  # default limit 20
    assert reply["more"] is True
    page = await search(alice, "note", limit=5, before=ids[19])
    assert [m["id"] for m in page["messages"]] == ids[20:25]
    assert page["more"] is False
    page = await search(alice, "note", limit=4, before=ids[19])
    assert page["more"] is True
    assert (await search(alice, "note", limit=50))["more"] is False
    assert (await search(alice, "note", before=0))["messages"] == []
    for bad in ({"limit": 0}, {"limit": 51}, {"before": -1}, {"before": 2**53}):
        assert_error(await search(alice, "note", **bad), "bad_request")


async def test_search_reply_is_cut_to_max_frame(start_server: Any, dial: Dialer) -> None:
    server = await start_server(max_frame=4096, max_text=4000)
    alice = await dial.open(server, "alice")
    for i in range(5):
        await say(alice, "@alice", f"big{i} " + "x" * 1500)
    reply = await search(alice, "big", limit=50)
    assert reply["more"] is True
    texts = [m["text"].split()[0] for m in reply["messages"]]
    assert texts == ["big4", "big3"][: len(texts)]
    assert 1 <= len(texts) <= 2


# --- search: what may never be found -------------------------------------------------------------


async def test_search_never_finds_what_the_user_may_not_read(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    await make_room(alice, "Den", bob)
    await say(alice, "@bob", "needle in a direct message")
    await say(alice, "#Den", "needle before carol joined")
    await say(bob, "@bob", "needle in bob's notes")
    assert await found(carol, "needle") == []
    assert_error(await search(carol, "needle", **{"with": "#Den"}), "no_such_room")
    await alice.request({"type": "invite", "room": "Den", "nick": "carol"})
    await carol.recv_type("invited")
    await carol.request({"type": "accept", "room": "Den"})
    await say(alice, "#Den", "needle after carol joined")
    # a room: what `history` lets a member read, which is from before it joined too
    room_history = await carol.request({"type": "history", "with": "#Den"})
    readable = [m["text"] for m in reversed(room_history["messages"]) if "needle" in m["text"]]
    assert readable == ["needle after carol joined", "needle before carol joined"]
    assert await found(carol, "needle") == readable
    assert await found(carol, "needle", **{"with": "#Den"}) == readable
    assert await found(bob, "needle") == [
        "needle after carol joined",
        "needle in bob's notes",
        "needle before carol joined",
        "needle in a direct message",
    ]
    await bob.request({"type": "leave", "room": "Den"})
    assert await found(bob, "needle") == ["needle in bob's notes", "needle in a direct message"]


async def test_search_with_one_conversation(connect: Any) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    await make_room(alice, "Den", bob)
    await carol.request({"type": "create", "room": "Open", "public": True})
    await say(alice, "@bob", "topic dm bob")
    await say(alice, "@carol", "topic dm carol")
    await say(alice, "#Den", "topic den")
    await say(carol, "#Open", "topic in a public room alice is not in")
    await say(bob, "@carol", "topic between bob and carol")
    assert await found(alice, "topic") == ["topic den", "topic dm carol", "topic dm bob"]
    assert await found(alice, "topic", **{"with": "@BOB"}) == ["topic dm bob"]
    assert await found(alice, "topic", **{"with": "#den"}) == ["topic den"]
    assert await found(alice, "topic", **{"with": "@alice"}) == []
    # the same errors as `history`
    assert_error(await search(alice, "topic", **{"with": "@nobody"}), "no_such_user")
    assert_error(await search(alice, "topic", **{"with": "#nowhere"}), "no_such_room")
    assert_error(await search(alice, "topic", **{"with": "#Open"}), "forbidden")
    assert_error(await search(alice, "topic", **{"with": "nobody"}), "bad_request")


async def test_search_never_finds_an_earlier_guests_messages(
    start_server: Any, dial: Dialer
) -> None:
    # A guest's nick is held for it a while after it leaves (PROTOCOL.md "Session" → Guests):
    # a short hold, so that the next gus is someone else.
    server = await start_server(guest_hold=0.3)
    alice = await dial.open(server, "alice")
    gus = await dial.open(server, "gus")
    await say(alice, "@gus", "needle for the first gus")
    assert await found(gus, "needle") == ["needle for the first gus"]
    await gus.close()
    await alice.recv_match(5, type="presence", nick="gus", gone=True)  # the hold ended
    later = await dial.open(server, "gus")
    assert await found(later, "needle") == []
    assert await found(later, "needle", **{"with": "@alice"}) == []
