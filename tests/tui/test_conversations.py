"""Conversations that come back after a restart, read markers, the unread line, gone guests
(issue 10), with the fake client: a "restart" is a new app whose `welcome` carries
`conversations`."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from tests.tui.fake_client import FakeClient
from tests.tui.helpers import main_screen, make_app, sidebar_rows, wait_for
from tlschat import protocol
from tlschat.tui.screens.connect import GUEST_HINT
from tlschat.tui.screens.main import MainScreen

SIZE = (120, 40)


def restarted_client() -> FakeClient:
    """bob after a restart: 2 unread in #team, 2 unread from alice, dave all read."""
    client = FakeClient(
        "bob",
        users=[("alice", True), ("carol", False), ("dave", False)],
        rooms=[("team", ["bob", "alice", "carol"])],
    )
    client.make_message("dave", "@bob", "hello from dave")  # 1
    client.make_message("alice", "@bob", "old news")  # 2
    client.make_message("bob", "@alice", "read it")  # 3
    client.make_message("alice", "#team", "standup at ten")  # 4
    client.make_message("alice", "@bob", "new one")  # 5
    client.make_message("alice", "@bob", "new two")  # 6
    client.make_message("carol", "#team", "running late")  # 7
    client.make_message("alice", "#team", "started without you")  # 8
    client.welcome = client.welcome.model_copy(
        update={
            "conversations": (
                protocol.ConversationInfo(with_="#team", last_id=8, read=4, unread=2),
                protocol.ConversationInfo(with_="@alice", last_id=6, read=3, unread=2),
                protocol.ConversationInfo(with_="@dave", last_id=1, read=1, unread=0),
            )
        }
    )
    return client


async def loaded(pilot: Pilot[Any], screen: MainScreen, address: str) -> None:
    """Wait until the pane of `address` has loaded its (short) history: when it is shown."""
    await wait_for(
        pilot,
        lambda: (pane := screen.pane_for(address)) is not None and not pane.log_view.more,
        f"the history of {address}",
    )


async def restored(pilot: Pilot[Any]) -> MainScreen:
    """The main screen once both panes with unread messages are open and the one shown (the
    most recent, #team) has loaded its history."""
    screen = await main_screen(pilot)
    for address in ("#team", "@alice"):
        await wait_for(pilot, lambda a=address: screen.pane_for(a) is not None, address)
    await loaded(pilot, screen, "#team")
    return screen


async def test_restart_restores_panes_and_unread_counts() -> None:
    client = restarted_client()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await restored(pilot)
        # The conversations with unread messages are open again, the most recent one shown;
        # the read one (dave) is listed but not reopened.
        assert screen.current_address == "#team"
        assert screen.pane_for("@dave") is None
        assert screen.state.unread_for("@alice") == 2
        assert screen.state.unread_for("#team") == 0  # in view
        rows = sidebar_rows(screen)
        people = rows[rows.index("People") + 1 : rows.index("Groups")]
        assert [r.split()[1] for r in people] == ["alice", "dave", "carol"]  # most recent first
        assert people[0].rstrip().endswith("2")
        assert "2" not in people[1]
        # The histories loaded as usual.
        team = screen.pane_for("#team")
        assert team is not None
        assert team.log_view.message_ids == [4, 7, 8]


async def test_unread_line_above_the_first_message_after_the_read_marker() -> None:
    client = restarted_client()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await restored(pilot)
        team = screen.pane_for("#team")
        alice = screen.pane_for("@alice")
        assert team is not None
        assert alice is not None
        assert team.log_view.divider_id == 7
        lines = team.log_view.plain_lines
        line = next(i for i, text in enumerate(lines) if "unread" in text and "─" in text)
        assert "running late" in lines[line + 1]
        assert "standup at ten" in lines[line - 1]
        # @alice: its history loads when it is shown; the line is at its own marker.
        screen.tabs.active = alice.id or ""
        await loaded(pilot, screen, "@alice")
        assert alice.log_view.divider_id == 5
        lines = alice.log_view.plain_lines
        line = next(i for i, text in enumerate(lines) if "unread" in text and "─" in text)
        assert "new one" in lines[line + 1]
        assert "read it" in lines[line - 1]
        # Having moved to @alice, the #team line has been seen and goes.
        await wait_for(pilot, lambda: team.log_view.divider_id is None, "the line gone")
        assert alice.log_view.divider_id == 5


