"""Snapshot tests: fixed clock (UTC, fixed timestamps), fixed theme, no cursor blink.

Review `snapshot_report.html` before `pytest tests/tui --snapshot-update`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.tui.fake_client import FakeClient
from tests.tui.helpers import main_screen, make_app, wait_for
from tlschat import protocol
from tlschat.client import TrustError
from tlschat.tui.app import ChatApp
from tlschat.tui.screens.connect import ConnectParams
from tlschat.tui.widgets.invitation_bar import InvitationBar

SIZES = [(80, 24), (120, 40)]

SnapCompare = Callable[..., bool]


def team_client() -> FakeClient:
    client = FakeClient(
        "bob",
        users=[("alice", True), ("carol", False), ("dave", True), ("Eve.s", False)],
        rooms=[("team", ["bob", "alice", "carol"])],
        public_rooms=[("lobby", 4)],
    )
    client.make_message("alice", "@bob", "hi bob, have you got a minute?")
    client.make_message("bob", "@alice", "sure, what's up?")
    client.make_message(
        "alice", "@bob", "markup stays literal: [b]not bold[/b] and [red]not red[/red]"
    )
    client.make_message("alice", "#team", "standup in 5 minutes")
    client.make_message("carol", "#team", "I'll be late, start without me")
    client.make_message(
        "bob",
        "#team",
        "long lines wrap under the text rather than under the time, so that a conversation "
        "stays easy to read in a narrow terminal over SSH",
    )
    return client


def app_for(
    client: FakeClient | None = None, theme: str = "textual-dark", **kwargs: Any
) -> ChatApp:
    return make_app(client, theme=theme, **kwargs)


async def settle_log(pilot: Pilot[Any], address: str) -> None:
    """Wait until the pane of `address` has loaded its whole (short) history."""
    screen = await main_screen(pilot)
    await wait_for(pilot, lambda: screen.pane_for(address) is not None, address)
    pane = screen.pane_for(address)
    assert pane is not None
    await wait_for(
        pilot, lambda: not pane.log_view.more and not pane.log_view.fetching_older, "history"
    )
    await pilot.pause()


def with_dm_and_group(client: FakeClient) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run_before(pilot: Pilot[Any]) -> None:
        screen = await main_screen(pilot)
        await screen.open_conversation("@alice")
        await settle_log(pilot, "@alice")
        await screen.open_conversation("#team")
        await settle_log(pilot, "#team")
        client.receive("dave", "@bob", "ping")  # unread, in a pane of its own
        await wait_for(pilot, lambda: screen.state.unread_for("@dave") == 1, "unread")
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", SIZES)
def test_connect_screen(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    app = app_for(client_factory=lambda params, ask: FakeClient(params.nick))
    assert snap_compare(app, terminal_size=size)


def test_connect_screen_with_hello_error(snap_compare: SnapCompare) -> None:
    def factory(params: ConnectParams, ask: Any) -> FakeClient:
        return FakeClient(
            params.nick, connect_errors=[protocol.RequestFailed("auth_failed", "wrong password")]
        )

    app = app_for(
        client_factory=factory, host="chat.example.org", port=7700, nick="bob", password="nope"
    )

    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: pilot.app.screen.query(".-visible"), "the error")

    assert snap_compare(app, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_main_screen_with_dm_and_group(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    client = team_client()
    assert snap_compare(app_for(client), terminal_size=size, run_before=with_dm_and_group(client))


def test_main_screen_light_theme(snap_compare: SnapCompare) -> None:
    client = team_client()
    app = app_for(client, theme="textual-light")
    assert snap_compare(app, terminal_size=(80, 24), run_before=with_dm_and_group(client))


@pytest.mark.parametrize("size", SIZES)
def test_invitation_notification(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    client = team_client()

    async def run_before(pilot: Pilot[Any]) -> None:
        screen = await main_screen(pilot)
        await screen.open_conversation("@alice")
        await settle_log(pilot, "@alice")
        client.push(protocol.Invited(room="design", by="alice", members=("alice", "carol")))
        bar = screen.query_one(InvitationBar)
        await wait_for(pilot, lambda: bar.display, "the notification")
        await pilot.pause()

    assert snap_compare(app_for(client), terminal_size=size, run_before=run_before)


def test_connect_screen_with_error_at_80x24(snap_compare: SnapCompare) -> None:
    """Nothing is cut off: the Connect button stays on screen under a two-line error."""

    def factory(params: ConnectParams, ask: Any) -> FakeClient:
        return FakeClient(
            params.nick,
            connect_errors=[ConnectionRefusedError(111, "Connection refused by the host")],
        )

    app = app_for(
        client_factory=factory,
        host="a-rather-long-host-name.chat.example.org",
        port=7700,
        nick="bob",
    )

    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: pilot.app.screen.query(".-visible"), "the error")

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_folded_sidebar_at_60x20(snap_compare: SnapCompare) -> None:
    """Below 100 columns the sidebar and the member list fold away: the log keeps the width."""
    client = team_client()
    assert snap_compare(
        app_for(client), terminal_size=(60, 20), run_before=with_dm_and_group(client)
    )


def test_sidebar_overlay_at_60x20(snap_compare: SnapCompare) -> None:
    """ctrl+b shows the folded sidebar over the log; long names end in an ellipsis."""
    client = team_client()
    client.members["another_long_group_name_x"] = ["bob"]
    client.welcome = client.welcome.model_copy(
        update={
            "rooms": (
                *client.welcome.rooms,
                protocol.RoomInfo(room="another_long_group_name_x", members=("bob",)),
            )
        }
    )
    setup = with_dm_and_group(client)

    async def run_before(pilot: Pilot[Any]) -> None:
        await setup(pilot)
        await pilot.press("ctrl+b")
        screen = await main_screen(pilot)
        await wait_for(pilot, lambda: screen.sidebar.region.width > 0, "the overlay")
        await pilot.pause()

    assert snap_compare(app_for(client), terminal_size=(60, 20), run_before=run_before)


def test_multi_line_composer_and_counter(snap_compare: SnapCompare) -> None:
    """A three-line draft grows the input box; near max_text a counter shows the length."""
    client = team_client()
    setup = with_dm_and_group(client)

    async def run_before(pilot: Pilot[Any]) -> None:
        await setup(pilot)
        screen = await main_screen(pilot)
        screen.composer.value = "first line\nsecond line\n" + "x" * 3650
        await wait_for(pilot, lambda: screen.query_one("#counter").display, "the counter")
        await pilot.pause()

    assert snap_compare(app_for(client), terminal_size=(80, 24), run_before=run_before)


def test_trust_question(snap_compare: SnapCompare) -> None:
    fingerprint = ":".join(f"{n:02X}" for n in range(32))

    def factory(params: ConnectParams, ask: Any) -> FakeClient:
        return FakeClient(
            params.nick, host=params.host, port=params.port, ask=ask, fingerprint=fingerprint
        )

    app = app_for(client_factory=factory, host="chat.example.org", port=7700, nick="bob")

    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: pilot.app.screen.query("#trust-no"), "the question")

    assert snap_compare(app, run_before=run_before)


def test_changed_fingerprint_refusal(snap_compare: SnapCompare) -> None:
    known = ":".join(["5A"] * 32)
    presented = ":".join(["C3"] * 32)
    error = TrustError("chat.example.org", 7700, presented, "changed", known=known)
    client = FakeClient("bob", host="chat.example.org", connect_errors=[error])

    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: pilot.app.screen.query("#changed-quit"), "the refusal")

    assert snap_compare(app_for(client), run_before=run_before)


def test_create_dialog_fits_60x20(snap_compare: SnapCompare) -> None:
    """ctrl+g: name, private or public, invitees and the buttons, all within 60×20."""
    client = team_client()

    async def run_before(pilot: Pilot[Any]) -> None:
        await main_screen(pilot)
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: pilot.app.screen.query("#create-ok"), "the dialog")
        await pilot.press(*"release")
        await pilot.pause()

    assert snap_compare(app_for(client), terminal_size=(60, 20), run_before=run_before)


def test_members_overlay_with_pending_invitations_at_60x20(snap_compare: SnapCompare) -> None:
    """alt+m shows a group's members over the log; people invited are listed as pending."""
    client = team_client()
    setup = with_dm_and_group(client)

    async def run_before(pilot: Pilot[Any]) -> None:
        await setup(pilot)
        screen = await main_screen(pilot)
        screen.state.note_invited("team", "dave")
        screen.members_changed("team")
        await pilot.press("alt+m")
        pane = screen.pane_for("#team")
        assert pane is not None
        assert pane.member_list is not None
        members = pane.member_list
        await wait_for(pilot, lambda: members.region.width > 0, "the overlay")
        await pilot.pause()

    assert snap_compare(app_for(client), terminal_size=(60, 20), run_before=run_before)


@pytest.mark.parametrize("sidebar", [False, True], ids=["tabs", "sidebar"])
def test_restored_conversations_with_unread_counts_at_80x24(
    snap_compare: SnapCompare, sidebar: bool
) -> None:
    """After a restart: the panes with unread messages are back, with their counts, and the
    one shown has its unread line; ctrl+b shows the sidebar, most recent first."""
    from tests.tui.test_conversations import restarted_client

    client = restarted_client()

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle_log(pilot, "#team")
        screen = await main_screen(pilot)
        await wait_for(pilot, lambda: screen.pane_for("@alice") is not None, "@alice")
        await wait_for(pilot, lambda: client.calls_to("mark_read"), "the marker")
        if sidebar:
            await pilot.press("ctrl+b")
            await wait_for(pilot, lambda: screen.sidebar.region.width > 0, "the overlay")
        await pilot.pause()

    assert snap_compare(app_for(client), terminal_size=(80, 24), run_before=run_before)
