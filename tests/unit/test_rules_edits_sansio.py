"""Edit, delete, typing and search through the sans-I/O core (`SessionPair`), and the query
parser and FTS5 translation on their own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.sessionpair import Client, SessionPair, config_for

from tlschat.server.search import SearchQuery, parse_query
from tlschat.server.sqlite_store import conv_word, fts_match


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[SessionPair]:
    server = SessionPair(config_for(tmp_path, rate_burst=1000, rate_per_sec=1000.0))
    await server.open()
    yield server
    await server.close()


async def say(client: Client, to: str, text: str) -> dict[str, Any]:
    frames = await client.request({"type": "send", "to": to, "text": text, "ref": "s"})
    assert frames[-1]["type"] == "message", frames
    return frames[-1]


async def answer(client: Client, frame: dict[str, Any]) -> dict[str, Any]:
    """The reply to `frame` (matched by its `ref`), past any event queued before it."""
    ref = frame.setdefault("ref", "r")
    replies = [f for f in await client.request(frame) if f.get("ref") == ref]
    assert len(replies) == 1, replies
    return replies[0]


async def events(client: Client) -> list[dict[str, Any]]:
    """Frames written since the last call, without `presence` (broadcasts come in batches)."""
    return [f for f in await client.frames() if f["type"] != "presence"]


# --- the query --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("deplo", SearchQuery((("deplo",),), prefix=True)),
        ("Hello World", SearchQuery((("Hello",), ("World",)), prefix=True)),
        ('"new york" pizza', SearchQuery((("new", "york"), ("pizza",)), prefix=True)),
        ('pizza "new york"', SearchQuery((("pizza",), ("new", "york")), prefix=False)),
        ('pizza "new york', SearchQuery((("pizza",), ("new", "york")), prefix=False)),
        ("deplo !!!", SearchQuery((("deplo",),), prefix=True)),
        ('a"b', SearchQuery((("a",), ("b",)), prefix=False)),
        ("!!! - ...", None),
        ('""', None),
        ("   ", None),
    ],
)
def test_parse_query(query: str, expected: SearchQuery | None) -> None:
    assert parse_query(query) == expected


def test_fts_match_quotes_every_phrase_and_only_the_last_may_be_a_prefix() -> None:
    q = parse_query('"new york" OR NEAR deplo')
    assert q is not None
    assert (
        fts_match(q) == 'text : "new york" AND text : "OR" AND text : "NEAR" AND text : "deplo" *'
    )
    scoped = fts_match(q, [["d616c"], ["d61", "d62"]])
    assert scoped.endswith(' AND ((conv : "d616c") OR (conv : "d61" AND conv : "d62"))')


def test_conv_words_are_what_the_generated_column_writes() -> None:
    import sqlite3

    conn = sqlite3.connect(":memory:")
    for kind, key in (("r", "den.x-1"), ("d", "~gus~0a1b")):
        (sql_hex,) = conn.execute("SELECT lower(? || hex(?))", (kind, key)).fetchone()
        assert conv_word(kind, key) == sql_hex


# --- edit and delete --------------------------------------------------------------------------


async def test_edit_is_a_new_entry_delivered_to_both_parties(pair: SessionPair) -> None:
    alice = await pair.login("alice")
    bob = await pair.login("bob")
    await alice.frames()
    sent = await say(alice, "@bob", "helo")
    await bob.frames()
    echo = await alice.request({"type": "edit", "id": sent["id"], "text": "hello", "ref": "e"})
    assert len(echo) == 1
    assert echo[0]["ref"] == "e"
    assert echo[0]["edit_of"] == sent["id"]
    assert echo[0]["id"] > sent["id"]
    assert echo[0]["text"] == "hello"
    assert echo[0]["to"] == "@bob"
    got = await bob.frames()
    assert got == [{k: v for k, v in echo[0].items() if k != "ref"}]


async def test_only_the_sender_may_edit_or_delete(pair: SessionPair) -> None:
    alice = await pair.login("alice")
    bob = await pair.login("bob")
    sent = await say(alice, "@bob", "mine")
    for req in (
        {"type": "edit", "id": sent["id"], "text": "x"},
        {"type": "delete", "id": sent["id"]},
    ):
        assert (await answer(bob, req))["code"] == "forbidden"


async def test_no_such_message(pair: SessionPair) -> None:
    alice = await pair.login("alice")
    bob = await pair.login("bob")
    carol = await pair.login("carol")
    sent = await say(alice, "@bob", "private")
    edit = await alice.request({"type": "edit", "id": sent["id"], "text": "v2", "ref": "e"})
    # carol cannot read alice and bob's conversation: no_such_message, never forbidden.
    for msg_id in (sent["id"], edit[0]["id"], 0, 999_999, 2**53 - 1):
        reply = await answer(carol, {"type": "delete", "id": msg_id})
        assert reply["code"] == "no_such_message", (msg_id, reply)
    # an entry is not a message
    reply = await answer(alice, {"type": "edit", "id": edit[0]["id"], "text": "x"})
    assert reply["code"] == "no_such_message"
    await alice.request({"type": "delete", "id": sent["id"]})
    for req in (
        {"type": "edit", "id": sent["id"], "text": "x"},
        {"type": "delete", "id": sent["id"]},
    ):
        assert (await answer(alice, req))["code"] == "no_such_message"
    assert bob is not None


async def test_history_returns_messages_as_they_stand(pair: SessionPair) -> None:
    alice = await pair.login("alice")
    await pair.login("bob")
    one = await say(alice, "@bob", "one")
    two = await say(alice, "@bob", "two")
    edit = await alice.request({"type": "edit", "id": one["id"], "text": "uno"})
    await alice.request({"type": "delete", "id": two["id"]})
    reply = await alice.request({"type": "history", "with": "@bob"})
    messages = reply[0]["messages"]
    assert [m["id"] for m in messages] == [one["id"], two["id"]]
    assert messages[0]["text"] == "uno"
    assert messages[0]["edited"] == edit[0]["ts"]
    assert messages[1]["text"] == ""
    assert messages[1]["deleted"] is True
    assert "file" not in messages[1]


async def test_typing_relayed_to_the_other_party_once_per_two_seconds(pair: SessionPair) -> None:
    alice = await pair.login("alice")
    bob = await pair.login("bob")
    await events(alice)
    await events(bob)
    now = [100.0]
    assert pair.rules is not None
    pair.rules.typing.clock = lambda: now[0]
    assert await alice.request({"type": "typing", "to": "@bob", "ref": "t"}) == []
    assert await events(bob) == [{"type": "typing", "from": "alice", "to": "@bob"}]
    assert await events(alice) == []  # the sender's sessions get nothing
    now[0] += 1.9
    assert await alice.request({"type": "typing", "to": "@bob"}) == []
    assert await events(bob) == []
    now[0] += 0.2
    await alice.request({"type": "typing", "to": "@bob"})
    assert await events(bob) == [{"type": "typing", "from": "alice", "to": "@bob"}]


async def test_search_finds_the_latest_text_only(pair: SessionPair) -> None:
    alice = await pair.login("alice")
    await pair.login("bob")
    sent = await say(alice, "@bob", "deploying the release")
    await alice.request({"type": "edit", "id": sent["id"], "text": "shipping the build"})
    gone = await say(alice, "@bob", "secret deploy key")
    await alice.request({"type": "delete", "id": gone["id"]})

    async def found(query: str) -> list[int]:
        reply = await alice.request({"type": "search", "query": query, "ref": "q"})
        assert reply[0]["type"] == "search", reply
        return [m["id"] for m in reply[0]["messages"]]

    assert await found("deplo") == []
    assert await found("secret") == []
    assert await found("SHIP") == [sent["id"]]


async def test_migration_indexes_messages_stored_before_search(tmp_path: Path) -> None:
    """A database of schema 5 (guests, read markers, topics, kicks and bans; before edits and search): its messages
    become searchable, and an account may edit what it sent then (no sender identity was
    stored)."""
    import sqlite3

    from tlschat.server import sqlite_store

    path = tmp_path / "t.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(sqlite_store.MIGRATIONS[:5]):
        conn.executescript(f"BEGIN; {script}; PRAGMA user_version = {number + 1}; COMMIT;")
    conn.execute(
        "INSERT INTO messages (ts, sender, to_addr, dm_a, dm_b, text)"
        " VALUES ('2026-01-01T00:00:00.000Z', 'Alice', '@bob', 'alice', 'bob', 'old rollout')"
    )
    conn.close()
    server = SessionPair(config_for(tmp_path, rate_burst=1000, rate_per_sec=1000.0))
    await server.open()
    try:
        alice = await server.login("alice", password="pw-alice-1")
        reply = await answer(alice, {"type": "search", "query": "rollo"})
        assert [m["text"] for m in reply["messages"]] == ["old rollout"]
        edited = await answer(alice, {"type": "edit", "id": 1, "text": "new release"})
        assert edited["edit_of"] == 1
        assert not (await answer(alice, {"type": "search", "query": "rollout"}))["messages"]
        assert len((await answer(alice, {"type": "search", "query": "release"}))["messages"]) == 1
    finally:
        await server.close()
