"""Pilot tests of the terminal client against a fake client: what the user sees and what gets sent."""

from __future__ import annotations

from typing import Any

from textual.widgets import Button, Footer, Input, OptionList
from textual.widgets._footer import FooterKey
from textual.widgets._toast import Toast

from tests.tui.fake_client import FakeClient
from tests.tui.helpers import (
    log_of,
    main_screen,
    make_app,
    screen_shown,
    sidebar_rows,
    type_text,
    wait_for,
)
from tlschat import protocol
from tlschat.client import ConnectionState, StateChanged, TrustError
from tlschat.tui.app import ChatApp
from tlschat.tui.screens.connect import ConnectParams, ConnectScreen
from tlschat.tui.screens.dialogs import InvitationDialog, InviteDialog
from tlschat.tui.screens.help import HelpScreen
from tlschat.tui.screens.trust import HostChangedScreen, TrustDialog
from tlschat.tui.widgets.invitation_bar import InvitationBar
from tlschat.tui.widgets.pane import ConversationPane

SIZE = (100, 30)


def fake(**kwargs: Any) -> FakeClient:
    kwargs.setdefault("users", [("alice", True), ("carol", False)])
    return FakeClient("bob", **kwargs)


async def type_line(pilot: Any, text: str) -> None:
    screen = pilot.app.screen
    screen.query_one("#composer").focus()
    await type_text(pilot, text)
    await pilot.press("enter")


# --- messages and panes ---------------------------------------------------------------------------


async def test_incoming_message_opens_pane_and_marks_unread() -> None:
    client = fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await type_line(pilot, "/msg carol")
        await wait_for(pilot, lambda: screen.current_address == "@carol", "the @carol pane")

        client.receive("alice", "@bob", "are you there?")
        await wait_for(pilot, lambda: screen.pane_for("@alice") is not None, "a pane for alice")
        pane = screen.pane_for("@alice")
        assert pane is not None
        assert pane.id == "dm-alice"
        assert screen.current_address == "@carol"  # an incoming message never steals the view
        await wait_for(pilot, lambda: screen.state.unread_for("@alice") == 1, "one unread")
        assert any("alice" in row and " 1 " in row for row in sidebar_rows(screen))
        assert screen.tabs.get_tab("dm-alice").label.plain == "@alice (1)"

        screen.tabs.active = "dm-alice"
        await wait_for(pilot, lambda: screen.state.unread_for("@alice") == 0, "unread cleared")
        assert screen.tabs.get_tab("dm-alice").label.plain == "@alice"
        log = log_of(screen, "@alice")
        await wait_for(pilot, lambda: any("are you there?" in x for x in log.plain_lines), "shown")


async def test_dm_is_filed_under_the_other_party() -> None:
    client = fake(users=[("Bob.x", True), ("alice", True)])
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        client.receive("Bob.x", "@bob", "from bob.x")  # to us: filed under the sender
        client.receive(
            "bob", "@alice", "our own, from another terminal"
        )  # from us: under the recipient
        await wait_for(pilot, lambda: screen.pane_for("@alice") is not None, "alice's pane")
        dotted = screen.pane_for("@bob.x")
        assert dotted is not None
        assert dotted.id == "dm-bob_2ex"
        assert dotted.address == "@Bob.x"
        screen.tabs.active = "dm-bob_2ex"  # a hidden pane renders when shown
        await wait_for(pilot, lambda: dotted.log_view.plain_lines, "bob.x's lines")
        assert any("Bob.x: from bob.x" in line for line in dotted.log_view.plain_lines)
        screen.tabs.active = "dm-alice"
        own = log_of(screen, "@alice")
        await wait_for(pilot, lambda: own.plain_lines, "alice's lines")
        assert any("› bob: our own" in line for line in own.plain_lines)  # own messages are marked
        assert screen.pane_for("@bob") is None


