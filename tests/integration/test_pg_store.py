"""PgStore against a real PostgreSQL (tests/pgserver.py): ids across nodes, group commit,
search with the same answers as the SQLite store, unavailability and recovery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from tests.integration.helpers_rules import Dialer, assert_error, drain, drain_all, say
from tests.pgserver import PgServer

from tlschat.server.pg_schema import MIGRATIONS, SchemaTooNew
from tlschat.server.pg_store import PgStore
from tlschat.server.search import parse_query
from tlschat.server.sqlite_store import SqliteStore
from tlschat.server.store import (
    NewMessage,
    StoredBlob,
    StoredGuest,
    StoredInvite,
    StoredMember,
    StoreUnavailable,
)


@pytest.fixture
async def store(pg_database: str) -> AsyncIterator[PgStore]:
    opened = PgStore(pg_database)
    await opened.open()
    yield opened
    await opened.close()


def dm(text: str, sender: str = "alice", to: str = "bob", **extra: object) -> NewMessage:
    pair = (sender, to)
    return NewMessage(
        ts="2024-01-01T00:00:00Z",
        sender=sender,
        to_addr=f"@{to}",
        text=text,
        dm=pair,
        sender_id=sender,
        **extra,  # type: ignore[arg-type]
    )


def in_room(text: str, room: str, sender: str = "alice") -> NewMessage:
    return NewMessage(
        ts="2024-01-01T00:00:00Z",
        sender=sender,
        to_addr=f"#{room}",
        text=text,
        room_key=room,
        sender_id=sender,
    )


async def test_nodes_starting_together_migrate_once(pg_server: PgServer) -> None:
    admin = await asyncpg.connect(pg_server.dsn())
    await admin.execute("CREATE DATABASE fresh_schema")
    try:
        dsn = pg_server.dsn("fresh_schema")
        nodes = [PgStore(dsn) for _ in range(3)]
        await asyncio.gather(*(node.open() for node in nodes))  # they take turns on a lock
        for node in nodes:
            await node.close()
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetch("SELECT version FROM schema_version") == [(len(MIGRATIONS),)]
            await conn.execute("UPDATE schema_version SET version = 99")
        finally:
            await conn.close()
        with pytest.raises(SchemaTooNew):  # a newer tlschat's database is left alone
            await PgStore(dsn).open()
    finally:
        await admin.execute("DROP DATABASE fresh_schema WITH (FORCE)")
        await admin.close()


async def test_group_commit_answers_each_caller_with_its_own_id(store: PgStore) -> None:
    ids = await asyncio.gather(*(store.add_message(dm(f"hello {n}")) for n in range(50)))
    assert ids == list(range(1, 51))  # queued in this order, committed in this order
    batches, writes = store.commits
    assert writes == 50
    assert batches < 5  # together, not one transaction each
    got = await store.get_message(17)
    assert got is not None
    assert got.text == "hello 16"


async def test_a_failing_write_fails_alone_in_its_batch(store: PgStore) -> None:
    results = await asyncio.gather(
        store.add_message(dm("first")),
        store.add_file("f1", "no such blob", "a.txt", "alice"),  # a foreign key refuses it
        store.add_message(dm("second")),
        return_exceptions=True,
    )
    assert isinstance(results[1], asyncpg.ForeignKeyViolationError)
    # The batch ran again with savepoints: the failed write alone is out. (The first run's
    # ids are not given back: a sequence is not transactional. Ids may have gaps, never
    # disorder.)
    assert isinstance(results[0], int)
    assert isinstance(results[2], int)
    assert results[0] < results[2]
    assert store.commits == (1, 3)


async def test_ids_commit_in_order_across_nodes(pg_database: str) -> None:
    """Three stores (three nodes) write at once; a reader polling the table never sees an id
    committed while a smaller one is still missing: ids are unique and increasing in commit
    order cluster-wide (the advisory lock of pg_store.py)."""
    nodes = [PgStore(pg_database) for _ in range(3)]
    for node in nodes:
        await node.open()
    reader = await asyncpg.connect(pg_database)
    done = False
    snapshots = 0

    async def poll() -> None:
        nonlocal snapshots
        while not done:
            ids = [row[0] for row in await reader.fetch("SELECT id FROM messages ORDER BY id")]
            assert ids == list(range(1, len(ids) + 1)), "an id became visible before a smaller one"
            snapshots += 1

    async def send(node: PgStore, name: str) -> list[int]:
        mine = []
        for burst in range(10):
            mine += await asyncio.gather(
                *(node.add_message(dm(f"{name} {burst} {n}", sender=name)) for n in range(5))
            )
        return mine

    try:
        poller = asyncio.create_task(poll())
        results = await asyncio.gather(*(send(n, f"node{i}") for i, n in enumerate(nodes)))
        done = True
        await poller
    finally:
        await reader.close()
        for node in nodes:
            await node.close()
    everything = [msg_id for mine in results for msg_id in mine]
    assert sorted(everything) == list(range(1, 151))
    for mine in results:
        assert mine == sorted(mine)  # each node's callers answered in id order
    assert snapshots > 1


async def test_edit_and_delete_entries(store: PgStore) -> None:
    first = await store.add_message(dm("the original words"))
    edit = await store.add_message(dm("the new words", edit_of=first))
    assert edit > first
    message = await store.get_message(first)
    assert message is not None
    assert message.text == "the new words"
    assert message.edited
    gone = await store.add_message(dm("", delete_of=first))
    assert gone > edit
    message = await store.get_message(first)
    assert message is not None
    assert message.deleted
    assert message.text == ""
    entry = await store.get_message(edit)
    assert entry is not None
    assert entry.text == ""
    # A second delete, or an edit of a deleted message, stores nothing.
    assert await store.add_message(dm("", delete_of=first)) == 0
    assert await store.add_message(dm("again", edit_of=first)) == 0
    assert await store.add_message(dm("of an entry", edit_of=edit)) == 0
    history, more = await store.history(dm=("bob", "alice"), before=None, limit=10)
    assert [m.id for m in history] == [first]
    assert not more
    replay = await store.replay("bob", {}, 0, 10)
    assert [m.id for m in replay] == [first, edit, gone]


async def test_read_markers_never_move_back(store: PgStore) -> None:
    assert await store.set_read("alice", "@bob", 5) == 5
    assert await store.set_read("alice", "@bob", 3) == 5
    assert await store.set_read("alice", "@bob", 9) == 9


# --- every method: the same answers as the SQLite store -------------------------------------

FAR = 4_000_000_000.0
"""A moment long after the test (kicks and holds that have not ended)."""


async def _scenario(store: PgStore | SqliteStore) -> list[object]:
    """One call of (nearly) every method, in an order that exercises their rules; the answers."""
    seen: list[object] = []
    seen.append(await store.create_user("alice", "Alice", "hash-a"))
    seen.append(await store.create_user("alice", "ALICE", "other"))  # taken: False
    seen.append(await store.create_user("bob", "Bob", "hash-b"))
    await store.set_last_delivered({"alice": 7, "bob": 3})
    await store.set_last_delivered({"alice": 5})  # never back
    seen += [await store.get_user("alice"), await store.get_user("nobody")]
    seen.append(await store.registered_nicks(["alice", "bob", "carol"]))
    await store.ban("mallory", "spam")
    await store.ban("mallory", "more spam")
    seen += [await store.bans(), await store.unban("mallory"), await store.unban("mallory")]
    # guests: replaced by nick or by identity; held, then their hold ends
    await store.put_guest(StoredGuest("ghost", "Ghost", "~g1", "t1", None))
    await store.put_guest(StoredGuest("ghost", "Ghost", "~g2", "t2", None))
    await store.put_guest(StoredGuest("spook", "Spook", "~g2", "t3", None))
    await store.put_guest(StoredGuest("boo", "Boo", "~g3", "t4", None))
    seen += [await store.get_guest("ghost"), await store.get_guest("spook")]
    await store.hold_guest("spook", 100.0, 9)
    await store.hold_online_guests(200.0)
    seen.append(await store.guests_held_until(150.0))
    seen.append(sorted((g.nick_key, g.held_until) for g in await store.guests_held_until(FAR)))
    seen.append(await store.identity_nicks(["alice", "~g2", "~g3", "~nobody"]))
    # rooms: members in the order they joined (re-joining goes last), invites, kicks, topics
    await store.create_room("team", "Team", False, StoredMember("alice", "Alice", 0), "hi")
    await store.create_room("lobby", "Lobby", True, None)
    await store.add_member("team", StoredMember("bob", "Bob", 2))
    await store.add_member("team", StoredMember("spook", "Spook", 2))
    await store.add_invite("team", StoredInvite("carol", "alice", 10.0))
    await store.add_invite("team", StoredInvite("dave", "alice", 20.0))
    await store.add_invite("lobby", StoredInvite("erin", "bob", 30.0))
    await store.delete_invite("team", "dave")
    await store.delete_invites_before(25.0)
    await store.add_kick("lobby", "bob", FAR)
    await store.add_member("lobby", StoredMember("bob", "Bob", 4))  # ends the kick
    await store.add_kick("lobby", "carol", FAR)
    await store.add_member("team", StoredMember("alice", "Alice", 5))  # re-added: last
    await store.remove_member("team", "bob")
    await store.set_topic("lobby", "all welcome")
    await store.create_room("lobby", "Lobby", True, None, "replaced")  # keeps its members
    # messages, files, edits, deletes
    await store.add_blob(StoredBlob("ab" * 32, 10, "image/png", 2, 3))
    await store.add_blob(StoredBlob("ab" * 32, 99, "text/plain", None, None))  # kept as was
    await store.add_blob(StoredBlob("cd" * 32, 5, "text/plain", None, None))
    await store.add_file("f1", "ab" * 32, "pic.png", "alice")
    await store.add_file("f2", "ab" * 32, "same.png", "bob")
    await store.add_file("f3", "cd" * 32, "unsent.txt", "alice")
    ids = [
        await store.add_message(dm("hello bob")),
        await store.add_message(dm("hi alice", sender="bob", to="alice")),
        await store.add_message(dm("a picture", file_id="f1", grant=("bob",))),
        await store.add_message(in_room("hello team", "team")),
        await store.add_message(in_room("from spook", "team", sender="spook")),
        await store.add_message(dm("note to self", to="alice")),
        await store.add_message(dm("~g3 talks", sender="~g3", to="alice")),
    ]
    ids.append(await store.add_message(dm("hello bob!", edit_of=ids[0])))
    seen.append(await store.file_for("f1", "bob"))
    ids.append(await store.add_message(dm("", delete_of=ids[2])))
    seen += [ids, await store.file_for("f1", "bob"), await store.file_for("f1", "alice")]
    await store.grant_file("f2", ["carol", "carol", "dave"])
    seen += [await store.file_for("f2", "carol"), await store.files(["f1", "f2", "nope"])]
    seen += [await store.file_blob("ab" * 32), await store.file_blob("ef" * 32)]
    seen.append(await store.max_message_id())
    seen += [await store.get_message(ids[0]), await store.get_message(ids[7])]
    seen.append(await store.replay("alice", {"team": 0}, 0, 100))
    seen.append(await store.replay("bob", {"team": 2}, 1, 3))
    seen.append(await store.history(dm=("bob", "alice"), before=None, limit=2))
    seen.append(await store.history(room_key="team", before=ids[4], limit=10))
    seen.append(sorted(await store.dm_partners("alice")))
    # read markers and unread counts
    seen.append(await store.set_read("alice", "@bob", ids[1]))
    seen.append(await store.set_read("alice", "@bob", 1))
    seen.append(await store.set_read("alice", "#team", ids[3]))
    seen.append(await store.conversations("alice", "alice", {"team": 0}, 10))
    seen.append(await store.conversations("bob", "bob", {"team": 2, "lobby": 4}, 1))
    rooms = await store.load_rooms()
    seen.append(sorted(rooms, key=lambda room: room.room_key))
    await store.delete_guest("spook", "~g2")
    await store.delete_room("team")
    seen.append(await store.load_rooms())
    seen.append(await store.replay("alice", {}, 0, 100))
    seen.append(await store.delete_unsent_files(FAR, keep=["f2"]))
    seen.append(await store.delete_unused_blobs())
    seen.append(sorted(await store.blob_hashes()))
    return seen


async def test_every_method_answers_as_the_sqlite_store(store: PgStore, tmp_path: Path) -> None:
    sqlite = SqliteStore(tmp_path / "t.db")
    await sqlite.open()
    try:
        expected = await _scenario(sqlite)
    finally:
        await sqlite.close()
    got = await _scenario(store)
    for number, (mine, theirs) in enumerate(zip(got, expected, strict=True)):
        assert mine == theirs, f"answer {number}"


# --- search: the same answers as the SQLite store ---------------------------------------------

TEXTS = [
    ("dm", "Deployed the new build to production"),
    ("dm", "the build is BROKEN again"),
    ("dm", "foo-bar baz: see http://example.com/path?q=1"),
    ("dm", "Café crème, naïve façade"),
    ("dm", "release notes for v1.2.3"),
    ("room", "deploy tomorrow, the room knows"),
    ("room", "build deployed to staging"),
    ("early", "deploy in a room joined later"),
    ("other", "deploy between carol and dave"),
    ("dm", "_under_score and e-mail bob@example.org"),
]
QUERIES = [
    "deplo",
    "deploy",
    "Deployed",
    "build",
    '"the build"',
    '"build the"',
    "BROKEN build",
    "foo-bar",
    "bar",
    "example",
    "com",
    "café",
    "cafe",
    "CRÈME",
    "v1",
    "1.2",
    '"1 2 3"',
    "under",
    "score",
    "e-mail",
    "mail bob",
    '"new build" produc',
    '"new build"',
    "production deployed",
    "nothing-like-this",
]


async def _fill(store: PgStore | SqliteStore) -> None:
    await store.add_message(in_room("deploy before alice joined", "early"))
    for kind, text in TEXTS:
        if kind == "dm":
            await store.add_message(dm(text))
        elif kind == "other":
            await store.add_message(dm(text, sender="carol", to="dave"))
        else:
            await store.add_message(in_room(text, kind))
    edited = await store.add_message(dm("a deploy to be edited"))
    await store.add_message(dm("now about kittens", edit_of=edited))
    deleted = await store.add_message(dm("a deploy to be deleted"))
    await store.add_message(dm("", delete_of=deleted))


async def _answers(store: PgStore | SqliteStore, text: str) -> list[list[int]]:
    query = parse_query(text)
    assert query is not None
    rooms = {"room": 0, "early": 1}
    answers = []
    for scope in (
        {"identity": "alice", "rooms": rooms},
        {"dm": ("bob", "alice"), "rooms": {}},
        {"rooms": {"room": 0}},
    ):
        found, _ = await store.search(query, before=None, limit=50, **scope)  # type: ignore[arg-type]
        answers.append([m.id for m in found])
    return answers


async def test_search_answers_as_the_sqlite_store(store: PgStore, tmp_path: Path) -> None:
    sqlite = SqliteStore(tmp_path / "t.db")
    await sqlite.open()
    try:
        await _fill(store)
        await _fill(sqlite)
        for text in QUERIES:
            assert await _answers(store, text) == await _answers(sqlite, text), text
    finally:
        await sqlite.close()


async def test_search_rules(store: PgStore) -> None:
    await _fill(store)

    async def ids(text: str, before: int | None = None, limit: int = 50) -> list[int]:
        query = parse_query(text)
        assert query is not None
        found, _ = await store.search(
            query, identity="alice", rooms={"room": 0, "early": 1}, before=before, limit=limit
        )
        return [m.id for m in found]

    assert await ids("deplo") == [9, 8, 7, 2]  # prefix; newest first; never carol's or early
    assert await ids('"deploy"') == [9, 7]  # a whole word: not "deployed"
    assert await ids('"deplo"') == []  # quoted: exact
    assert await ids("kittens") == [12]  # an edited message matches its latest text
    assert await ids("edited") == []
    assert await ids("deleted") == []  # deleted messages never match
    assert await ids("deplo", before=8) == [7, 2]
    found, more = await store.search(
        parse_query("deplo"),  # type: ignore[arg-type]
        identity="alice",
        rooms={"room": 0},
        before=None,
        limit=1,
    )
    assert [m.id for m in found] == [8]
    assert more


# --- unavailability -------------------------------------------------------------------------


async def test_unavailable_while_postgresql_is_down_then_recovers(
    store: PgStore, pg_server: PgServer
) -> None:
    assert await store.add_message(dm("before")) == 1
    await asyncio.to_thread(pg_server.stop)
    try:
        with pytest.raises(StoreUnavailable):
            await store.add_message(dm("while down"))
        with pytest.raises(StoreUnavailable):
            await store.get_message(1)
    finally:
        await asyncio.to_thread(pg_server.start)
    # Back by itself: the pool connects again.
    msg_id = await store.add_message(dm("after"))
    assert msg_id > 1
    message = await store.get_message(msg_id)
    assert message is not None
    assert message.text == "after"
    assert (await store.get_message(1)) is not None


async def test_a_server_answers_unavailable_while_postgresql_is_down(
    start_server: Any, dial: Dialer, pg_database: str, pg_server: PgServer
) -> None:
    server = await start_server(database=pg_database)
    alice = await dial.open(server, "alice", "alice's password")
    bob = await dial.open(server, "bob", "bob's password")
    await drain_all(alice, bob)
    assert (await say(alice, "@bob", "before"))["type"] == "message"
    await asyncio.to_thread(pg_server.stop)
    try:
        assert_error(await say(alice, "@bob", "while down"), "unavailable")
    finally:
        await asyncio.to_thread(pg_server.start)
    reply = await say(alice, "@bob", "after")
    assert reply["type"] == "message"
    texts = [f["text"] for f in await drain(bob) if f.get("type") == "message"]
    assert texts == ["before", "after"]  # nothing delivered that was not stored
