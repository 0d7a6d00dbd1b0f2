"""The TUI against a real server over real TLS, with a second user driven by the client library."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.tui.helpers import RecordingApp, log_of, main_screen, make_app, sidebar_rows, wait_for
from tlschat import protocol
from tlschat.client import Backoff, ChatClient, StateChanged
from tlschat.client.guest_tokens import GuestTokens
from tlschat.tui.app import AskTrust, ChatClientLike, guest_aware_client
from tlschat.tui.screens.connect import ConnectParams
from tlschat.tui.screens.main import MainScreen
from tlschat.tui.widgets.composer import Composer
from tlschat.tui.widgets.invitation_bar import InvitationBar

SIZE = (100, 30)
FAST = Backoff(base=0.05, cap=0.3, jitter=False)


class Peer:
    """A library ChatClient whose events are collected in the background."""

    def __init__(self, client: ChatClient) -> None:
        self.client = client
        self.events: list[Any] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Peer:
        async with asyncio.timeout(10):
            await self.client.connect()
        self._task = asyncio.create_task(self._pump())
        return self

    async def _pump(self) -> None:
        async for event in self.client.events():
            self.events.append(event)

    def frames(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def close(self) -> None:
        await self.client.close()
        if self._task is not None:
            await asyncio.wait([self._task], timeout=5)


PeerFactory = Callable[..., Awaitable[Peer]]


@pytest.fixture
async def peer(server: Any, client_ctx: ssl.SSLContext) -> AsyncIterator[PeerFactory]:
    made: list[Peer] = []

    async def factory(nick: str, password: str | None = None) -> Peer:
        client = ChatClient(
            "127.0.0.1",
            server.port,
            nick,
            password=password or f"pw-{nick}",
            ssl_context=client_ctx,
            backoff=FAST,
        )
        started = await Peer(client).start()
        made.append(started)
        return started

    yield factory
    for one in made:
        await one.close()


def tui(
    server: Any, client_ctx: ssl.SSLContext, nick: str = "bob"
) -> tuple[RecordingApp, ChatClient]:
    client = ChatClient(
        "127.0.0.1", server.port, nick, password=f"pw-{nick}", ssl_context=client_ctx, backoff=FAST
    )
    return make_app(client), client


async def type_line(pilot: Pilot[Any], text: str) -> None:
    pilot.app.screen.query_one("#composer").focus()
    await pilot.press(*text, "enter")


def lines(screen: MainScreen, address: str) -> list[str]:
    pane = screen.pane_for(address)
    return pane.log_view.plain_lines if pane is not None else []


async def test_dm_both_ways(server: Any, client_ctx: ssl.SSLContext, peer: PeerFactory) -> None:
    alice = await peer("alice")
    app, _ = tui(server, client_ctx)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await wait_for(pilot, lambda: "● alice" in "\n".join(sidebar_rows(screen)), "alice online")

        await alice.client.send_message("@bob", "hi [b]bob[/b]")
        await wait_for(
            pilot, lambda: screen.pane_for("@alice") is not None, "a pane opened by the message"
        )
        screen.tabs.active = "dm-alice"
        await wait_for(
            pilot,
            lambda: any("alice: hi [b]bob[/b]" in x for x in lines(screen, "@alice")),
            "shown",
        )

        await type_line(pilot, "hello alice")
        await wait_for(
            pilot,
            lambda: any(m.text == "hello alice" for m in alice.frames(protocol.Message)),
            "alice receives it",
        )
        got = next(m for m in alice.frames(protocol.Message) if m.text == "hello alice")
        assert got.from_ == "bob"
        assert got.to == "@alice"
        log = log_of(screen, "@alice")
        await wait_for(pilot, lambda: len(log.message_ids) == 2, "both messages once")
        assert any("› bob: hello alice" in x for x in log.plain_lines)


async def test_group_create_invite_accept_with_live_members(
    server: Any, client_ctx: ssl.SSLContext, peer: PeerFactory
) -> None:
    alice = await peer("alice")
    app, _ = tui(server, client_ctx)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await type_line(pilot, "/create team")
        await wait_for(pilot, lambda: screen.current_address == "#team", "the #team pane")
        pane = screen.pane_for("#team")
        assert pane is not None
        assert pane.member_list is not None
        await wait_for(pilot, lambda: pane.member_list.border_title == "Members (1)", "one member")

        await type_line(pilot, "/invite alice")
        await wait_for(pilot, lambda: alice.frames(protocol.Invited), "alice invited")
        await alice.client.accept("team")
        await wait_for(
            pilot, lambda: pane.member_list.border_title == "Members (2)", "alice joined, live"
        )
        assert any("alice joined" in x for x in pane.log_view.plain_lines)

        await alice.client.send_message("#team", "hi team")
        await wait_for(
            pilot,
            lambda: any("alice: hi team" in x for x in pane.log_view.plain_lines),
            "group msg",
        )
        await type_line(pilot, "hi alice")
        await wait_for(
            pilot,
            lambda: any(
                m.text == "hi alice" and m.to == "#team" for m in alice.frames(protocol.Message)
            ),
            "to alice",
        )

        # Now the other way round: alice invites the TUI, which accepts from the notification.
        await alice.client.create_room("x", invite=["bob"])
        bar = screen.query_one(InvitationBar)
        await wait_for(pilot, lambda: bar.display, "the notification")
        await pilot.press("f2")
        await wait_for(pilot, lambda: screen.current_address == "#x", "joined #x")
        await wait_for(
            pilot,
            lambda: any(
                f.room == "x" and len(f.members) == 2 for f in alice.frames(protocol.Members)
            ),
            "alice sees bob join",
        )
        x_pane = screen.pane_for("#x")
        assert x_pane is not None
        assert x_pane.member_list is not None
        await wait_for(
            pilot, lambda: x_pane.member_list.border_title == "Members (2)", "two members"
        )


async def test_decline_reaches_the_inviter(
    server: Any, client_ctx: ssl.SSLContext, peer: PeerFactory
) -> None:
    alice = await peer("alice")
    app, _ = tui(server, client_ctx)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await alice.client.create_room("y", invite=["bob"])
        bar = screen.query_one(InvitationBar)
        await wait_for(pilot, lambda: bar.display, "the notification")
        await pilot.click("#invitation-decline")
        await wait_for(pilot, lambda: alice.frames(protocol.Declined), "alice told")
        declined = alice.frames(protocol.Declined)[0]
        assert declined.room == "y"
        assert declined.nick == "bob"
        await wait_for(pilot, lambda: not bar.display, "bar hidden")
        assert not any("✉" in row for row in sidebar_rows(screen))


async def test_presence_in_sidebar(
    server: Any, client_ctx: ssl.SSLContext, peer: PeerFactory
) -> None:
    app, _ = tui(server, client_ctx)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        carol = await peer("carol")
        dave = await peer("dave")
        await wait_for(pilot, lambda: "● carol" in "\n".join(sidebar_rows(screen)), "carol online")
        await carol.client.send_message("@bob", "hi")  # a conversation: carol stays listed
        await wait_for(pilot, lambda: screen.pane_for("@carol") is not None, "carol's DM")
        await carol.close()
        await wait_for(pilot, lambda: "○ carol" in "\n".join(sidebar_rows(screen)), "carol offline")
        # dave shares nothing with bob: when he leaves, he leaves the list (issue 14).
        await wait_for(pilot, lambda: "● dave" in "\n".join(sidebar_rows(screen)), "dave online")
        await dave.close()
        await wait_for(pilot, lambda: "dave" not in "\n".join(sidebar_rows(screen)), "dave gone")


async def test_history_loads_on_demand(
    server: Any, client_ctx: ssl.SSLContext, peer: PeerFactory
) -> None:
    alice = await peer("alice")
    bob = await peer("bob")  # bob receives them now, so the TUI's login replays none
    for n in range(120):
        await alice.client.send_message("@bob", f"old {n}")
    await wait_for_peer(lambda: len(bob.frames(protocol.Message)) == 120)
    await bob.close()

    app, _ = tui(server, client_ctx)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await screen.open_conversation("@alice")
        log = log_of(screen, "@alice")
        await wait_for(pilot, lambda: len(log.message_ids) == 50, "the newest page")
        # Keyboard only, from the input line: page up until the beginning of the conversation.
        assert isinstance(app.focused, Composer)
        for _ in range(100):
            if not log.more:
                break
            await pilot.press("pageup")
            await pilot.pause()
        await wait_for(pilot, lambda: len(log.message_ids) == 120, "all of it")
        ids = log.message_ids
        assert ids == sorted(set(ids))
        texts = [line for line in log.plain_lines if "alice: old" in line]
        assert len(texts) == 120
        assert "alice: old 0" in texts[0]


async def wait_for_peer(predicate: Callable[[], bool]) -> None:
    """Poll a library client's state (no Textual pilot to pause with)."""
    async with asyncio.timeout(10):
        while not predicate():  # noqa: ASYNC110 - polling a plain attribute
            await asyncio.sleep(0.02)