async def test_msg_command_opens_and_sends() -> None:
    client = fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await type_line(pilot, "/msg alice hello there")
        await wait_for(pilot, lambda: client.calls_to("send_message"), "the send")
        assert client.calls_to("send_message") == [("send_message", "@alice", "hello there")]
        assert screen.current_address == "@alice"
        log = log_of(screen, "@alice")
        await wait_for(pilot, lambda: any("hello there" in x for x in log.plain_lines), "the echo")

        await type_line(pilot, "plain text goes to the open pane")
        await wait_for(pilot, lambda: len(client.calls_to("send_message")) == 2, "second send")
        assert client.calls_to("send_message")[1] == (
            "send_message",
            "@alice",
            "plain text goes to the open pane",
        )
        await wait_for(pilot, lambda: len(log.message_ids) == 2, "both echoes")
        assert log.message_ids == sorted(set(log.message_ids))  # each message once


async def test_markup_is_shown_literally() -> None:
    client = fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        client.receive("alice", "@bob", "[b]x[/b] [red]not red[/red] :smile: \\[esc]")
        await wait_for(pilot, lambda: screen.pane_for("@alice") is not None, "the pane")
        log = log_of(screen, "@alice")
        await wait_for(pilot, lambda: log.plain_lines, "the line")
        assert any(
            "alice: [b]x[/b] [red]not red[/red] :smile: \\[esc]" in line for line in log.plain_lines
        )


async def test_long_lines_wrap_under_the_text() -> None:
    client = fake()
    app = make_app(client)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await main_screen(pilot)
        text = "word " * 40 + "x" * 120
        client.receive("alice", "@bob", text)
        await wait_for(pilot, lambda: screen.pane_for("@alice") is not None, "the pane")
        log = log_of(screen, "@alice")
        await wait_for(pilot, lambda: len(log.plain_lines) > 3, "wrapped lines")
        width = log.text_width
        assert all(len(line) <= width for line in log.plain_lines)
        joined = "".join(line[8:] for line in log.plain_lines if not line.lstrip().startswith("·"))
        assert "x" * 120 in joined.replace(" ", "")


async def test_create_command_opens_group_with_members() -> None:
    client = fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await type_line(pilot, "/create team carol")
        await wait_for(pilot, lambda: screen.current_address == "#team", "the #team pane")
        assert client.calls_to("create_room") == [("create_room", "team", ("carol",))]
        pane = screen.pane_for("#team")
        assert pane is not None
        assert pane.member_list is not None
        assert pane.member_list.border_title == "Members (1)"
        assert any("#team" in row for row in sidebar_rows(screen))


async def test_members_update_live_and_leave_closes_pane() -> None:
    client = fake(rooms=[("team", ["bob", "alice"])])
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await type_line(pilot, "/join team")  # already a member: just opens it
        await wait_for(pilot, lambda: screen.current_address == "#team", "the pane")
        assert not client.calls_to("join")
        pane = screen.pane_for("#team")
        assert pane is not None
        assert pane.member_list is not None
        assert pane.member_list.border_title == "Members (2)"

        client.push(protocol.Members(room="team", members=("bob", "alice", "carol")))
        await wait_for(pilot, lambda: pane.member_list.border_title == "Members (3)", "3 members")
        assert any("carol joined" in line for line in pane.log_view.plain_lines)
        prompts = [str(o.prompt) for o in pane.member_list.options]
        assert any("carol" in p for p in prompts)

        await type_line(pilot, "/leave")
        await wait_for(pilot, lambda: screen.pane_for("#team") is None, "the pane closed")
        assert client.calls_to("leave") == [("leave", "team")]
        assert not any("#team" in row for row in sidebar_rows(screen))


