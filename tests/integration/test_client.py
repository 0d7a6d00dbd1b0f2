"""ChatClient against a real server over real TLS: replies, events, trust, reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from tests.events import EventLog
from tests.relay import Proxy
from tests.wire import timeout

from tlschat.client import (
    Backoff,
    ChatClient,
    ConnectionState,
    StateChanged,
    Trust,
    TrustError,
)
from tlschat.protocol import (
    Bye,
    ConnectionClosed,
    History,
    Invited,
    Joined,
    Left,
    Members,
    Message,
    Presence,
    RequestFailed,
    Rooms,
    ServerPong,
    Users,
    UsersRequest,
    Welcome,
)

HOST = "127.0.0.1"
PASSWORD = "correct horse battery staple"


def fast_backoff() -> Backoff:
    return Backoff(base=0.05, cap=0.2)


class Collector(EventLog):
    """The event log plus the waits these tests repeat."""

    async def wait_message(self, text: str, seconds: float = 5) -> Message:
        index = await self.index(lambda e: isinstance(e, Message) and e.text == text, seconds)
        event = self.items[index]
        assert isinstance(event, Message)
        return event

    async def wait_state(self, state: ConnectionState, start: int = 0, seconds: float = 5) -> int:
        return await self.index(
            lambda e: isinstance(e, StateChanged) and e.state is state, seconds, start
        )

    async def wait_end(self, seconds: float = 5) -> None:
        async with asyncio.timeout(timeout(seconds)):
            await self.task

    def messages(self) -> list[Message]:
        return [e for e in self.items if isinstance(e, Message)]

    def states(self) -> list[ConnectionState]:
        return [e.state for e in self.items if isinstance(e, StateChanged)]


ClientFactory = Callable[..., ChatClient]


@pytest.fixture
async def make_client(server: Any, client_ctx: ssl.SSLContext) -> AsyncIterator[ClientFactory]:
    """`make_client("alice", ...)`: a ChatClient for the test server, closed at teardown."""
    made: list[ChatClient] = []

    def factory(nick: str, **options: Any) -> ChatClient:
        options.setdefault("ssl_context", client_ctx)
        options.setdefault("backoff", fast_backoff())
        port = options.pop("port", server.port)
        client = ChatClient(HOST, port, nick, **options)
        made.append(client)
        return client

    yield factory
    for client in made:
        await client.close()


async def connected(
    factory: ClientFactory, nick: str, **options: Any
) -> tuple[ChatClient, Collector]:
    client = factory(nick, **options)
    async with asyncio.timeout(timeout(15)):
        await client.connect()
    return client, Collector(client)


# --- connect, requests, replies -----------------------------------------------------------------


async def test_connect_returns_welcome(make_client: ClientFactory, server: Any) -> None:
    client = make_client("alice")
    welcome = await client.connect()
    assert isinstance(welcome, Welcome)
    assert welcome.nick == "alice"
    assert client.welcome == welcome
    assert client.state is ConnectionState.CONNECTED
    assert client.tls_version == "TLSv1.3"
    assert client.cipher
    assert client.server_fingerprint == server.fingerprint
    assert "alice" in {u.nick for u in welcome.users}


async def test_async_with_connects_and_closes(server: Any, client_ctx: ssl.SSLContext) -> None:
    async with ChatClient(HOST, server.port, "alice", ssl_context=client_ctx) as client:
        events = Collector(client)
        assert client.state is ConnectionState.CONNECTED
        await client.ping()
    assert ConnectionState(client.state) is ConnectionState.CLOSED
    await events.wait_end()
    assert events.states()[-1] is ConnectionState.CLOSED
    await client.close()  # idempotent


async def test_nick_as_the_server_spells_it(make_client: ClientFactory) -> None:
    first, _ = await connected(make_client, "Alice", password=PASSWORD)
    await first.close()
    again, _ = await connected(make_client, "alice", password=PASSWORD)
    assert again.nick == "Alice"


async def test_concurrent_requests_get_their_own_replies(make_client: ClientFactory) -> None:
    alice, _ = await connected(make_client, "alice")
    await alice.create_room("lounge", public=True)
    results = await asyncio.gather(
        *(
            coro
            for _ in range(10)
            for coro in (alice.users(), alice.rooms(), alice.ping(), alice.history("#lounge"))
        )
    )
    for i in range(0, len(results), 4):
        users, rooms, pong, history = results[i : i + 4]
        assert isinstance(users, Users)
        assert isinstance(rooms, Rooms)
        assert pong is None
        assert isinstance(history, History)
        assert history.with_ == "#lounge"


async def test_request_returns_the_reply_with_its_ref(make_client: ClientFactory) -> None:
    alice, events = await connected(make_client, "alice")
    reply = await alice.request(UsersRequest(ref="ignored-and-replaced"))
    assert isinstance(reply, Users)
    assert reply.ref is not None
    assert reply.ref != "ignored-and-replaced"
    # Pure replies never reach events().
    pong = await alice.request(UsersRequest())
    assert isinstance(pong, Users)
    await alice.ping()
    assert not [e for e in events.items if isinstance(e, Users | ServerPong)]


async def test_send_message_returns_echo_and_both_see_it(make_client: ClientFactory) -> None:
    alice, alice_events = await connected(make_client, "alice")
    _bob, bob_events = await connected(make_client, "bob")
    echo = await alice.send_message("@bob", "hello bob")
    assert isinstance(echo, Message)
    assert (echo.from_, echo.to, echo.text) == ("alice", "@bob", "hello bob")
    received = await bob_events.wait_message("hello bob")
    assert received.id == echo.id
    assert received.ref is None
    mine = await alice_events.wait_message("hello bob")
    assert mine.id == echo.id
    assert alice.last_seen == echo.id
    # The echo reaches alice's events() once, not twice.
    await alice.ping()
    assert [m.id for m in alice_events.messages()] == [echo.id]


async def test_request_failed_carries_the_code(make_client: ClientFactory) -> None:
    alice, _ = await connected(make_client, "alice")
    with pytest.raises(RequestFailed) as info:
        await alice.send_message("@nobody", "hi")
    assert info.value.code == "no_such_user"
    with pytest.raises(RequestFailed) as info:
        await alice.join("nowhere")
    assert info.value.code == "no_such_room"
    with pytest.raises(RequestFailed) as info:
        await alice.send_message("#nowhere", "hi")
    assert info.value.code == "no_such_room"
    assert alice.state is ConnectionState.CONNECTED


async def test_hello_errors_raise_and_leave_the_client_disconnected(
    make_client: ClientFactory,
) -> None:
    await connected(make_client, "alice")
    twin = make_client("ALICE")
    with pytest.raises(RequestFailed) as info:
        await twin.connect()
    assert info.value.code == "nick_taken"
    assert twin.state is ConnectionState.DISCONNECTED

    await connected(make_client, "carol", password=PASSWORD)
    impostor = make_client("carol", password="wrong")
    with pytest.raises(RequestFailed) as info:
        await impostor.connect()
    assert info.value.code == "auth_failed"

    bad = make_client("-bad-")
    with pytest.raises(RequestFailed) as info:
        await bad.connect()
    assert info.value.code == "nick_invalid"
    # A failed connect() may be retried.
    with pytest.raises(RequestFailed):
        await bad.connect()


async def test_requests_when_not_connected_raise(make_client: ClientFactory) -> None:
    alice = make_client("alice")
    with pytest.raises(ConnectionClosed):
        await alice.users()
    await alice.connect()
    await alice.close()
    with pytest.raises(ConnectionClosed):
        await alice.users()
    with pytest.raises(ConnectionClosed):
        await alice.connect()


async def test_unreachable_server_raises_oserror(make_client: ClientFactory) -> None:
    with socket_closed_port() as port:
        client = make_client("alice", port=port)
        with pytest.raises(ConnectionRefusedError):
            await client.connect()
    assert client.state is ConnectionState.DISCONNECTED


@contextlib.contextmanager
def socket_closed_port() -> Any:
    """A port on 127.0.0.1 where nothing listens."""
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    yield port


async def test_server_without_alpn_is_refused(cert_files: Any, client_ctx: ssl.SSLContext) -> None:
    # Not a tlschat server: TLS with the right certificate, but no ALPN `tlschat/1`.
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_files.cert, cert_files.key)
    listener = await asyncio.start_server(lambda r, w: None, HOST, 0, ssl=ctx)
    port = listener.sockets[0].getsockname()[1]
    client = ChatClient(HOST, port, "alice", ssl_context=client_ctx)
    try:
        with pytest.raises(ConnectionClosed, match="ALPN"):
            await client.connect()
        assert client.state is ConnectionState.DISCONNECTED
    finally:
        await client.close()
        listener.close()


async def test_groups_invite_accept_members_leave(make_client: ClientFactory) -> None:
    alice, alice_events = await connected(make_client, "alice")
    bob, bob_events = await connected(make_client, "bob")
    joined = await alice.create_room("team", invite=["bob"])
    assert isinstance(joined, Joined)
    assert joined.members == ("alice",)
    # The reply also reaches events(): it changes what the UI shows.
    await alice_events.wait_for(lambda e: isinstance(e, Joined) and e.room == "team")
    await bob_events.wait_for(lambda e: isinstance(e, Invited) and e.room == "team")
    accepted = await bob.accept("team")
    assert set(accepted.members) == {"alice", "bob"}
    await alice_events.wait_for(
        lambda e: isinstance(e, Members) and e.room == "team" and len(e.members) == 2
    )
    echo = await bob.send_message("#team", "hi team")
    await alice_events.wait_message("hi team")
    left = await bob.leave("team")
    assert isinstance(left, Left)
    await bob_events.wait_for(lambda e: isinstance(e, Left))
    await alice_events.wait_for(
        lambda e: isinstance(e, Members) and e.room == "team" and e.members == ("alice",)
    )
    history = await alice.history("#team")
    assert [m.id for m in history.messages] == [echo.id]
    with pytest.raises(RequestFailed) as info:
        await alice.invite("team", "nobody")
    assert info.value.code == "no_such_user"
    with pytest.raises(RequestFailed) as info:
        await bob.decline("team")
    assert info.value.code == "no_invite"


async def test_presence_events(make_client: ClientFactory) -> None:
    _alice, alice_events = await connected(make_client, "alice")
    bob, _ = await connected(make_client, "bob")
    await alice_events.wait_for(lambda e: isinstance(e, Presence) and e.nick == "bob" and e.online)
    await bob.close()
    await alice_events.wait_for(
        lambda e: isinstance(e, Presence) and e.nick == "bob" and not e.online
    )


async def test_server_pings_are_answered(start_server: Any, client_ctx: ssl.SSLContext) -> None:
    # The server pings a silent client every third of its idle timeout and drops one that
    # does not answer: the client must stay connected across several of those rounds.
    server = await start_server(idle_timeout=0.6)
    client = ChatClient(HOST, server.port, "alice", ssl_context=client_ctx, keepalive=None)
    try:
        await client.connect()
        events = Collector(client)
        await asyncio.sleep(2.0)
        await client.ping()
        assert ConnectionState.RECONNECTING not in events.states()
    finally:
        await client.close()


# --- trust --------------------------------------------------------------------------------------


class Asker:
    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.calls: list[tuple[str, int, str]] = []

    async def __call__(self, host: str, port: int, fingerprint: str) -> bool:
        self.calls.append((host, port, fingerprint))
        return self.answer


async def never_ask(host: str, port: int, fingerprint: str) -> bool:
    raise AssertionError("must not ask")


async def test_tofu_stores_then_connects_pinned(server: Any, tmp_path: Path) -> None:
    known = tmp_path / "config" / "tlschat" / "known_hosts"
    ask = Asker(True)
    first = ChatClient(HOST, server.port, "alice", trust=Trust(known_hosts=known, ask=ask))
    try:
        await first.connect()
        assert ask.calls == [(HOST, server.port, server.fingerprint)]
        assert first.server_fingerprint == server.fingerprint
    finally:
        await first.close()
    assert known.read_text().splitlines() == [f"{HOST}:{server.port} SHA256:{server.fingerprint}"]

    # The same guest again: the client passes the token the first one was given.
    second = ChatClient(
        HOST, server.port, "alice", trust=Trust(known_hosts=known, ask=None), resume=first.resume
    )
    try:
        welcome = await second.connect()
        assert welcome.nick == "alice"
        assert second.server_fingerprint == server.fingerprint
    finally:
        await second.close()


async def test_unknown_certificate_without_ask_is_refused(server: Any, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    client = ChatClient(HOST, server.port, "alice", trust=Trust(known_hosts=known))
    with pytest.raises(TrustError) as info:
        await client.connect()
    assert info.value.reason == "unknown"
    assert info.value.fingerprint == server.fingerprint
    assert info.value.known is None
    assert not known.exists()
    assert client.state is ConnectionState.DISCONNECTED
    await client.close()


async def test_rejected_certificate_is_not_stored(server: Any, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    ask = Asker(False)
    client = ChatClient(HOST, server.port, "alice", trust=Trust(known_hosts=known, ask=ask))
    with pytest.raises(TrustError) as info:
        await client.connect()
    assert info.value.reason == "rejected"
    assert len(ask.calls) == 1
    assert not known.exists()
    await client.close()


async def test_cafile_verifies_without_known_hosts(
    server: Any, cert_files: Any, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    trust = Trust(cafile=cert_files.ca, known_hosts=known, ask=never_ask)
    async with ChatClient(HOST, server.port, "alice", trust=trust) as client:
        assert client.server_fingerprint == server.fingerprint
    assert not known.exists()


def other_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 from another CA than the test one."""
    issued = trustme.CA().issue_cert("localhost", HOST)
    cert, key = folder / "other.pem", folder / "other.key"
    with cert.open("wb") as fh:
        for blob in issued.cert_chain_pems:
            fh.write(blob.bytes())
    issued.private_key_pem.write_to_path(str(key))
    return cert, key