async def test_server_restart_under_the_tui_shows_every_message_once(
    server: Any, start_server: Any, client_ctx: ssl.SSLContext, peer: PeerFactory
) -> None:
    alice = await peer("alice")
    app, client = tui(server, client_ctx)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        for n in range(5):
            await alice.client.send_message("@bob", f"before {n}")
        await wait_for(pilot, lambda: screen.pane_for("@alice") is not None, "the pane")
        screen.tabs.active = "dm-alice"
        log = log_of(screen, "@alice")
        await wait_for(pilot, lambda: len(log.message_ids) == 5, "five before")

        port = server.port
        await server.close()
        await wait_for(
            pilot,
            lambda: screen.status.state in ("reconnecting", "disconnected"),
            "reconnecting shown",
        )
        await start_server(port=port)
        await wait_for(pilot, lambda: screen.status.state == "connected", "connected again")
        await wait_for_peer(lambda: alice.client.state == "connected")

        for n in range(5):
            await alice.client.send_message("@bob", f"after {n}")
        await wait_for(pilot, lambda: len(log.message_ids) == 10, "ten in all")
        await pilot.pause(0.2)
        ids = log.message_ids
        assert ids == sorted(set(ids))
        texts = [line.split("alice: ", 1)[1] for line in log.plain_lines if "alice: " in line]
        assert texts == [f"before {n}" for n in range(5)] + [f"after {n}" for n in range(5)]
        assert any(isinstance(e, StateChanged) for e in alice.events)
        assert client.state == "connected"