async def test_invite_dialog_offers_only_non_members() -> None:
    client = fake(
        users=[("alice", True), ("carol", False), ("dave", True)],
        rooms=[("team", ["bob", "alice"])],
    )
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await screen.open_conversation("#team")
        await pilot.press("ctrl+t")
        await screen_shown(pilot, InviteDialog, "#invite-list")
        dialog = app.screen
        assert isinstance(dialog, InviteDialog)
        assert [nick for nick, _ in dialog.candidates] == [
            "dave",
            "carol",
        ]  # online first; not alice
        listing = dialog.query_one(OptionList)
        listing.focus()
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: client.calls_to("invite"), "the invite")
        assert client.calls_to("invite") == [("invite", "team", "carol")]


async def test_invite_dialog_leaves_out_pending_invitations() -> None:
    client = fake(
        users=[("alice", True), ("carol", False), ("dave", True)],
        rooms=[("team", ["bob", "alice"])],
    )
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await screen.open_conversation("#team")

        async def offered() -> tuple[list[str], str]:
            await pilot.press("ctrl+t")
            dialog = await screen_shown(pilot, InviteDialog, ".dialog-hint")
            pending = dialog.query("#invite-pending")
            text = str(pending.first().render()) if pending else ""
            nicks = [nick for nick, _ in dialog.candidates]
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is screen, "the dialog closed")
            return nicks, text

        await type_line(pilot, "/invite carol")
        await type_line(pilot, "/invite dave")
        await wait_for(pilot, lambda: len(client.calls_to("invite")) == 2, "the invites")
        await wait_for(pilot, lambda: len(screen.state.invited_to("team")) == 2, "remembered")
        nicks, pending = await offered()
        assert nicks == []
        assert "carol, dave" in pending

        client.push(protocol.Declined(room="team", nick="carol"))
        client.push(protocol.Members(room="team", members=("bob", "alice", "dave")))
        await wait_for(pilot, lambda: not screen.state.invited_to("team"), "both answered")
        nicks, pending = await offered()
        assert nicks == ["carol"]  # declined: offered again; dave joined: a member now
        assert pending == ""


async def test_leave_in_a_dm_pane_explains() -> None:
    client = fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await type_line(pilot, "/leave")
        await wait_for(pilot, lambda: app.notes, "a hint")
        assert "group pane" in app.notes[-1]
        await type_line(pilot, "/msg alice")
        await wait_for(pilot, lambda: screen.current_address == "@alice", "alice's pane")
        await type_line(pilot, "/leave")
        await wait_for(pilot, lambda: len(app.notes) == 2, "a second hint")
        assert "@alice is a direct conversation" in app.notes[-1]
        assert "/close" in app.notes[-1]
        assert not client.calls_to("leave")
        assert screen.pane_for("@alice") is not None


async def test_invite_command_needs_a_group_pane() -> None:
    client = fake(rooms=[("team", ["bob"])])
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await type_line(pilot, "/invite carol")
        await wait_for(pilot, lambda: app.notes, "a notification")
        assert "group pane" in app.notes[-1]
        await screen.open_conversation("#team")
        await type_line(pilot, "/invite carol")
        await wait_for(pilot, lambda: client.calls_to("invite"), "the invite")
        assert client.calls_to("invite") == [("invite", "team", "carol")]


# --- invitations ----------------------------------------------------------------------------------


async def test_invitation_accept() -> None:
    client = fake()
    client.members["x"] = ["alice"]
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        bar = screen.query_one(InvitationBar)
        assert not bar.display
        client.push(protocol.Invited(room="x", by="alice", members=("alice",)))
        await wait_for(pilot, lambda: bar.display, "the notification")
        assert bar.invitation is not None
        assert bar.invitation.room == "x"
        assert any("#x" in row and "alice" in row for row in sidebar_rows(screen))

        await pilot.press("f2")
        await wait_for(pilot, lambda: screen.current_address == "#x", "the #x pane")
        assert client.calls_to("accept") == [("accept", "x")]
        assert not bar.display
        assert not any("✉" in row for row in sidebar_rows(screen))
        pane = screen.pane_for("#x")
        assert pane is not None
        assert pane.member_list is not None
        await wait_for(pilot, lambda: pane.member_list.border_title == "Members (2)", "members")


