"""Several RedisHubs in one process over a real redis-server: fan-out across nodes exactly once,
messages in id order whatever the order of publication, presence across nodes, a dead node's
users going offline, and Redis going away and coming back."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from tests.redisd import RedisServer

from tlschat.protocol import HEADER, Presence, encode
from tlschat.server.hub import HubUnavailable
from tlschat.server.redis_hub import RedisHub, StreamMessage
from tlschat.server.registry import User

HEARTBEAT = 0.1
NODE_TTL = 0.4


class FakePeer:
    """A session that records, in order, what the hub hands it."""

    def __init__(self, hub: RedisHub, name: str) -> None:
        self.hub = hub
        self.name = name
        self.frames: list[tuple[int, bytes]] = []
        self.cursor = hub.broadcast_cursor()

    def deliver(self, data: bytes, msg_id: int = 0) -> None:
        self.frames.append((msg_id, data))

    def flush(self) -> None:
        pass

    def catch_up(self) -> None:
        self.cursor, frames = self.hub.broadcasts_after(self.cursor)
        self.frames.extend((0, data) for data in frames)

    def ids(self) -> list[int]:
        return [msg_id for msg_id, _ in self.frames if msg_id]

    def presence(self) -> list[tuple[str, bool]]:
        found = []
        for _, data in self.frames:
            frame = json.loads(data[HEADER.size :])
            if frame.get("type") == "presence":
                found.append((frame["nick"], frame["online"]))
        return found


async def eventually(check: Callable[[], bool], within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


class Cluster:
    def __init__(self, url: str) -> None:
        self.url = url
        self.hubs: list[RedisHub] = []
        self.sequence = aioredis.Redis.from_url(url)
        """Stands for the shared store's id sequence (PostgreSQL's, in a deployment)."""

    async def node(self, name: str, **options: float) -> RedisHub:
        hub = RedisHub(
            self.url,
            node=name,
            heartbeat=options.get("heartbeat", HEARTBEAT),
            node_ttl=options.get("node_ttl", NODE_TTL),
        )
        await hub.start(last_id=0)
        self.hubs.append(hub)
        return hub

    async def next_id(self) -> int:
        value: int = await self.sequence.incr("test:sequence")
        return value

    async def send(self, hub: RedisHub, to: list[str], asker: FakePeer | None = None) -> int:
        """What `MessageRules.send` does with the hub: write under `writing()`, then deliver."""
        with hub.writing():
            msg_id = await self.next_id()
        hub.deliver(to, b"m%d" % msg_id, msg_id, skip=asker, echo=b"echo%d" % msg_id)
        return msg_id

    async def close(self) -> None:
        for hub in self.hubs:
            await hub.close()
        await self.sequence.aclose()


@pytest.fixture
async def cluster(redis_server: RedisServer) -> AsyncIterator[Cluster]:
    found = Cluster(redis_server.url)
    yield found
    await found.close()


def login(hub: RedisHub, nick: str, name: str = "") -> tuple[FakePeer, bool]:
    peer = FakePeer(hub, name or nick)
    _, first = hub.attach(User(nick=nick, registered=True), peer)
    return peer, first


async def settled(*hubs: RedisHub) -> None:
    """Every node has heard from every other (each one's join answered)."""
    names = {hub.node for hub in hubs}
    await eventually(lambda: all(set(hub._order.positions) >= names for hub in hubs))


async def test_a_message_reaches_every_session_on_every_node_exactly_once(
    cluster: Cluster,
) -> None:
    a, b, c = [await cluster.node(name) for name in "abc"]
    await settled(a, b, c)
    alice1, _ = login(a, "alice", "alice1")
    alice2, _ = login(a, "alice", "alice2")
    bob, _ = login(b, "bob")
    carol_b, _ = login(b, "carol", "carol_b")
    carol_c, _ = login(c, "carol", "carol_c")
    dave, _ = login(c, "dave")
    msg_id = await cluster.send(a, ["alice", "bob", "carol", "alice"], asker=alice1)
    sessions = [alice1, alice2, bob, carol_b, carol_c]
    await eventually(lambda: all(peer.ids() == [msg_id] for peer in sessions))
    await asyncio.sleep(0.1)  # anything doubled would have come by now
    assert alice1.frames == [(msg_id, b"echo%d" % msg_id)]
    for peer in [alice2, bob, carol_b, carol_c]:
        assert peer.frames == [(msg_id, b"m%d" % msg_id)], peer.name
    assert dave.frames == []
    # A frame without an id (typing, a room event) goes once too, the sender's node included.
    b.deliver(["alice", "dave"], b"typing")
    await eventually(lambda: (0, b"typing") in dave.frames)
    await asyncio.sleep(0.05)
    assert [f for f in alice1.frames if f[0] == 0] == [(0, b"typing")]
    assert [f for f in alice2.frames if f[0] == 0] == [(0, b"typing")]
    assert [f for f in dave.frames if f[0] == 0] == [(0, b"typing")]


async def test_ids_10_and_11_published_in_reverse_reach_every_session_as_10_then_11(
    cluster: Cluster,
) -> None:
    a, b, c = [await cluster.node(name) for name in "abc"]
    await settled(a, b, c)
    for _ in range(9):
        await cluster.next_id()
    alice, _ = login(a, "alice")
    bob, _ = login(b, "bob")
    carol, _ = login(c, "carol")
    everyone = ["alice", "bob", "carol"]
    # a begins its write and gets 10; b gets 11, commits and publishes first.
    write_on_a = a.writing()
    write_on_a.__enter__()
    ten = await cluster.next_id()
    eleven = await cluster.send(b, everyone, asker=bob)
    assert (ten, eleven) == (10, 11)
    await asyncio.sleep(0.15)  # 11 has gone round; it must be held everywhere
    assert alice.ids() == bob.ids() == carol.ids() == []
    assert b.held() == 1
    write_on_a.__exit__(None, None, None)
    a.deliver(everyone, b"m10", ten, skip=alice, echo=b"echo10")
    for peer in (alice, bob, carol):
        await eventually(lambda peer=peer: peer.ids() == [10, 11])  # type: ignore[misc]
    assert alice.frames == [(10, b"echo10"), (11, b"m11")]
    assert bob.frames == [(10, b"m10"), (11, b"echo11")]


async def test_concurrent_senders_on_every_node_arrive_in_order_once(cluster: Cluster) -> None:
    hubs = [await cluster.node(name) for name in "abc"]
    await settled(*hubs)
    peers = [login(hub, f"user{i}")[0] for i, hub in enumerate(hubs)]
    everyone = [f"user{i}" for i in range(3)]

    async def sender(i: int) -> list[int]:
        return [await cluster.send(hubs[i], everyone, asker=peers[i]) for _ in range(30)]

    batches = await asyncio.gather(*(sender(i) for i in range(3)))
    sent = sorted(msg_id for batch in batches for msg_id in batch)
    for peer in peers:
        await eventually(lambda peer=peer: len(peer.ids()) == len(sent))  # type: ignore[misc]
        assert peer.ids() == sent


async def test_presence_is_the_union_over_nodes(cluster: Cluster) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")
    await settled(a, b)
    login(a, "watcher")
    bob_b, first = login(b, "Bob")
    assert first
    await eventually(lambda: a.online("bob") is not None)
    remote = a.online("BOB")
    assert remote is not None
    assert (remote.nick, remote.registered, remote.identity) == ("Bob", True, "bob")
    assert dict(a.online_entries())["bob"] == b'{"nick":"Bob","online":true}'
    # Online elsewhere already: a second node's session is not "first".
    bob_a, first = login(a, "bob")
    assert not first
    # A node that starts later learns who is online from Redis.
    c = await cluster.node("c")
    assert {key for key, _ in c.online_entries()} == {"watcher", "bob"}
    # The last session anywhere decides: a's goes first (bob still on b), then b's.
    user_a = a.online("bob")
    assert user_a is not None
    assert not a.detach(user_a, bob_a)
    await eventually(lambda: b.online("bob") is not None and len(b.users["bob"].sessions) == 1)
    await asyncio.sleep(0.05)
    assert b.detach(b.users["bob"], bob_b)
    await eventually(lambda: a.online("bob") is None and c.online("bob") is None)


async def test_two_last_sessions_ending_at_once_say_offline_once(cluster: Cluster) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")
    await settled(a, b)
    watcher, _ = login(a, "watcher")
    bob_a, _ = login(a, "bob")
    bob_b, _ = login(b, "bob")
    await eventually(lambda: a._presence.elsewhere("bob", "a") is not None)
    await eventually(lambda: b._presence.elsewhere("bob", "b") is not None)
    # Each node still sees the other's session: neither says offline at once.
    assert not a.detach(a.users["bob"], bob_a)
    assert not b.detach(b.users["bob"], bob_b)
    await eventually(lambda: ("bob", False) in watcher.presence())
    await asyncio.sleep(0.1)
    assert watcher.presence().count(("bob", False)) == 1
    assert a.online("bob") is None
    assert b.online("bob") is None


async def test_a_dead_nodes_users_go_offline_within_the_bound(cluster: Cluster) -> None:
    a = await cluster.node("a")
    c = await cluster.node("c")
    await settled(a, c)
    watcher, _ = login(a, "watcher")
    login(c, "carol")
    await eventually(lambda: a.online("carol") is not None)
    died = time.monotonic()
    await c.close(leave=False)  # as kill -9 would: no goodbye, its keys just stop renewing
    await eventually(lambda: a.online("carol") is None, within=NODE_TTL + 4 * HEARTBEAT + 1)
    assert time.monotonic() - died <= NODE_TTL + 2 * HEARTBEAT + 0.5
    await eventually(lambda: ("carol", False) in watcher.presence())
    # The dead writer no longer holds the stream back.
    assert "c" not in a._order.positions
    msg_id = await cluster.send(a, ["watcher"])
    await eventually(lambda: watcher.ids() == [msg_id])


async def test_a_node_that_leaves_is_forgotten_at_once(cluster: Cluster) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")
    await settled(a, b)
    login(b, "bob")
    await eventually(lambda: a.online("bob") is not None)
    await b.close()
    await eventually(lambda: "b" not in a._order.positions, within=0.5)
    assert a.online("bob") is None


async def test_without_redis_the_hub_refuses_and_recovers_by_itself(
    cluster: Cluster, redis_server: RedisServer
) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")
    await settled(a, b)
    alice, _ = login(a, "alice")
    bob, _ = login(b, "bob")
    redis_server.stop()
    await eventually(lambda: not a.connected and not b.connected)
    with pytest.raises(HubUnavailable) as refused:
        a.writing()
    assert refused.value.code == "unavailable"
    redis_server.start()  # the same port
    await eventually(lambda: a.connected and b.connected, within=5.0)
    await settled(a, b)
    msg_id = await cluster.send(a, ["alice", "bob"], asker=alice)
    await eventually(lambda: bob.ids() == [msg_id] and alice.ids() == [msg_id])
    # Presence came back with the joins: each node knows the other's user again.
    await eventually(lambda: a.online("bob") is not None and b.online("alice") is not None)


async def test_a_lost_notification_is_fetched_from_the_store(cluster: Cluster) -> None:
    """The hook the store answers: ids a release passes that no notification carried."""
    asked: list[tuple[int, int, frozenset[int]]] = []

    async def fetch(after: int, upto: int, have: frozenset[int]) -> list[StreamMessage]:
        asked.append((after, upto, have))
        return [StreamMessage(i, ("alice",), b"m%d" % i) for i in range(after + 1, upto + 1)
                if i not in have]  # fmt: skip

    a = RedisHub(cluster.url, node="a", heartbeat=HEARTBEAT, node_ttl=NODE_TTL,
                 fetch_missing=fetch)  # fmt: skip
    await a.start(last_id=0)
    cluster.hubs.append(a)
    b = await cluster.node("b")
    await settled(a, b)
    alice, _ = login(a, "alice")
    lost = await cluster.next_id()  # b "commits" 1 and its notification is lost
    kept = await cluster.send(b, ["alice"])
    await eventually(lambda: alice.ids() == [lost, kept])
    assert asked[0][2] == frozenset({kept})


async def test_a_node_broadcast_reaches_other_nodes_once(cluster: Cluster) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")
    await settled(a, b)
    here, _ = login(a, "here")
    there, _ = login(b, "there")
    a.broadcast(encode(Presence(nick="x", online=True)))
    await eventually(lambda: ("x", True) in there.presence())
    await eventually(lambda: ("x", True) in here.presence())
    await asyncio.sleep(0.1)
    assert here.presence() == [("x", True)]
    assert there.presence() == [("x", True)]


async def test_registrations_are_counted_for_the_whole_cluster(cluster: Cluster) -> None:
    a, b = await cluster.node("a"), await cluster.node("b")
    on_a = a.event_window("registrations", 2, 60.0)
    on_b = b.event_window("registrations", 2, 60.0)
    assert await on_a.blocked_for("10.0.0.1") == 0.0
    await on_a.record("10.0.0.1")
    await on_b.record("10.0.0.1")
    wait = await on_b.blocked_for("10.0.0.1")
    assert 59.0 < wait <= 60.0
    assert await on_a.blocked_for("10.0.0.1") > 59.0
    assert await on_a.blocked_for("10.0.0.2") == 0.0


async def test_account_limits_answer_unavailable_without_redis(
    cluster: Cluster, redis_server: RedisServer
) -> None:
    a = await cluster.node("a")
    window = a.event_window("registrations", 2, 60.0)
    redis_server.stop()
    with pytest.raises(HubUnavailable):
        await window.blocked_for("10.0.0.1")