async def test_guest_restarted_within_the_hold_is_back_in_its_group(
    server: Any, client_ctx: ssl.SSLContext, peer: PeerFactory, tmp_path: Path
) -> None:
    """The TUI keeps the guest's resume token on disk; a new app within the hold uses it."""
    tokens = GuestTokens(tmp_path / "state" / "guest_tokens.json")

    def factory(params: ConnectParams, ask: AskTrust) -> ChatClientLike:
        return guest_aware_client(params, tokens=tokens, ssl_context=client_ctx, backoff=FAST)

    def guest_app() -> Any:
        return make_app(client_factory=factory, host="127.0.0.1", port=server.port, nick="gus")

    alice = await peer("alice")
    app = guest_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        app.request_create("team", ["alice"])
        await wait_for(pilot, lambda: alice.frames(protocol.Invited), "alice invited")
        await alice.client.accept("team")
        await wait_for(pilot, lambda: len(screen.state.members_of("team")) == 2, "alice in")
        await app.action_quit()
    token = tokens.load("127.0.0.1", server.port, "gus")
    assert token  # kept on disk, for this server and nick
    assert (tokens.path.stat().st_mode & 0o777) == 0o600

    # While gus is away: a message to the group (kept for the held guest).
    await alice.client.send_message("#team", "while you were away")

    app = guest_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        assert screen.state.me == "gus"
        assert screen.state.is_member("team")
        # The group comes back as a pane with its unread message.
        await wait_for(pilot, lambda: screen.pane_for("#team") is not None, "the #team pane")
        pane = screen.pane_for("#team")
        assert pane is not None
        await wait_for(
            pilot,
            lambda: any("while you were away" in x for x in pane.log_view.plain_lines),
            "the message",
        )
        assert any("unread" in x and "─" in x for x in pane.log_view.plain_lines)
        # The welcome brought a new token, kept in place of the old one.
        assert tokens.load("127.0.0.1", server.port, "gus") not in (None, token)
        await app.action_quit()


async def test_read_in_another_session_clears_the_count(
    server: Any, client_ctx: ssl.SSLContext, peer: PeerFactory
) -> None:
    """bob reads @alice in another terminal: the unread count in this one goes too."""
    alice = await peer("alice")
    app, _ = tui(server, client_ctx)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await screen.open_conversation("#nowhere", activate=True)  # a pane that is not @alice
        await alice.client.send_message("@bob", "one")
        last = await alice.client.send_message("@bob", "two")
        await wait_for(pilot, lambda: screen.state.unread_for("@alice") == 2, "two unread")
        other = await peer("bob")  # the same user, another session
        await other.client.mark_read("@alice", last.id)
        await wait_for(pilot, lambda: screen.state.unread_for("@alice") == 0, "cleared")
