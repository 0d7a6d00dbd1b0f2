"""Three `tlschat serve` processes, one chat (issue 15): one PostgreSQL database, one Redis, real
TLS, real clients. What must hold across nodes: every session of every party receives each
message exactly once and in increasing id order, presence is cluster-wide, groups span the
nodes, and a node killed with SIGKILL costs its users nothing but a reconnection.

One cluster serves the whole module (starting three daemons is the expensive part); each test
uses nicks of its own, and a node a test killed is started again before the next test.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from tests.cluster import Cluster, Node
from tests.conftest import CertFiles
from tests.integration.helpers_rules import PASSWORD, Dialer
from tests.pgserver import PgDatabases
from tests.redisd import RedisServer
from tests.wire import Wire, timeout

from tlschat.client import Backoff, ChatClient, ConnectionState, StateChanged
from tlschat.client.connection import _Link
from tlschat.protocol import Message, ServerFrame

NODES = 3


@pytest.fixture(scope="module")
def cluster(
    pg_databases: PgDatabases, cert_files: CertFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    redis = RedisServer(root / "redis")
    redis.folder.mkdir()
    redis.start()
    database = pg_databases.take()
    nodes = Cluster(
        root,
        database=pg_databases.server.dsn(database),
        redis=redis.url,
        cert=cert_files.cert,
        key=cert_files.key,
        nodes=NODES,
    )
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()
        redis.stop()
        pg_databases.give_back(database)


@pytest.fixture
def nodes(cluster: Cluster) -> Cluster:
    """The cluster with every node running (a node an earlier test killed is started again)."""
    cluster.start()
    return cluster


_numbers = itertools.count(1)


def nick(name: str) -> str:
    """A nick no other test of the module uses (the cluster and its database are shared)."""
    return f"{name}{next(_numbers)}"


async def login(dial: Dialer, node: Node, name: str, **hello: Any) -> Wire:
    """A raw-wire session of `name` (a registered account) on `node`."""
    return await dial.open(node, name, PASSWORD, **hello)


async def messages_until(wire: Wire, done: set[int], seconds: float = 10) -> list[int]:
    """The ids of the `message` frames `wire` receives, in order, until every id of `done` has
    arrived. Frames of other types are left in the backlog."""
    got: list[int] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout(seconds)
    kept = [f for f in wire.backlog if f.get("type") != "message"]
    pending = [f for f in wire.backlog if f.get("type") == "message"]
    wire.backlog = kept
    while not done <= set(got):
        if pending:
            frame = pending.pop(0)
        else:
            left = deadline - loop.time()
            assert left > 0, f"still waiting for {sorted(done - set(got))}; got {got}"
            frame = await wire._read_frame(left / timeout(1))
            if frame.get("type") != "message":
                wire.backlog.append(frame)
                continue
        got.append(frame["id"])
    return got


def assert_exactly_once_in_order(got: list[int], expected: set[int], who: str) -> None:
    assert got == sorted(set(got)), f"{who}: ids not strictly increasing: {got}"
    assert set(got) == expected, (
        f"{who}: missing {sorted(expected - set(got))}, unexpected {sorted(set(got) - expected)}"
    )


# --- direct messages and presence ---------------------------------------------------------------


async def test_direct_messages_reach_every_session_on_every_node_once(
    nodes: Cluster, dial: Dialer
) -> None:
    alice, bob = nick("alice"), nick("bob")
    n0, n1, n2 = nodes.nodes
    sessions = {
        "alice@0": await login(dial, n0, alice),
        "alice@2": await login(dial, n2, alice),
        "bob@1": await login(dial, n1, bob),
        "bob@2": await login(dial, n2, bob),
    }
    first = await sessions["alice@0"].request({"type": "send", "to": f"@{bob}", "text": "hi"})
    assert first["type"] == "message", first
    second = await sessions["bob@1"].request({"type": "send", "to": f"@{alice}", "text": "yo"})
    assert second["type"] == "message", second
    third = await sessions["bob@2"].request({"type": "send", "to": f"@{alice}", "text": "!"})
    assert third["type"] == "message", third
    assert first["id"] < second["id"] < third["id"]

    ids = {first["id"], second["id"], third["id"]}
    # Each sending session took its echo with `request`; every other copy of each message
    # must reach every session of both parties, once, in order.
    echoed = {"alice@0": first["id"], "bob@1": second["id"], "bob@2": third["id"]}
    for name, wire in sessions.items():
        want = ids - {echoed.get(name, 0)}
        got = await messages_until(wire, want)
        assert_exactly_once_in_order(got, want, name)


async def test_presence_is_cluster_wide(nodes: Cluster, dial: Dialer) -> None:
    alice, bob, carol = nick("alice"), nick("bob"), nick("carol")
    n0, n1, n2 = nodes.nodes
    a0 = await login(dial, n0, alice)
    b1 = await login(dial, n1, bob)
    assert {u["nick"]: u["online"] for u in b1.welcome["users"]}.get(alice) is True  # type: ignore[attr-defined]
    await a0.recv_match(type="presence", nick=bob, online=True)

    # A second session on another node: bob stays online until both have ended.
    b2 = await login(dial, n2, bob)
    c2 = await login(dial, n2, carol)
    users = await c2.request({"type": "users"})
    online = {u["nick"] for u in users["users"] if u["online"]}
    assert {alice, bob, carol} <= online
    await b1.close()
    await b2.close()
    offline = await a0.recv_match(type="presence", nick=bob)
    assert offline["online"] is False
    # carol's node saw the same: bob gone, alice still there.
    await c2.recv_match(type="presence", nick=bob, online=False)
    users = await c2.request({"type": "users"})
    now = {u["nick"]: u["online"] for u in users["users"]}
    assert now.get(alice) is True
    assert now.get(bob) is not True
    # No second "offline" nor a stray "online" for bob reached alice.
    assert not [f for f in a0.backlog if f.get("type") == "presence" and f.get("nick") == bob]


# --- groups ---------------------------------------------------------------------------------------


async def test_a_group_spans_the_nodes(nodes: Cluster, dial: Dialer) -> None:
    alice, bob, carol = nick("alice"), nick("bob"), nick("carol")
    room = nick("crew")
    n0, n1, n2 = nodes.nodes
    a0 = await login(dial, n0, alice)
    b1 = await login(dial, n1, bob)
    c2 = await login(dial, n2, carol)
    joined = await a0.request({"type": "create", "room": room, "invite": [bob, carol]})
    assert joined["type"] == "joined", joined
    for wire in (b1, c2):
        await wire.recv_match(type="invited", room=room)
        accepted = await wire.request({"type": "accept", "room": room})
        assert accepted["type"] == "joined", accepted
    members = sorted([alice, bob, carol])
    for wire in (a0, b1, c2):
        await wire.recv_match(type="members", room=room, members=members)
    sent = []
    for wire, text in ((a0, "from 0"), (b1, "from 1"), (c2, "from 2")):
        echo = await wire.request({"type": "send", "to": f"#{room}", "text": text})
        assert echo["type"] == "message", echo
        sent.append(echo)
    ids = [echo["id"] for echo in sent]
    for i, wire in enumerate((a0, b1, c2)):
        others = {ids[j] for j in range(3) if j != i}
        got = await messages_until(wire, others)
        assert_exactly_once_in_order(got, others, f"member {i}")
    topic = await c2.request({"type": "topic", "room": room, "topic": "three nodes"})
    assert topic["type"] == "topic", topic
    for wire in (a0, b1):
        await wire.recv_match(type="topic", room=room, topic="three nodes")
    left = await b1.request({"type": "leave", "room": room})
    assert left["type"] == "left", left
    for wire in (a0, c2):
        await wire.recv_match(type="members", room=room, members=sorted([alice, carol]))
    refused = await b1.request({"type": "send", "to": f"#{room}", "text": "still here?"})
    assert refused["type"] == "error", refused


# --- everyone sending at once ---------------------------------------------------------------------


async def _send_burst(wire: Wire, targets: list[str], count: int, tag: str) -> list[int]:
    """Send `count` messages round-robin to `targets` without waiting for each acknowledgement
    (many writes in flight on this node at once); the acknowledged ids, in sending order."""
    refs = [f"{tag}-{i}" for i in range(count)]
    for i, ref in enumerate(refs):
        await wire.send({"type": "send", "to": targets[i % len(targets)], "text": ref, "ref": ref})
    acked: list[int] = []
    for ref in refs:
        echo = await wire.recv_match(seconds=20, ref=ref)
        assert echo["type"] == "message", echo
        acked.append(echo["id"])
    return acked


@pytest.mark.slow
async def test_concurrent_senders_on_all_nodes_exactly_once_in_order(
    nodes: Cluster, dial: Dialer
) -> None:
    names = [nick("ann"), nick("ben"), nick("cat")]
    per_sender = 60
    # Each user sends from the node of its index and has a second, listening session on the
    # next node: every node holds senders, recipients and writes in flight.
    senders = [await login(dial, nodes.nodes[i], names[i]) for i in range(3)]
    listeners = [await login(dial, nodes.nodes[(i + 1) % 3], names[i]) for i in range(3)]
    targets = [[f"@{names[j]}" for j in range(3) if j != i] for i in range(3)]
    bursts = await asyncio.gather(
        *(_send_burst(senders[i], targets[i], per_sender, names[i]) for i in range(3))
    )
    all_ids = [msg_id for burst in bursts for msg_id in burst]
    assert len(set(all_ids)) == len(all_ids) == 3 * per_sender
    for burst in bursts:
        assert burst == sorted(burst)  # one session's messages get increasing ids
    to: dict[int, str] = {}
    for i, burst in enumerate(bursts):
        for k, msg_id in enumerate(burst):
            to[msg_id] = targets[i][k % 2][1:]
    for i, name in enumerate(names):
        mine = set(bursts[i])
        addressed = {msg_id for msg_id, nick_ in to.items() if nick_ == name}
        # The sending session took its echoes with `recv_match`: what else it received is
        # what others sent it, still in order; the listener gets both.
        got = await messages_until(senders[i], addressed, seconds=20)
        assert_exactly_once_in_order(got, addressed, f"{name} (sender)")
        got = await messages_until(listeners[i], mine | addressed, seconds=20)
        assert_exactly_once_in_order(got, mine | addressed, f"{name} (listener)")


# --- a node killed, a node restarted -----------------------------------------------------------


class RecordingClient(ChatClient):
    """A ChatClient that also records every `message` frame as it came off the wire (before
    its own deduplication), so a message the server sent twice shows."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wire_ids: list[int] = []
        self.links: list[int] = []
        self.arrived = asyncio.Event()

    def _dispatch(self, link: _Link, frame: ServerFrame) -> None:
        if isinstance(frame, Message):
            self.wire_ids.append(frame.id)
            self.links.append(id(link))
            self.arrived.set()
        super()._dispatch(link, frame)

    async def wait_count(self, count: int, seconds: float) -> None:
        async with asyncio.timeout(timeout(seconds)):
            while len(self.wire_ids) < count:
                self.arrived.clear()
                await self.arrived.wait()

    async def wait_ids(self, ids: list[int], seconds: float) -> None:
        """Until every id of `ids` came off the wire (the assertion names what is missing)."""
        want = set(ids)
        try:
            async with asyncio.timeout(timeout(seconds)):
                while not want <= set(self.wire_ids):
                    self.arrived.clear()
                    await self.arrived.wait()
        except TimeoutError:
            raise AssertionError(f"{self.nick}: lost {sorted(want - set(self.wire_ids))}") from None