async def test_changed_certificate_is_refused_loudly(
    server: Any, start_server: Any, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    async with ChatClient(
        HOST, server.port, "alice", trust=Trust(known_hosts=known, ask=Asker(True))
    ):
        pass
    port, old = server.port, server.fingerprint
    await server.close()
    cert, key = other_certificate(tmp_path)
    impostor = await start_server(port=port, cert=cert, key=key, data_dir=tmp_path / "other")
    assert impostor.fingerprint != old

    client = ChatClient(HOST, port, "alice", trust=Trust(known_hosts=known, ask=never_ask))
    with pytest.raises(TrustError) as info:
        await client.connect()
    await client.close()
    assert info.value.reason == "changed"
    assert info.value.known == old
    assert info.value.fingerprint == impostor.fingerprint
    assert "CHANGED" in str(info.value)
    # The pinned entry is left alone.
    assert known.read_text().splitlines() == [f"{HOST}:{port} SHA256:{old}"]


async def test_fake_pinned_entry_is_a_change(server: Any, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    fake = ":".join(["AB"] * 32)
    known.write_text(f"# pinned by hand\n{HOST}:{server.port} SHA256:{fake}\n")
    client = ChatClient(HOST, server.port, "alice", trust=Trust(known_hosts=known, ask=never_ask))
    with pytest.raises(TrustError) as info:
        await client.connect()
    await client.close()
    assert (info.value.reason, info.value.known) == ("changed", fake)


async def test_pinned_client_refuses_a_changed_certificate_on_reconnect(
    server: Any, start_server: Any, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    trust = Trust(known_hosts=known, ask=Asker(True))
    client = ChatClient(HOST, server.port, "alice", trust=trust, backoff=fast_backoff())
    try:
        await client.connect()
        events = Collector(client)
        port = server.port
        await server.close()
        cert, key = other_certificate(tmp_path)
        await start_server(port=port, cert=cert, key=key, data_dir=tmp_path / "other")
        await events.wait_end(seconds=15)
        last = events.items[-1]
        assert isinstance(last, StateChanged)
        assert last.state is ConnectionState.CLOSED
        assert "CHANGED" in last.detail
    finally:
        await client.close()


# --- reconnect ----------------------------------------------------------------------------------


@pytest.fixture
async def proxy(server: Any) -> AsyncIterator[Proxy]:
    relay = Proxy(server.port)
    await relay.start()
    yield relay
    await relay.close()


async def test_reconnect_after_restart_delivers_every_message_once(
    server: Any, start_server: Any, make_client: ClientFactory, proxy: Proxy
) -> None:
    # alice reaches the server through the proxy, so the test decides when she gets back in.
    alice, events = await connected(make_client, "alice", password=PASSWORD, port=proxy.port)
    bob, bob_events = await connected(make_client, "bob", password=PASSWORD)
    sent = [await bob.send_message("@alice", "one")]
    await events.wait_message("one")

    port = server.port
    proxy.refuse = True
    await server.close()
    await events.wait_for(lambda e: isinstance(e, Bye))
    lost = await events.wait_state(ConnectionState.RECONNECTING)
    bob_lost = await bob_events.wait_state(ConnectionState.RECONNECTING)

    await start_server(port=port)  # same port, same data directory
    # bob comes back by himself and writes to alice while she is still held off.
    await bob_events.wait_state(ConnectionState.CONNECTED, start=bob_lost, seconds=10)
    sent.append(await bob.send_message("@alice", "two"))
    sent.append(await bob.send_message("@alice", "three"))
    assert alice.state is ConnectionState.RECONNECTING

    proxy.refuse = False
    back = await events.wait_state(ConnectionState.CONNECTED, start=lost, seconds=10)
    assert isinstance(events.items[back - 1], Welcome)  # a fresh welcome, then CONNECTED
    sent.append(await bob.send_message("@alice", "four"))
    await events.wait_message("four")
    await alice.ping()  # anything replayed twice would have arrived by now

    assert [m.id for m in events.messages()] == [m.id for m in sent]
    assert [m.text for m in events.messages()] == ["one", "two", "three", "four"]
    states = events.states()
    assert states.index(ConnectionState.RECONNECTING) < len(states) - 1
    assert states[-1] is ConnectionState.CONNECTED
    assert alice.last_seen == sent[-1].id
    retry = next(e for e in events.items if isinstance(e, StateChanged) and e.retry_in is not None)
    assert retry.state is ConnectionState.RECONNECTING
    assert retry.retry_in is not None
    assert retry.retry_in >= 0


async def test_restart_on_the_same_port_resumes(
    server: Any, start_server: Any, make_client: ClientFactory
) -> None:
    alice, events = await connected(make_client, "alice", password=PASSWORD)
    bob, _ = await connected(make_client, "bob", password=PASSWORD)
    first = await bob.send_message("@alice", "before")
    await events.wait_message("before")
    port = server.port
    await server.close()
    lost = await events.wait_state(ConnectionState.RECONNECTING)
    await start_server(port=port)
    await events.wait_state(ConnectionState.CONNECTED, start=lost, seconds=10)
    bob_again, _ = await connected(make_client, "bob", password=PASSWORD)
    after = await bob_again.send_message("@alice", "after")
    await events.wait_message("after")
    await alice.ping()
    assert [m.id for m in events.messages()] == [first.id, after.id]


async def test_pending_request_fails_when_the_connection_drops(
    make_client: ClientFactory, proxy: Proxy
) -> None:
    alice, events = await connected(make_client, "alice", port=proxy.port)
    proxy.blackhole = True
    request = asyncio.create_task(alice.users())
    await asyncio.sleep(0)  # let it go out
    proxy.blackhole = False
    proxy.cut()
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(timeout(5)):
            await request
    lost = await events.wait_state(ConnectionState.RECONNECTING)
    await events.wait_state(ConnectionState.CONNECTED, start=lost, seconds=10)
    assert isinstance(await alice.users(), Users)


async def test_silent_server_is_detected_and_left(make_client: ClientFactory, proxy: Proxy) -> None:
    _alice, events = await connected(
        make_client, "alice", port=proxy.port, keepalive=0.2, connect_timeout=3
    )
    proxy.blackhole = True
    lost = await events.wait_state(ConnectionState.RECONNECTING, seconds=10)
    detail = events.items[lost]
    assert isinstance(detail, StateChanged)
    assert "stopped answering" in detail.detail
    proxy.blackhole = False
    await events.wait_state(ConnectionState.CONNECTED, start=lost, seconds=10)


async def test_no_reconnect_ends_events(server: Any, make_client: ClientFactory) -> None:
    alice, events = await connected(make_client, "alice", reconnect=False)
    await server.close()
    await events.wait_end()
    assert events.states()[-1] is ConnectionState.CLOSED
    assert ConnectionState.RECONNECTING not in events.states()
    assert alice.state is ConnectionState.CLOSED


async def test_hello_refused_on_reconnect_closes(
    server: Any, start_server: Any, make_client: ClientFactory
) -> None:
    alice, events = await connected(make_client, "alice")  # a guest
    port = server.port
    await server.close()
    await events.wait_state(ConnectionState.RECONNECTING)
    await start_server(port=port, require_password=True)
    await events.wait_end(seconds=10)
    last = events.items[-1]
    assert isinstance(last, StateChanged)
    assert last.state is ConnectionState.CLOSED
    assert last.detail.startswith("auth_required")
    assert alice.state is ConnectionState.CLOSED


async def test_close_while_reconnecting_stops(server: Any, make_client: ClientFactory) -> None:
    alice, events = await connected(make_client, "alice")
    await server.close()
    await events.wait_state(ConnectionState.RECONNECTING)
    await alice.close()
    await events.wait_end()
    assert alice.state is ConnectionState.CLOSED