async def test_invitation_decline_by_click() -> None:
    client = fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        client.push(protocol.Invited(room="x", by="alice"))
        bar = screen.query_one(InvitationBar)
        await wait_for(pilot, lambda: bar.display, "the notification")
        await pilot.click("#invitation-decline")
        await wait_for(pilot, lambda: client.calls_to("decline"), "the decline")
        assert client.calls_to("decline") == [("decline", "x")]
        await wait_for(pilot, lambda: not bar.display, "the bar hidden")
        assert "x" not in screen.state.invites
        assert screen.pane_for("#x") is None


async def test_pending_invitations_from_welcome_stay_listed() -> None:
    client = fake(invites=[("x", "alice"), ("y", "carol")])
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        bar = screen.query_one(InvitationBar)
        await wait_for(pilot, lambda: bar.display, "the notification")
        rows = sidebar_rows(screen)
        assert any("#x" in r for r in rows)
        assert any("#y" in r for r in rows)
        await pilot.click("#invitation-later")  # hides x, shows y; both stay listed
        await wait_for(
            pilot, lambda: bar.invitation is not None and bar.invitation.room == "y", "next"
        )
        later = bar.query_one("#invitation-later", Button)
        await wait_for(pilot, lambda: not later.has_class("-active"), "the button to settle")
        await pilot.click("#invitation-later")
        await wait_for(pilot, lambda: not bar.display, "bar hidden")
        assert len([r for r in sidebar_rows(screen) if "✉" in r]) == 2

        # Picking one in the sidebar asks again, in a dialog.
        listing = screen.sidebar.option_list
        listing.focus()
        index = next(i for i, o in enumerate(listing.options) if "#y" in str(o.prompt))
        listing.highlighted = index
        await pilot.press("enter")
        await screen_shown(pilot, InvitationDialog, "#answer-decline")
        await pilot.click("#answer-decline")
        await wait_for(pilot, lambda: client.calls_to("decline"), "the decline")
        assert client.calls_to("decline") == [("decline", "y")]


# --- presence, state, errors ----------------------------------------------------------------------


async def test_presence_updates_sidebar() -> None:
    client = fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        assert "○ carol" in "\n".join(sidebar_rows(screen))
        client.push(protocol.Presence(nick="carol", online=True))
        await wait_for(pilot, lambda: "● carol" in "\n".join(sidebar_rows(screen)), "carol online")
        client.push(protocol.Presence(nick="dave", online=True))  # someone new
        await wait_for(pilot, lambda: "● dave" in "\n".join(sidebar_rows(screen)), "dave listed")
        client.push(protocol.Presence(nick="carol", online=False))  # listed offline: known
        await wait_for(pilot, lambda: "○ carol" in "\n".join(sidebar_rows(screen)), "carol offline")
        # Someone we share nothing with (a guest passing by) goes from the list when it leaves.
        client.push(protocol.Presence(nick="dave", online=False))
        await wait_for(pilot, lambda: "dave" not in "\n".join(sidebar_rows(screen)), "dave gone")
        # A DM partner stays, offline; `gone` (a guest's hold ended) drops anyone.
        client.receive("alice", "@bob", "bye for now")
        await wait_for(pilot, lambda: screen.pane_for("@alice") is not None, "alice's pane")
        client.push(protocol.Presence(nick="alice", online=False))
        await wait_for(pilot, lambda: "○ alice" in "\n".join(sidebar_rows(screen)), "alice offline")
        client.push(protocol.Presence(nick="carol", online=False, gone=True))
        await wait_for(pilot, lambda: "carol" not in "\n".join(sidebar_rows(screen)), "carol gone")