async def test_mark_read_sent_once_for_a_viewed_pane() -> None:
    client = restarted_client()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await restored(pilot)
        await wait_for(pilot, lambda: client.calls_to("mark_read"), "the marker moves")
        await pilot.pause(0.5)
        assert client.calls_to("mark_read") == [("mark_read", "#team", 8)]
        # A burst while in view: one more, to the newest.
        for n in range(3):
            client.receive("alice", "#team", f"burst {n}")
        await wait_for(pilot, lambda: len(client.calls_to("mark_read")) == 2, "once more")
        await pilot.pause(0.5)
        assert client.calls_to("mark_read")[1] == ("mark_read", "#team", 11)
        # Not while the terminal is unfocused; once it is focused again.
        app.app_focus = False
        client.receive("alice", "#team", "while away")
        await pilot.pause(0.6)
        assert len(client.calls_to("mark_read")) == 2
        app.app_focus = True
        await wait_for(pilot, lambda: len(client.calls_to("mark_read")) == 3, "after focus")
        assert client.calls_to("mark_read")[2] == ("mark_read", "#team", 12)
        # Showing @alice moves its marker; nothing is sent for a pane never shown.
        alice = screen.pane_for("@alice")
        assert alice is not None
        screen.tabs.active = alice.id or ""
        await wait_for(pilot, lambda: len(client.calls_to("mark_read")) == 4, "@alice read")
        await pilot.pause(0.5)
        assert client.calls_to("mark_read")[3] == ("mark_read", "@alice", 6)
        assert len(client.calls_to("mark_read")) == 4


async def test_read_in_another_session_clears_the_count() -> None:
    client = restarted_client()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await restored(pilot)
        assert screen.state.unread_for("@alice") == 2
        client.push(protocol.Read(with_="@alice", id=6))  # read to the end elsewhere
        await wait_for(pilot, lambda: screen.state.unread_for("@alice") == 0, "cleared")
        # Part of what came meanwhile read elsewhere: what is left stays counted.
        alice = screen.pane_for("@alice")
        team = screen.pane_for("#team")
        assert alice is not None
        assert team is not None
        screen.tabs.active = alice.id or ""
        await loaded(pilot, screen, "@alice")
        screen.tabs.active = team.id or ""
        await wait_for(pilot, lambda: alice.log_view.unread_after is None, "left @alice")
        client.receive("alice", "@bob", "are you there?")  # 9
        client.receive("alice", "@bob", "hello?")  # 10
        await wait_for(pilot, lambda: screen.state.unread_for("@alice") == 2, "two new")
        await wait_for(pilot, lambda: alice.log_view.unread_after == 8, "the line above 9")
        client.push(protocol.Read(with_="@alice", id=9))
        await wait_for(pilot, lambda: screen.state.unread_for("@alice") == 1, "one left")
        assert alice.log_view.unread_after == 9  # what was read over there is above the line
        client.push(protocol.Read(with_="@alice", id=10))
        await wait_for(pilot, lambda: screen.state.unread_for("@alice") == 0, "none left")
        rows = sidebar_rows(screen)
        alice_row = next(r for r in rows if " alice" in r)
        assert alice_row.rstrip().endswith("alice")
        assert "(" not in str(screen.tabs.get_tab(alice.id or "").label)


async def test_gone_guest_leaves_the_lists_and_its_pane_says_so() -> None:
    client = FakeClient("bob", users=[("alice", True), ("gus", True)])
    client.make_message("gus", "@bob", "brb")
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await screen.open_conversation("@gus")
        await wait_for(pilot, lambda: any(" gus" in r for r in sidebar_rows(screen)), "gus")
        client.push(protocol.Presence(nick="gus", online=False, gone=True))
        await wait_for(pilot, lambda: not any(" gus" in r for r in sidebar_rows(screen)), "gone")
        pane = screen.pane_for("@gus")
        assert pane is not None
        sentence = "gus has left: guests are kept 10 minutes after they leave."
        await wait_for(pilot, lambda: sentence in " ".join(pane.log_view.plain_lines), "said")
        # Writing to them says the same, not `no_such_user`, and sends nothing.
        screen.query_one("#composer").focus()
        await pilot.press(*"still there?", "enter")
        await wait_for(
            pilot, lambda: any("Not sent: gus has left" in x for x in pane.log_view.plain_lines)
        )
        assert client.calls_to("send_message") == []
        assert all("no_such_user" not in note for note in app.notes)


async def test_connect_screen_says_what_a_guest_is() -> None:
    app = make_app(client_factory=lambda params, ask: FakeClient(params.nick))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: pilot.app.screen.query("#connect-guest-hint"), "the hint")
        assert "a guest" in GUEST_HINT
        assert "10 minutes by default" in GUEST_HINT
