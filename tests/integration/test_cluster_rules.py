"""The rules across nodes: two or three in-process daemons sharing one PostgreSQL database and one
Redis, each with its own data directory. Rooms, invitations, topics, kicks, bans, guest holds,
the failed-login limit and files are one truth, whichever node a client is on
(docs/architecture.md "Several nodes")."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.test_files import download, uploaded
from tests.redisd import RedisServer
from tests.wire import Wire

from tlschat.config import ServerConfig
from tlschat.server.daemon import ChatServer
from tlschat.server.redis_hub import RedisHub
from tlschat.server.store import NewMessage

Node = ChatServer
StartNode = Callable[..., Awaitable[ChatServer]]
Login = Callable[..., Awaitable[Wire]]


async def until(check: Callable[[], Any], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await _truth(check()):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def _truth(value: Any) -> bool:
    if asyncio.iscoroutine(value):
        value = await value
    return bool(value)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.folder.mkdir()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def start_node(
    server_config: ServerConfig, pg_database: str, redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[StartNode]:
    """`await start_node(**overrides)`: one more node of the cluster, its own data directory."""
    started: list[ChatServer] = []

    async def factory(heartbeat: float | None = None, **overrides: Any) -> ChatServer:
        config = dataclasses.replace(
            server_config,
            data_dir=tmp_path / f"node{len(started)}",
            database=pg_database,
            redis=redis_server.url,
            **overrides,
        )
        node = ChatServer(config)
        assert isinstance(node.hub, RedisHub)
        if heartbeat is not None:  # a quick death: keys expire after three silent beats
            node.hub.heartbeat, node.hub.node_ttl = heartbeat, heartbeat * 3
        await node.start()
        started.append(node)
        return node

    yield factory
    for node in reversed(started):
        await node.close()


@pytest.fixture
async def login(client_ctx: ssl.SSLContext) -> AsyncIterator[Login]:
    """`await login(node, nick, password=None, **hello)`: a logged-in raw client on `node`."""
    opened: list[Wire] = []

    async def factory(
        node: ChatServer, nick: str, password: str | None = None, **extra: Any
    ) -> Wire:
        wire = await Wire.open(node.port, client_ctx)
        opened.append(wire)
        welcome = await wire.hello(nick, password, **extra)
        assert welcome["type"] == "welcome", welcome
        wire.welcome = welcome  # type: ignore[attr-defined]
        return wire

    yield factory
    for wire in opened:
        await wire.close()


async def members_seen(wire: Wire, room: str, *nicks: str) -> None:
    """Wait until `wire` is told `room` has exactly these members (a node's events about a room
    come after its view has the change)."""
    while True:
        frame = await wire.recv_match(type="members", room=room)
        if sorted(frame["members"]) == sorted(nicks):
            return


async def test_a_room_made_on_one_node_carries_messages_from_another_to_a_third(
    start_node: StartNode, login: Login
) -> None:
    a, b, c = await start_node(), await start_node(), await start_node()
    alice, bob, carol = await login(a, "alice"), await login(b, "bob"), await login(c, "carol")
    made = await alice.request({"type": "create", "room": "ops", "public": True})
    assert made["type"] == "joined"
    # Joined at once on the other nodes: the store answers for a room their view lacks yet.
    assert (await bob.request({"type": "join", "room": "ops"}))["type"] == "joined"
    assert (await carol.request({"type": "join", "room": "ops"}))["type"] == "joined"
    await members_seen(bob, "ops", "alice", "bob", "carol")
    sent = await bob.request({"type": "send", "to": "#ops", "text": "from b"})
    assert sent["type"] == "message"
    for wire in (alice, carol):
        got = await wire.recv_match(type="message", text="from b")
        assert got["id"] == sent["id"]
    # Each member's replay starts after the id committed anywhere before it joined.
    later = await start_node()
    dave = await login(later, "dave")
    assert (await dave.request({"type": "join", "room": "ops"}))["type"] == "joined"
    history = await dave.request({"type": "history", "with": "#ops"})
    assert [m["text"] for m in history["messages"]] == ["from b"]
    await dave.close()
    again = await login(later, "dave2")
    assert again.welcome["last_id"] >= sent["id"]  # type: ignore[attr-defined]


async def test_an_invitation_made_on_one_node_is_accepted_on_another(
    start_node: StartNode, login: Login
) -> None:
    a, b = await start_node(), await start_node()
    alice, bob = await login(a, "alice"), await login(b, "bob")
    made = await alice.request({"type": "create", "room": "secret", "invite": ["bob"]})
    assert made["type"] == "joined"
    invited = await bob.recv_type("invited")
    assert invited["room"] == "secret"
    accepted = await bob.request({"type": "accept", "room": "secret"})
    assert accepted["type"] == "joined"
    assert sorted(accepted["members"]) == ["alice", "bob"]
    await members_seen(alice, "secret", "alice", "bob")
    sent = await alice.request({"type": "send", "to": "#secret", "text": "welcome"})
    assert (await bob.recv_match(type="message", text="welcome"))["id"] == sent["id"]


async def test_a_topic_set_on_one_node_is_in_rooms_on_another(
    start_node: StartNode, login: Login
) -> None:
    a, _, c = await start_node(), await start_node(), await start_node()
    alice, carol = await login(a, "alice"), await login(c, "carol")
    await alice.request({"type": "create", "room": "ops", "public": True})
    await carol.request({"type": "join", "room": "ops"})
    await members_seen(alice, "ops", "alice", "carol")
    set_ = await carol.request({"type": "topic", "room": "ops", "topic": "deploy friday"})
    assert set_["type"] == "topic"
    await alice.recv_match(type="topic", topic="deploy friday")
    rooms = await alice.request({"type": "rooms"})
    assert rooms["rooms"][0]["topic"] == "deploy friday"
    assert rooms["public_rooms"][0]["topic"] == "deploy friday"


async def test_a_kick_on_one_node_takes_the_user_out_on_every_node(
    start_node: StartNode, login: Login
) -> None:
    a, b = await start_node(), await start_node()
    alice, bob = await login(a, "alice"), await login(b, "bob")
    await alice.request({"type": "create", "room": "ops", "public": True})
    await bob.request({"type": "join", "room": "ops"})
    await members_seen(alice, "ops", "alice", "bob")
    kicked = await alice.request({"type": "kick", "room": "ops", "nick": "bob", "reason": "spam"})
    assert kicked["type"] == "ok"
    left = await bob.recv_match(type="left", room="ops")
    assert left["by"] == "alice"
    refused = await bob.request({"type": "send", "to": "#ops", "text": "still here?"})
    assert refused["type"] == "error"
    again = await bob.request({"type": "join", "room": "ops"})
    assert (again["type"], again["code"]) == ("error", "forbidden")


async def test_a_ban_on_one_node_closes_the_sessions_on_another(
    start_node: StartNode, login: Login, client_ctx: ssl.SSLContext
) -> None:
    a, b = await start_node(admin=("root",)), await start_node(admin=("root",))
    root = await login(a, "root", "pw-root")
    mallory = await login(b, "mallory", "pw-mallory")
    banned = await root.request({"type": "ban", "nick": "mallory", "reason": "spam"})
    assert banned["type"] == "ok"
    bye = await mallory.recv_type("bye")
    assert "spam" in bye["reason"]
    assert await mallory.closed_by_server()
    wire = await Wire.open(b.port, client_ctx)
    try:
        refused = await wire.hello("mallory", "pw-mallory")
        assert (refused["type"], refused["code"]) == ("error", "banned")
    finally:
        await wire.close()


async def test_a_starting_node_leaves_the_guests_of_other_nodes_online(
    start_node: StartNode, login: Login
) -> None:
    a = await start_node()
    await login(a, "gina")
    await start_node()
    guest = await a.store.get_guest("gina")
    assert guest is not None
    assert guest.held_until is None


async def test_the_guests_of_a_dead_node_are_held_by_the_node_that_declares_it(
    start_node: StartNode, login: Login, client_ctx: ssl.SSLContext
) -> None:
    a = await start_node(heartbeat=0.2)
    doomed = await start_node(heartbeat=0.2)
    gina = await login(doomed, "gina")
    token = gina.welcome["resume"]  # type: ignore[attr-defined]
    alice = await login(a, "alice")
    # The node stops renewing its keys, as a crash would: its sessions never say goodbye.
    hub = doomed.hub
    assert isinstance(hub, RedisHub)
    await hub.close(leave=False)
    await alice.recv_match(type="presence", nick="gina", online=False, seconds=5)

    async def held() -> bool:
        guest = await a.store.get_guest("gina")
        return guest is not None and guest.held_until is not None

    await until(held)
    wire = await Wire.open(a.port, client_ctx)
    try:
        taken = await wire.hello("gina")
        assert (taken["type"], taken["code"]) == ("error", "nick_taken")
        back = await wire.hello("gina", resume=token)
        assert back["type"] == "welcome"
    finally:
        await wire.close()


async def test_failed_logins_are_counted_across_nodes(
    start_node: StartNode, login: Login, client_ctx: ssl.SSLContext
) -> None:
    limits = {"max_login_failures": 2, "login_failure_window": 60.0}
    a, b = await start_node(**limits), await start_node(**limits)
    await (await login(a, "alice", "right")).close()
    for node in (a, b):
        wire = await Wire.open(node.port, client_ctx)
        try:
            wrong = await wire.hello("alice", "wrong")
            assert (wrong["type"], wrong["code"]) == ("error", "auth_failed")
        finally:
            await wire.close()
    wire = await Wire.open(a.port, client_ctx)
    try:
        limited = await wire.hello("alice", "wrong")
        assert (limited["type"], limited["code"]) == ("error", "rate_limited")
    finally:
        await wire.close()


async def test_a_message_whose_notification_was_lost_comes_from_the_store(
    start_node: StartNode, login: Login
) -> None:
    a, b = await start_node(), await start_node()
    alice = await login(a, "alice", "pw-alice")
    bob = await login(b, "bob", "pw-bob")
    # Committed by node b, never published (b died between its commit and its publish, or
    # Redis dropped the notification): the next message's release passes over its id.
    lost = await b.store.add_message(
        NewMessage(
            ts="2030-01-01T00:00:00Z",
            sender="bob",
            to_addr="@alice",
            text="lost",
            dm=("alice", "bob"),
            sender_id="bob",
        )
    )
    sent = await bob.request({"type": "send", "to": "@alice", "text": "after"})
    assert sent["id"] > lost
    first = await alice.recv_type("message")
    second = await alice.recv_type("message")
    assert [(first["id"], first["text"]), (second["id"], second["text"])] == [
        (lost, "lost"),
        (sent["id"], "after"),
    ]


async def test_a_file_uploaded_on_one_node_downloads_from_another(
    start_node: StartNode, login: Login, tmp_path: Path
) -> None:
    shared = tmp_path / "shared-files"  # an NFS mount, say: one folder, every node
    a, b = await start_node(files_dir=shared), await start_node(files_dir=shared)
    alice = await login(a, "alice", "pw-alice")
    bob = await login(b, "bob", "pw-bob")
    data = os.urandom(5000)
    meta = await uploaded(alice, data)
    sent = await alice.request({"type": "send", "to": "@bob", "text": "see", "file": meta["id"]})
    assert sent["type"] == "message"
    got = await bob.recv_match(type="message", text="see")
    assert got["file"]["id"] == meta["id"]
    assert await download(bob, meta["id"]) == data
    # The garbage collection of either node leaves what the other node's messages carry.
    assert b.files is not None
    await b.files.collect_garbage()
    assert await download(bob, meta["id"]) == data