async def test_connection_states_are_shown() -> None:
    client = fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        status = screen.status
        await wait_for(pilot, lambda: status.state == "connected", "connected")
        text = str(status.render())
        assert "connected" in text
        assert "127.0.0.1:7700" in text
        assert "TLSv1.3" in text
        assert "TLS_AES_256_GCM_SHA384" in text
        client.push(StateChanged(ConnectionState.RECONNECTING, "connection lost", retry_in=30.0))
        await wait_for(pilot, lambda: "reconnecting in" in str(status.render()), "reconnecting")
        assert status.has_class("-degraded")
        client.push(StateChanged(ConnectionState.CONNECTED, "127.0.0.1:7700"))
        await wait_for(pilot, lambda: status.state == "connected", "connected again")
        client.push(StateChanged(ConnectionState.CLOSED, "nick_taken"))
        await wait_for(pilot, lambda: "closed" in str(status.render()), "closed")
        assert status.has_class("-closed")


async def test_the_status_bar_names_the_address_in_use() -> None:
    # Several addresses: after a failover the status names the node now serving, not the first.
    client = fake()
    app = make_app(client)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await main_screen(pilot)
        status = screen.status
        await wait_for(pilot, lambda: "127.0.0.1:7700" in str(status.render()), "the first")
        client.push(StateChanged(ConnectionState.RECONNECTING, "connection lost", retry_in=0.0))
        await wait_for(pilot, lambda: status.state == "reconnecting", "reconnecting")
        client.host, client.port = "b.example.org", 7701
        client.push(StateChanged(ConnectionState.CONNECTED, "b.example.org:7701"))
        await wait_for(pilot, lambda: "b.example.org:7701" in str(status.render()), "the next")
        assert "127.0.0.1:7700" not in str(status.render())


async def test_request_errors_become_notifications_in_words() -> None:
    client = fake()
    client.fail["send_message"] = protocol.RequestFailed("rate_limited", "slow down", 2000)
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await main_screen(pilot)
        await type_line(pilot, "/msg alice hi")
        await wait_for(pilot, lambda: app.notes, "the error")
        assert app.notes[-1] == "Too fast: the server asks you to wait 2 seconds."
        assert not any("rate_limited" in n or "Traceback" in n for n in app.notes)
        assert app.is_running


async def test_notifications_never_cover_the_input_line() -> None:
    client = fake()
    app = make_app(client)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        screen = await main_screen(pilot)
        for n in range(3):
            app.notify(f"note {n}: " + "a long notification that wraps " * 3, timeout=60)
        await wait_for(pilot, lambda: len(screen.query(Toast)) == 3, "the toasts")
        await pilot.pause()
        composer = screen.composer.region
        footer = screen.query_one(Footer).region
        for toast in screen.query(Toast):
            assert toast.region.height > 0
            assert not toast.region.overlaps(composer)
            assert not toast.region.overlaps(footer)


async def test_bad_command_is_explained() -> None:
    client = fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await main_screen(pilot)
        await type_line(pilot, "/frobnicate")
        await wait_for(pilot, lambda: app.notes, "a note")
        assert "unknown command /frobnicate" in app.notes[-1]
        await type_line(pilot, "/msg bad!nick")
        await wait_for(pilot, lambda: len(app.notes) == 2, "a second note")
        assert "not a valid nick" in app.notes[-1]
        assert not client.calls_to("send_message")


async def test_input_history_up_and_down() -> None:
    client = fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await screen.open_conversation("@alice")
        composer = screen.composer
        await type_line(pilot, "one")
        await type_line(pilot, "two")
        await type_text(pilot, "draft")
        await pilot.press("up")
        assert composer.value == "two"
        await pilot.press("up", "up")
        assert composer.value == "one"
        await pilot.press("down")
        assert composer.value == "two"
        await pilot.press("down")
        assert composer.value == "draft"


async def test_help_and_palette() -> None:
    client = fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await type_line(pilot, "/help")
        await screen_shown(pilot, HelpScreen, "#help-dialog")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, "back")

        await pilot.press("ctrl+p")
        await type_text(pilot, "Message @alice")
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.current_address == "@alice", "alice's pane")


