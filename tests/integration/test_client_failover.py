"""ChatClient with several server addresses, against real servers over real TLS: connect walks
the list, a lost connection resumes on the next address with `last_seen` and the guest token."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from tests.events import EventLog
from tests.relay import Proxy
from tests.wire import timeout

from tlschat.client import Backoff, ChatClient, ConnectionState, StateChanged
from tlschat.client.server_list import NoServerAnswered
from tlschat.protocol import Message, RequestFailed, Welcome

HOST = "127.0.0.1"
PASSWORD = "correct horse battery staple"


def dead_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connecting is refused at once)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


class Events(EventLog):
    def states(self, start: int = 0) -> list[StateChanged]:
        return [e for e in self.items[start:] if isinstance(e, StateChanged)]

    async def state(self, state: ConnectionState, start: int = 0, seconds: float = 5) -> int:
        return await self.index(
            lambda e: isinstance(e, StateChanged) and e.state is state, seconds, start
        )

    def texts(self) -> list[str]:
        return [e.text for e in self.items if isinstance(e, Message)]


ClientFactory = Callable[..., ChatClient]


@pytest.fixture
async def make_client(client_ctx: ssl.SSLContext) -> AsyncIterator[ClientFactory]:
    """`make_client("alice", [port, ...])`: a ChatClient for those ports of 127.0.0.1."""
    made: list[ChatClient] = []

    def factory(nick: str, ports: list[int], **options: Any) -> ChatClient:
        options.setdefault("ssl_context", client_ctx)
        options.setdefault("backoff", Backoff(base=0.05, cap=0.2))
        others = [(HOST, port) for port in ports[1:]]
        client = ChatClient(HOST, ports[0], nick, other_servers=others, **options)
        made.append(client)
        return client

    yield factory
    for client in made:
        await client.close()


async def connected(
    factory: ClientFactory, nick: str, ports: list[int], **options: Any
) -> tuple[ChatClient, Events]:
    client = factory(nick, ports, **options)
    async with asyncio.timeout(timeout(10)):
        await client.connect()
    return client, Events(client)


@pytest.fixture
async def relay(server: Any) -> AsyncIterator[Proxy]:
    """A second address of the same server (a relay to it): two "nodes" sharing one store."""
    proxy = Proxy(server.port)
    await proxy.start()
    yield proxy
    await proxy.close()


# --- connect ------------------------------------------------------------------------------------


async def test_connect_skips_a_dead_address(server: Any, make_client: ClientFactory) -> None:
    dead = dead_port()
    alice, events = await connected(make_client, "alice", [dead, server.port])
    assert (alice.host, alice.port) == (HOST, server.port)
    assert alice.servers == ((HOST, dead), (HOST, server.port))
    await events.state(ConnectionState.CONNECTED)
    tried = [s.detail for s in events.states() if s.state is ConnectionState.CONNECTING]
    assert tried == [f"{HOST}:{dead}", f"{HOST}:{server.port}"]
    assert events.states()[-1].detail == f"{HOST}:{server.port}"
    echo = await alice.send_message("@alice", "note to self")
    assert echo.text == "note to self"


async def test_connect_when_no_address_answers(make_client: ClientFactory) -> None:
    first, second = dead_port(), dead_port()
    alice = make_client("alice", [first, second])
    with pytest.raises(NoServerAnswered) as info:
        await alice.connect()
    assert [server for server, _ in info.value.failures] == [(HOST, first), (HOST, second)]
    assert f"{HOST}:{first}: " in str(info.value)
    assert f"{HOST}:{second}: " in str(info.value)
    assert alice.state is ConnectionState.DISCONNECTED


async def test_a_refusal_stops_the_walk(
    server: Any, make_client: ClientFactory, relay: Proxy
) -> None:
    await connected(make_client, "carol", [server.port], password=PASSWORD)
    impostor = make_client("carol", [server.port, relay.port], password="wrong")
    with pytest.raises(RequestFailed) as info:
        await impostor.connect()
    assert info.value.code == "auth_failed"
    assert relay.accepted == 0  # the refusal is the chat's answer, not one node's trouble
    assert impostor.state is ConnectionState.DISCONNECTED


# --- a lost connection --------------------------------------------------------------------------


async def test_a_lost_node_fails_over_to_the_next(
    server: Any, start_server: Any, make_client: ClientFactory, tmp_path: Path
) -> None:
    # Two servers sharing nothing: only the move from one to the other is checked here.
    other = await start_server(data_dir=tmp_path / "other")
    alice, events = await connected(make_client, "alice", [server.port, other.port])
    assert alice.port == server.port
    _bob, bob_events = await connected(make_client, "bob", [other.port])

    await server.close()
    lost = await events.state(ConnectionState.RECONNECTING)
    back = await events.state(ConnectionState.CONNECTED, start=lost)
    assert alice.port == other.port
    assert events.states(back)[0].detail == f"{HOST}:{other.port}"
    assert isinstance(events.items[back - 1], Welcome)  # the welcome of the second server
    await alice.send_message("@bob", "from the other node")
    await bob_events.message(lambda m: m.text == "from the other node")


async def test_resuming_on_the_next_address_loses_nothing_and_repeats_nothing(
    server: Any, make_client: ClientFactory, relay: Proxy
) -> None:
    # The relay and the server are two addresses of one chat: alice is on the first.
    alice, events = await connected(
        make_client,
        "alice",
        [relay.port, server.port],
        password=PASSWORD,
        backoff=Backoff(base=0.05, jitter=False),
    )
    bob, _ = await connected(make_client, "bob", [server.port], password=PASSWORD)
    await bob.send_message("@alice", "one")
    await events.message(lambda m: m.text == "one")

    # "two" is delivered to alice's session but never reaches her: the server counts it as
    # delivered, so only her `last_seen` ("one") brings it back after the failover.
    relay.blackhole = True
    await bob.send_message("@alice", "two")
    async with asyncio.timeout(timeout(5)):
        await relay.dropped_some.wait()
    relay.refuse = True
    relay.cut()

    lost = await events.state(ConnectionState.RECONNECTING)
    await events.state(ConnectionState.CONNECTED, start=lost)
    assert alice.port == server.port
    assert relay.accepted == 1  # the next address was tried first, not the lost one
    await events.message(lambda m: m.text == "two")
    await bob.send_message("@alice", "three")
    await events.message(lambda m: m.text == "three")
    await alice.ping()  # anything replayed twice would have arrived by now
    assert events.texts() == ["one", "two", "three"]


async def test_a_guest_resumes_with_its_token_on_the_next_address(
    server: Any, make_client: ClientFactory, relay: Proxy
) -> None:
    guest, events = await connected(make_client, "gus", [relay.port, server.port])
    token = guest.resume
    assert token is not None
    await guest.create_room("hideout")
    relay.refuse = True
    relay.cut()
    lost = await events.state(ConnectionState.RECONNECTING)
    back = await events.state(ConnectionState.CONNECTED, start=lost)
    assert guest.port == server.port
    welcome = events.items[back - 1]
    assert isinstance(welcome, Welcome)
    # Without the token the held nick would be refused; with it, gus is the same guest.
    assert [room.room for room in welcome.rooms] == ["hideout"]


async def test_the_backoff_grows_once_per_round(
    server: Any, make_client: ClientFactory, relay: Proxy
) -> None:
    dead = dead_port()
    _alice, events = await connected(
        make_client,
        "alice",
        [relay.port, dead],
        backoff=Backoff(base=0.05, factor=2, cap=1, jitter=False),
    )
    relay.refuse = True
    relay.cut()
    lost = await events.state(ConnectionState.RECONNECTING)
    # Rounds: dead, relay (refused) | dead, relay | dead ...: a delay only before each round.
    await events.index(
        lambda e: isinstance(e, StateChanged) and e.retry_in == 0.2, seconds=5, start=lost
    )
    waits = [s.retry_in for s in events.states(lost) if s.state is ConnectionState.RECONNECTING]
    assert waits[:5] == [0.05, 0.0, 0.1, 0.0, 0.2]
    details = [s.detail for s in events.states(lost)][1:4]
    assert all(detail.startswith(f"{HOST}:") for detail in details), details