@pytest.fixture
async def clients(client_ctx: Any) -> AsyncIterator[list[ChatClient]]:
    made: list[ChatClient] = []
    yield made
    for client in made:
        await client.close()


def cluster_client(
    nodes: Cluster, first: int, name: str, ctx: Any, made: list[ChatClient]
) -> RecordingClient:
    (host, port), *others = nodes.addresses(first)
    client = RecordingClient(
        host,
        port,
        name,
        password=PASSWORD,
        ssl_context=ctx,
        other_servers=others,
        backoff=Backoff(base=0.05, cap=0.5),
    )
    made.append(client)
    return client


async def _states(client: ChatClient, seen: list[StateChanged]) -> None:
    async for event in client.events():
        if isinstance(event, StateChanged):
            seen.append(event)


@pytest.mark.slow
async def test_kill_9_of_a_node_while_messages_flow_loses_nothing(
    nodes: Cluster, client_ctx: Any, clients: list[ChatClient]
) -> None:
    victim = nodes.nodes[0]
    per_sender = 100
    alice, dave, bob, carol = nick("alice"), nick("dave"), nick("bob"), nick("carol")
    # alice and dave are on node 0 (the one to die) with every address; bob on node 1 writes to
    # alice, carol on node 2 to dave: 200 messages, about a third of them before the kill.
    receivers = [cluster_client(nodes, 0, who, client_ctx, clients) for who in (alice, dave)]
    senders = [
        cluster_client(nodes, 1, bob, client_ctx, clients),
        cluster_client(nodes, 2, carol, client_ctx, clients),
    ]
    for client in (*receivers, *senders):
        async with asyncio.timeout(timeout(15)):
            await client.connect()
    assert [client.port for client in receivers] == [victim.port, victim.port]
    states: list[list[StateChanged]] = [[], []]
    watchers = [
        asyncio.create_task(_states(client, seen))
        for client, seen in zip(receivers, states, strict=True)
    ]
    # The senders' own events are not read: keep their queues from growing unread.
    drains = [asyncio.create_task(_states(client, [])) for client in senders]

    async def send_all(client: ChatClient, to: str) -> list[int]:
        acked = []
        for i in range(per_sender):
            echo = await client.send_message(f"@{to}", f"{i}")
            acked.append(echo.id)
        return acked

    flows = [
        asyncio.create_task(send_all(senders[0], alice)),
        asyncio.create_task(send_all(senders[1], dave)),
    ]
    try:
        await receivers[0].wait_count(per_sender // 3, seconds=20)
        await asyncio.to_thread(victim.kill)
        acked = await asyncio.wait_for(asyncio.gather(*flows), timeout(40))
        for client, sent in zip(receivers, acked, strict=True):
            await client.wait_ids(sent, seconds=20)
    finally:
        for task in (*flows, *watchers, *drains):
            task.cancel()
    for client, sent, seen in zip(receivers, acked, states, strict=True):
        who = client.nick
        ids = client.wire_ids
        assert set(ids) == set(sent), f"{who}: lost {sorted(set(sent) - set(ids))}"
        # Which connection each id came on: 0 the killed node's, 1 the next one's.
        first_link = client.links[0]
        trace = [(i, int(link != first_link)) for i, link in zip(ids, client.links, strict=True)]
        assert ids == sorted(set(ids)), f"{who}: ids repeated or out of order: {trace}"
        assert client.port != victim.port, f"{who} is still on the killed node"
        assert len(set(client.links)) == 2, f"{who}: not exactly one failover"
        assert any(s.state is ConnectionState.RECONNECTING for s in seen)
        assert client.state is ConnectionState.CONNECTED


async def _presence(wire: Wire, who: str, online: bool, seconds: float) -> None:
    frame = await wire.recv_match(seconds, type="presence", nick=who)
    assert frame["online"] is online, frame


@pytest.mark.slow
async def test_a_dead_node_s_users_go_offline_and_a_restarted_node_rejoins(
    nodes: Cluster, dial: Dialer
) -> None:
    alice, frank, erin = nick("alice"), nick("frank"), nick("erin")
    n0, n1, n2 = nodes.nodes
    a0 = await login(dial, n0, alice)
    f1 = await login(dial, n1, frank)
    e2 = await login(dial, n2, erin)
    await a0.recv_match(type="presence", nick=erin, online=True)
    await f1.recv_match(type="presence", nick=erin, online=True)

    await asyncio.to_thread(n2.kill)
    # Its keys expire after 3 heartbeats; the next heartbeat of a survivor declares it dead.
    await _presence(a0, erin, False, seconds=10)
    await _presence(f1, erin, False, seconds=10)
    assert await e2.closed_by_server(seconds=5)

    await asyncio.to_thread(n2.start)
    e2 = await login(dial, n2, erin)
    welcome: dict[str, Any] = e2.welcome  # type: ignore[attr-defined]
    online = {u["nick"] for u in welcome["users"] if u["online"]}
    assert {alice, frank, erin} <= online
    await _presence(a0, erin, True, seconds=10)
    await _presence(f1, erin, True, seconds=10)
    to_alice = await e2.request({"type": "send", "to": f"@{alice}", "text": "back"})
    assert to_alice["type"] == "message", to_alice
    got = await a0.recv_match(type="message", id=to_alice["id"])
    assert got["text"] == "back"
    to_erin = await f1.request({"type": "send", "to": f"@{erin}", "text": "welcome back"})
    assert to_erin["type"] == "message", to_erin
    assert to_erin["id"] > to_alice["id"]
    got = await e2.recv_match(type="message", id=to_erin["id"])
    assert got["text"] == "welcome back"


async def test_a_file_uploaded_on_one_node_downloads_from_the_others(
    nodes: Cluster, client_ctx: Any, clients: list[ChatClient]
) -> None:
    assert nodes.files_dir is not None, "the daemon has no --files-dir"
    alice, bob = nick("alice"), nick("bob")
    uploader = cluster_client(nodes, 0, alice, client_ctx, clients)
    readers = [cluster_client(nodes, i, bob, client_ctx, clients) for i in (1, 2)]
    for client in (uploader, *readers):
        async with asyncio.timeout(timeout(15)):
            await client.connect()
    data = bytes(range(256)) * 300  # several chunks
    meta = await uploader.upload("notes.bin", data)
    echo = await uploader.send_message(f"@{bob}", "the notes", file=meta.id)
    assert echo.file is not None
    for reader in readers:
        assert reader.port != uploader.port
        async with asyncio.timeout(timeout(10)):
            assert await reader.download(meta.id, meta=meta) == data


async def test_a_node_reports_the_cluster_in_its_metrics(
    nodes: Cluster, start_server: Any, dial: Dialer
) -> None:
    from tests.integration.test_metrics import scrape, value

    # A fourth node, in this process, joins the three (its own data directory).
    fourth = await start_server(
        database=nodes.database, redis=nodes.redis, metrics="127.0.0.1:0", node_heartbeat=0.5
    )
    assert fourth.metrics is not None
    alice, bob = nick("alice"), nick("bob")
    a = await login(dial, fourth, alice)
    b = await login(dial, nodes.nodes[1], bob)
    echo = await b.request({"type": "send", "to": f"@{alice}", "text": "to the fourth"})
    await a.recv_match(type="message", id=echo["id"])
    samples = await scrape(fourth.metrics.port)
    assert value(samples, "tlschat_cluster_redis_connected") == 1
    assert value(samples, "tlschat_cluster_position") >= echo["id"]
    assert ("tlschat_cluster_messages_held", ()) in samples
    assert value(samples, "tlschat_users_online") >= 1


# --- what the kill test found ---------------------------------------------------------------------


async def test_a_live_message_at_or_below_last_seen_is_not_sent_again(
    nodes: Cluster, dial: Dialer
) -> None:
    """A client that saw id N on a node that died resumes elsewhere with `last_seen` N while N
    may not be released there yet: the replay (ids above N) is empty and N comes live a moment
    later. The session's floor is `last_seen`, so it is not sent a second time."""
    bob, alice = nick("lsbob"), nick("lsalice")
    n0, n1, _ = nodes.nodes
    b0 = await login(dial, n0, bob)
    a0 = await login(dial, n0, alice)
    sent = await b0.request({"type": "send", "to": f"@{alice}", "text": "seen already"})
    seen = await a0.recv_match(type="message", id=sent["id"])
    # alice saw it on node 0 and comes back on node 1 with last_seen = its id, at once.
    a1 = await login(dial, n1, alice, last_seen=seen["id"])
    after = await b0.request({"type": "send", "to": f"@{alice}", "text": "new"})
    got = await a1.recv_type("message")
    assert got["id"] == after["id"], f"sent again at or below last_seen: {got}"


async def test_a_last_seen_beyond_the_newest_id_does_not_silence_a_session(connect: Any) -> None:
    """A `last_seen` from some other numbering (a server restored from an older backup) is no
    floor above the newest id: messages still come."""
    bob = await connect("fbob", PASSWORD)
    alice = await connect("falice", PASSWORD, last_seen=10**9)
    sent = await bob.request({"type": "send", "to": "@falice", "text": "still here"})
    got = await alice.recv_type("message")
    assert got["id"] == sent["id"]