async def test_history_loads_older_messages_on_scroll_to_top() -> None:
    client = fake()
    for n in range(130):
        sender = "alice" if n % 2 else "bob"
        client.make_message(
            sender, "@bob" if sender == "alice" else "@alice", f"old message {n}", minute=n % 60
        )
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await screen.open_conversation("@alice")
        log = log_of(screen, "@alice")
        await wait_for(pilot, lambda: len(log.message_ids) == 50, "the newest page")
        assert client.calls_to("history") == [("history", "@alice", None)]
        assert log.is_vertical_scroll_end  # starts at the newest

        log.focus()
        await pilot.press("home")
        await wait_for(pilot, lambda: len(log.message_ids) == 100, "the second page")
        assert client.calls_to("history")[-1] == ("history", "@alice", 81)
        assert log.scroll_offset.y > 0  # the view stayed on what was read, not at the new top

        await pilot.press("home")
        await wait_for(pilot, lambda: len(log.message_ids) == 130, "everything")
        await wait_for(pilot, lambda: not log.more, "the end of history")
        assert log.message_ids == list(range(1, 131))
        await pilot.press("home")
        assert "start of the conversation" in log.plain_lines[0]
        assert len(client.calls_to("history")) == 3


async def test_auto_scroll_only_at_bottom() -> None:
    client = fake()
    for n in range(60):
        client.make_message("alice", "@bob", f"old {n}")
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await screen.open_conversation("@alice")
        log = log_of(screen, "@alice")
        await wait_for(pilot, lambda: len(log.message_ids) == 50, "a page")
        client.receive("alice", "@bob", "new while at bottom")
        await wait_for(pilot, lambda: len(log.message_ids) == 51, "new message")
        await wait_for(pilot, lambda: log.is_vertical_scroll_end, "followed")

        log.scroll_to(y=5, animate=False)
        await pilot.pause()
        client.receive("alice", "@bob", "new while reading")
        await wait_for(pilot, lambda: len(log.message_ids) == 52, "another")
        await pilot.pause()
        assert log.scroll_offset.y == 5


# --- connecting -----------------------------------------------------------------------------------


async def test_hello_error_shown_in_place_then_retry() -> None:
    client = fake(connect_errors=[protocol.RequestFailed("nick_taken", "nick in use")])
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: client.calls_to("connect"), "an attempt")
        screen = await screen_shown(pilot, ConnectScreen, "#connect-error")
        error = screen.query_one("#connect-error")
        await wait_for(pilot, lambda: error.has_class("-visible"), "the error")
        assert "in use" in str(error.render())
        await pilot.click("#connect-button")
        await main_screen(pilot)
        assert len(client.calls_to("connect")) == 2


async def test_connect_screen_builds_a_client() -> None:
    built: list[ConnectParams] = []
    clients: list[FakeClient] = []

    def factory(params: ConnectParams, ask: Any) -> FakeClient:
        built.append(params)
        client = FakeClient(params.nick, host=params.host, port=params.port)
        if len(built) == 1:
            client.connect_errors.append(ConnectionRefusedError(111, "Connection refused"))
        clients.append(client)
        return client

    app = make_app(client_factory=factory)
    async with app.run_test(size=SIZE) as pilot:
        await screen_shown(pilot, ConnectScreen, "#connect-button")
        assert not built
        await pilot.click("#connect-address")
        await type_text(pilot, "localhost:7801")
        await pilot.press("enter")
        await type_text(pilot, "bad nick!")
        await pilot.press("enter")
        error = app.screen.query_one("#connect-error")
        await wait_for(pilot, lambda: error.has_class("-visible"), "nick error")
        assert not built
        nick = app.screen.query_one("#connect-nick", Input)
        nick.value = "dave"
        nick.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: "refused" in str(error.render()), "refused, in place")
        assert "localhost:7801" in str(error.render())
        await pilot.press("enter")
        await main_screen(pilot)
        assert built == [
            ConnectParams("localhost", 7801, "dave"),
            ConnectParams("localhost", 7801, "dave"),
        ]
        assert ("close",) in clients[0].calls


async def test_connect_screen_takes_several_addresses() -> None:
    built: list[ConnectParams] = []

    def factory(params: ConnectParams, ask: Any) -> FakeClient:
        built.append(params)
        return FakeClient(params.nick, host=params.host, port=params.port)

    app = make_app(client_factory=factory)
    async with app.run_test(size=SIZE) as pilot:
        await screen_shown(pilot, ConnectScreen, "#connect-button")
        await pilot.click("#connect-address")
        await type_text(pilot, "a.example.org:7801,,b")
        await pilot.press("enter")
        await type_text(pilot, "dave")
        await pilot.press("enter")
        error = app.screen.query_one("#connect-error")
        await wait_for(pilot, lambda: "empty" in str(error.render()), "the empty entry")
        assert not built
        address = app.screen.query_one("#connect-address", Input)
        address.value = "a.example.org:7801, b.example.org"
        await pilot.click("#connect-button")
        await main_screen(pilot)
        assert built == [
            ConnectParams("a.example.org", 7801, "dave", other_servers=(("b.example.org", 7700),))
        ]
        assert built[0].address == "a.example.org:7801,b.example.org:7700"


def footer_actions(app: ChatApp) -> list[str]:
    return [key.action for key in app.screen.query(FooterKey)]


async def test_reconnect_after_the_client_closed_for_good() -> None:
    clients: list[FakeClient] = []
    built: list[ConnectParams] = []

    def factory(params: ConnectParams, ask: Any) -> FakeClient:
        built.append(params)
        client = fake(last_seen=params.last_seen)
        clients.append(client)
        return client

    app = make_app(client_factory=factory, host="127.0.0.1", port=7700, nick="bob")
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await main_screen(pilot)
        first = clients[0]
        first.receive("alice", "@bob", "before the end")
        await wait_for(pilot, lambda: screen.pane_for("@alice") is not None, "alice's pane")
        log = log_of(screen, "@alice")
        await wait_for(pilot, lambda: len(log.message_ids) == 1, "the message")
        await pilot.press("ctrl+r")  # connected: nothing to do
        await pilot.pause()
        assert len(built) == 1
        assert "reconnect" not in footer_actions(app)

        first.push(StateChanged(ConnectionState.CLOSED, "auth_failed"))
        first.end()
        status = screen.status
        await wait_for(pilot, lambda: "reconnect" in footer_actions(app), "the Reconnect key")
        assert "ctrl+r reconnects" in str(status.render())
        assert "auth_failed" in str(status.render())

        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: len(built) == 2, "a fresh client")
        second = clients[1]
        assert second.resumed_from == first.last_seen == 1
        await wait_for(pilot, lambda: status.state == "connected", "connected again")
        assert "reconnects" not in str(status.render())
        assert "reconnect" not in footer_actions(app)
        pane = screen.pane_for("@alice")
        assert pane is not None
        assert pane.log_view is log  # the pane stayed open, with what it showed
        second.receive("alice", "@bob", "after the reconnect", minute=5)
        await wait_for(pilot, lambda: len(log.message_ids) == 2, "the new message, same pane")
        assert any("before the end" in line for line in log.plain_lines)


async def test_reconnect_from_the_command_palette() -> None:
    clients: list[FakeClient] = []

    def factory(params: ConnectParams, ask: Any) -> FakeClient:
        clients.append(fake(last_seen=params.last_seen))
        return clients[-1]

    app = make_app(client_factory=factory, host="127.0.0.1", port=7700, nick="bob")
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        clients[0].end()  # events() ended: closed for good
        await wait_for(pilot, lambda: screen.status.state == "closed", "closed")
        await pilot.press("ctrl+p")
        await type_text(pilot, "Reconnect")
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(clients) == 2, "a fresh client")
        await wait_for(pilot, lambda: screen.status.state == "connected", "connected again")


async def test_unknown_certificate_asks_and_trusts() -> None:
    def factory(params: ConnectParams, ask: Any) -> FakeClient:
        return FakeClient(params.nick, host=params.host, port=params.port, ask=ask)

    app = make_app(client_factory=factory, host="localhost", port=7801, nick="dave")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.screen.query("#trust-no"), "the question")
        dialog = app.screen
        assert isinstance(dialog, TrustDialog)
        shown = str(dialog.query_one("#trust-fingerprint").render())
        assert "AB:AB:AB" in shown
        assert dialog.focused is dialog.query_one("#trust-no", Button)  # the safe answer by default
        await pilot.click("#trust-yes")
        await main_screen(pilot)


async def test_unknown_certificate_rejected_stays_on_connect_screen() -> None:
    def factory(params: ConnectParams, ask: Any) -> FakeClient:
        return FakeClient(params.nick, host=params.host, port=params.port, ask=ask)

    app = make_app(client_factory=factory, host="localhost", port=7801, nick="dave")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.screen.query("#trust-no"), "the question")
        assert isinstance(app.screen, TrustDialog)
        await pilot.press("escape")
        await screen_shown(pilot, ConnectScreen, "#connect-error")
        error = app.screen.query_one("#connect-error")
        await wait_for(pilot, lambda: "not trusted" in str(error.render()), "the refusal")


async def test_changed_certificate_is_refused_loudly() -> None:
    known = ":".join(["11"] * 32)
    presented = ":".join(["22"] * 32)
    client = fake(connect_errors=[TrustError("localhost", 7801, presented, "changed", known=known)])
    app: ChatApp = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await screen_shown(pilot, HostChangedScreen, "#changed-quit")
        text = "\n".join(str(w.render()) for w in app.screen.query("Static"))
        assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in text
        assert "11:11:11" in text
        assert "22:22:22" in text
        await pilot.press("enter")
    assert app.return_code == 1
    assert len(client.calls_to("connect")) == 1


async def test_quit_closes_the_client() -> None:
    client = fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await main_screen(pilot)
        await pilot.press("ctrl+q")
    assert ("close",) in client.calls
    assert app.return_code == 0


async def test_pane_ids_never_collide_with_case() -> None:
    client = fake(users=[("Alice", True)])
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        client.receive("Alice", "@bob", "one")
        client.receive("ALICE", "@bob", "two")
        await wait_for(pilot, lambda: screen.pane_for("@alice") is not None, "the pane")
        log = log_of(screen, "@alice")
        await wait_for(pilot, lambda: len(log.message_ids) == 2, "two messages")
        assert len(screen.tabs.query(ConversationPane)) == 1


async def test_theme_switch_recolours_the_log() -> None:
    client = fake()
    app = make_app(client, theme="textual-dark")
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        client.receive("alice", "@bob", "colours")
        await wait_for(pilot, lambda: screen.pane_for("@alice") is not None, "the pane")
        log = log_of(screen, "@alice")
        await wait_for(pilot, lambda: any("colours" in x for x in log.plain_lines), "the line")

        def time_colour() -> object:
            line = next(strip for strip in log._lines if "colours" in strip.text)
            return next(
                seg.style.color for seg in line if seg.text.strip() and seg.style is not None
            )

        dark = time_colour()
        app.theme = "textual-light"
        await wait_for(pilot, lambda: time_colour() != dark, "new colours")


async def test_a_big_replay_is_shown_once_in_order() -> None:
    client = fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        sent = [client.make_message("alice", "@bob", f"replayed {n}") for n in range(500)]
        client.push(*sent, *sent[-20:])  # a misbehaving source repeats some: still once each
        await wait_for(pilot, lambda: screen.pane_for("@alice") is not None, "the pane")
        log = log_of(screen, "@alice")
        await wait_for(pilot, lambda: len(log.message_ids) == 500, "all of them")
        assert log.message_ids == [m.id for m in sent]
