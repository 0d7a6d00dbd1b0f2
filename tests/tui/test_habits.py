"""Pilot tests of issue 14's habits: composing, moving around, alerts, groups, errors, layout."""

from __future__ import annotations

from typing import Any

from textual import events
from textual.widgets import OptionList, Static, Tabs
from textual.widgets._toast import Toast

from tests.tui.fake_client import FakeClient
from tests.tui.helpers import (
    RecordingApp,
    log_of,
    main_screen,
    screen_shown,
    type_text,
    wait_for,
)
from tlschat import protocol
from tlschat.client.settings import ClientSettings, Notifications
from tlschat.tui.screens.dialogs import CreateGroupDialog, JoinDialog
from tlschat.tui.screens.switcher import QuickSwitcher

SIZE = (100, 30)


class AlertingApp(RecordingApp):
    """Records the bell and the desktop notifications instead of writing to a terminal."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bells = 0
        self.desktop: list[tuple[str, str]] = []

    def bell(self) -> None:
        self.bells += 1

    def desktop_notify(self, title: str, body: str) -> None:
        self.desktop.append((title, body))


def fake(nick: str = "alice", **kwargs: Any) -> FakeClient:
    kwargs.setdefault("users", [("bob", True), ("boris", True), ("carol", False)])
    kwargs.setdefault("rooms", [("team", ["alice", "bob", "carol"])])
    return FakeClient(nick, **kwargs)


def make(client: FakeClient, **kwargs: Any) -> AlertingApp:
    return AlertingApp(client, **kwargs)


async def focus_composer(pilot: Any) -> None:
    pilot.app.screen.composer.focus()
    await pilot.pause()


# --- composing ------------------------------------------------------------------------------------


async def test_a_pasted_block_of_three_lines_is_one_message() -> None:
    client = fake()
    app = make(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await screen.open_conversation("@bob")
        await focus_composer(pilot)
        app.post_message(events.Paste("first line\nsecond line\nthird line"))
        await wait_for(pilot, lambda: screen.composer.text.count("\n") == 2, "the paste")
        await pilot.press("enter")
        await wait_for(pilot, lambda: client.calls_to("send_message"), "the send")
        assert client.calls_to("send_message") == [
            ("send_message", "@bob", "first line\nsecond line\nthird line")
        ]
        assert screen.composer.text == ""
        log = log_of(screen, "@bob")
        await wait_for(pilot, lambda: any("third line" in x for x in log.plain_lines), "shown")
        assert any(line.strip() == "second line" for line in log.plain_lines)


async def test_ctrl_j_and_shift_enter_add_a_line_and_enter_sends() -> None:
    client = fake()
    app = make(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await screen.open_conversation("@bob")
        await focus_composer(pilot)
        await pilot.press(*"one", "ctrl+j", *"two", "shift+enter", *"three")
        assert screen.composer.text == "one\ntwo\nthree"
        assert not client.calls_to("send_message")
        await pilot.press("enter")
        await wait_for(pilot, lambda: client.calls_to("send_message"), "the send")
        assert client.calls_to("send_message")[0][2] == "one\ntwo\nthree"


async def test_tab_completes_nicks_and_cycles() -> None:
    client = fake()
    app = make(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await screen.open_conversation("#team")
        await focus_composer(pilot)
        composer = screen.composer
        await pilot.press("b", "o", "tab")
        assert composer.text == "bob: "  # the mention form at the start of the line
        await pilot.press("tab")
        assert composer.text == "boris: "  # repeated Tab cycles
        await pilot.press("tab")
        assert composer.text == "bob: "
        await type_text(pilot, "hi ca")
        await pilot.press("tab")
        assert composer.text == "bob: hi carol "  # inside the line: no colon
        assert composer.has_focus  # Tab never moves the focus away


async def test_tab_completes_commands_and_rooms() -> None:
    client = fake(public_rooms=[("lobby", 3)])
    app = make(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await focus_composer(pilot)
        composer = screen.composer
        await type_text(pilot, "/wh")
        await pilot.press("tab")
        assert composer.text == "/whois "
        composer.value = ""
        await type_text(pilot, "/join lo")
        await pilot.press("tab")
        assert composer.text == "/join lobby "
        composer.value = ""
        await type_text(pilot, "see #te")
        await pilot.press("tab")
        assert composer.text == "see #team "
        composer.value = ""
        await type_text(pilot, "@bo")
        await pilot.press("tab")
        assert composer.text == "@bob "


async def test_input_history_is_kept_per_conversation() -> None:
    client = fake()
    app = make(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await screen.open_conversation("@bob")
        await focus_composer(pilot)
        await type_text(pilot, "to bob")
        await pilot.press("enter")
        await screen.open_conversation("#team")
        await type_text(pilot, "half-written")
        await pilot.press("up")
        assert screen.composer.text == "half-written"  # no history in #team yet
        await screen.open_conversation("@bob")
        await pilot.pause()
        assert screen.composer.text == ""
        await pilot.press("up")
        assert screen.composer.text == "to bob"
        await pilot.press("down")
        await screen.open_conversation("#team")
        await pilot.pause()
        assert screen.composer.text == "half-written"  # the draft waited for its pane


async def test_the_length_limit_shows_before_sending_and_refuses() -> None:
    client = fake()
    app = make(client)
    async with app.run_test(size=(60, 20), notifications=True) as pilot:
        screen = await main_screen(pilot)
        await screen.open_conversation("@bob")
        await focus_composer(pilot)
        counter = screen.query_one("#counter", Static)
        assert not counter.display
        screen.composer.value = "x" * 3700
        await wait_for(pilot, lambda: counter.display, "the counter")
        assert "3700/4000" in str(counter.render())
        screen.composer.value = "x" * 4500
        await wait_for(pilot, lambda: counter.has_class("-over"), "over the limit")
        assert "(500 too many)" in str(counter.render())
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.notes, "the refusal")
        assert "4500 characters" in app.notes[-1]
        assert "4000" in app.notes[-1]
        assert not client.calls_to("send_message")
        assert len(screen.composer.text) == 4500  # kept, to be shortened
        # The refusal never covers the (now tall) input box or the counter above it.
        await wait_for(pilot, lambda: screen.query(Toast), "the toast")
        await pilot.pause()
        await pilot.pause()
        for toast in screen.query(Toast):
            assert not toast.region.overlaps(screen.composer.region)
            assert not toast.region.overlaps(counter.region)


# --- errors in words --------------------------------------------------------------------------------


async def test_msg_to_nobody_opens_no_pane() -> None:
    client = fake()
    app = make(client)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        screen = await main_screen(pilot)
        await focus_composer(pilot)
        await type_text(pilot, "/msg nobody hello")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.notes, "the answer")
        assert app.notes == ["nobody is not online and has no account."]
        await pilot.pause()
        assert screen.pane_for("@nobody") is None
        assert not client.calls_to("send_message")
        assert "nobody" not in str(screen.sidebar.option_list.options)


async def test_msg_to_a_user_not_listed_asks_the_server_then_opens() -> None:
    client = fake()
    client.users.append("zed")  # has an account, offline, shares nothing with us
    app = make(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await focus_composer(pilot)
        await type_text(pilot, "/msg zed hello")
        await pilot.press("enter")
        await wait_for(pilot, lambda: client.calls_to("send_message"), "the send")
        assert client.calls_to("send_message") == [("send_message", "@zed", "hello")]
        assert screen.current_address == "@zed"
        assert not app.notes


# --- moving around ----------------------------------------------------------------------------------


async def test_alt_number_goes_to_that_tab() -> None:
    client = fake()
    app = make(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await screen.open_conversation("@bob")
        await screen.open_conversation("#team")
        await screen.open_conversation("@carol")
        await focus_composer(pilot)
        await pilot.press("alt+2")
        await wait_for(pilot, lambda: screen.current_address == "#team", "the second tab")
        await pilot.press("alt+1")
        await wait_for(pilot, lambda: screen.current_address == "@bob", "the first tab")
        await pilot.press("alt+9")  # no ninth tab: nothing happens
        await pilot.pause()
        assert screen.current_address == "@bob"


async def test_quick_switcher_fuzzy_matches_every_conversation() -> None:
    client = fake(public_rooms=[("the-best", 2)])
    app = make(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await screen.open_conversation("@bob")
        await focus_composer(pilot)
        await pilot.press("ctrl+k")
        switcher = await screen_shown(pilot, QuickSwitcher, "#switcher-input")
        addresses = [d.address for d in switcher.shown]
        assert {"@boris", "@carol", "#team", "#the-best"} <= set(addresses)
        await pilot.press("t", "m")
        await wait_for(pilot, lambda: switcher.shown[0].address == "#team", "#team first")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.current_address == "#team", "#team shown")
        await pilot.press("ctrl+k")
        switcher = await screen_shown(pilot, QuickSwitcher, "#switcher-input")
        await type_text(pilot, "crl")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.current_address == "@carol", "@carol opened")


async def test_ctrl_l_redraws_and_never_leaves_the_group() -> None:
    client = fake()
    app = make(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await screen.open_conversation("#team")
        await focus_composer(pilot)
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert app.screen is screen  # no confirmation dialog
        assert not client.calls_to("leave")
        assert screen.current_address == "#team"


async def test_the_active_tab_stays_in_view() -> None:
    client = fake()
    app = make(client)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await main_screen(pilot)
        await focus_composer(pilot)
        for n in range(6):  # as a user does it: the pane opens when the server says `joined`
            await type_text(pilot, f"/create another_long_group_name_{n}")
            await pilot.press("enter")
            name = f"#another_long_group_name_{n}"
            await wait_for(pilot, lambda name=name: screen.current_address == name, name)
        await pilot.pause()
        tab = screen.tabs.get_tab(screen.tabs.active)
        strip = screen.tabs.query_one(Tabs)
        assert "another_long_group_name_5" in str(tab.label)

        def in_view() -> bool:
            return tab.region.width > 0 and strip.region.contains_region(tab.region)

        await wait_for(pilot, in_view, "the active tab scrolled into view")
        assert strip.region.width == 80


# --- knowing what happened --------------------------------------------------------------------------


async def test_bell_and_notification_for_a_dm_not_in_view_only() -> None:
    client = fake()
    app = make(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await screen.open_conversation("@bob")
        await pilot.pause()
        client.receive("bob", "@alice", "seen: you are looking at this pane")
        log = log_of(screen, "@bob")
        await wait_for(pilot, lambda: log.message_ids, "bob's message")
        await pilot.pause()
        assert app.bells == 0
        assert app.desktop == []

        client.receive("carol", "@alice", "psst")  # another pane: not in view
        await wait_for(pilot, lambda: app.desktop, "a desktop notification")
        assert app.bells == 1
        assert app.desktop == [("carol", "psst")]

        client.receive("bob", "#team", "just chatting")  # a group, no mention: quiet
        client.receive("bob", "#team", "Alice: can you look?")  # a mention: alert
        await wait_for(pilot, lambda: len(app.desktop) == 2, "the mention's notification")
        assert app.desktop[1] == ("bob in #team", "Alice: can you look?")
        assert app.bells == 2


async def test_alerts_can_be_turned_off() -> None:
    client = fake()
    settings = ClientSettings(notifications=Notifications(bell=False, desktop="off"))
    app = AlertingApp(client, settings=settings)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        client.receive("carol", "@alice", "psst")
        await wait_for(pilot, lambda: screen.pane_for("@carol") is not None, "the pane")
        await pilot.pause()
        assert app.bells == 0
        assert app.desktop == []


async def test_new_messages_below_when_scrolled_up() -> None:
    client = fake()
    for n in range(60):
        client.make_message("bob", "@alice", f"old {n}")
    app = make(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        pane = await screen.open_conversation("@bob")
        log = pane.log_view
        await wait_for(pilot, lambda: len(log.message_ids) == 50, "a page")
        await pilot.pause()
        log.scroll_to(y=5, animate=False)
        await pilot.pause()
        client.receive("bob", "@alice", "one")
        client.receive("bob", "@alice", "two")
        await wait_for(pilot, lambda: pane.new_below.has_class("-visible"), "the sign")
        await wait_for(pilot, lambda: "2 new messages below" in str(pane.new_below.render()), "2")
        log.scroll_end(animate=False)
        await wait_for(pilot, lambda: not pane.new_below.has_class("-visible"), "the sign gone")


# --- groups -----------------------------------------------------------------------------------------


async def test_create_public_with_invitees_shown_pending() -> None:
    client = fake()
    app = make(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await focus_composer(pilot)
        await type_text(pilot, "/create lobby --public bob")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.current_address == "#lobby", "the new group")
        assert client.calls_to("create_room") == [("create_room", "lobby", ("bob",))]
        assert client.public_created is True
        pane = screen.pane_for("#lobby")
        assert pane is not None
        assert pane.member_list is not None
        members = pane.member_list
        await wait_for(
            pilot,
            lambda: any("bob (invited)" in str(o.prompt) for o in members.options),
            "bob pending",
        )


async def test_create_dialog_makes_a_public_group() -> None:
    client = fake()
    app = make(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await pilot.press("ctrl+g")
        dialog = await screen_shown(pilot, CreateGroupDialog, "#create-name")
        await type_text(pilot, "games")
        await pilot.click("#create-public")
        dialog.query_one("#create-invite").focus()
        await type_text(pilot, "bob carol")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.current_address == "#games", "the new group")
        assert client.calls_to("create_room") == [("create_room", "games", ("bob", "carol"))]
        assert client.public_created is True


async def test_join_dialog_lists_public_groups_live() -> None:
    client = fake()
    app = make(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await pilot.press("ctrl+o")
        dialog = await screen_shown(pilot, JoinDialog, "#join-list")
        listing = dialog.query_one("#join-list", OptionList)
        assert not listing.display
        client.push(protocol.RoomEvent(room="lobby", members=3))
        await wait_for(pilot, lambda: listing.option_count == 1, "lobby listed")
        assert "#lobby  3 members" in str(listing.options[0].prompt)
        listing.focus()
        listing.highlighted = 0
        await pilot.press("enter")
        await wait_for(pilot, lambda: client.calls_to("join"), "the join")
        assert client.calls_to("join") == [("join", "lobby")]
        await wait_for(pilot, lambda: screen.current_address == "#lobby", "the group")


async def test_whois_names_list_and_me() -> None:
    client = fake(public_rooms=[("lobby", 3)])
    app = make(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await screen.open_conversation("#team")
        log = log_of(screen, "#team")
        await focus_composer(pilot)

        def shown(text: str) -> bool:
            return any(text in line for line in log.plain_lines)

        await type_text(pilot, "/whois bob")

        await pilot.press("enter")
        await wait_for(pilot, lambda: shown("bob: online; in #team."), "whois")
        await type_text(pilot, "/names")
        await pilot.press("enter")
        await wait_for(pilot, lambda: shown("#team, 3: alice, bob, carol (offline)"), "names")
        await type_text(pilot, "/list")
        await pilot.press("enter")
        await wait_for(pilot, lambda: shown("Public groups: #lobby (3)"), "list")
        await type_text(pilot, "/whois nobody")
        await pilot.press("enter")
        await wait_for(pilot, lambda: shown("nobody is not online and has no account."), "nobody")
        await type_text(pilot, "/me waves")
        await pilot.press("enter")
        await wait_for(pilot, lambda: client.calls_to("send_message"), "the action")
        assert client.calls_to("send_message") == [("send_message", "#team", "/me waves")]
        await wait_for(pilot, lambda: shown("* alice waves"), "shown as an action")


# --- layout -----------------------------------------------------------------------------------------


async def test_narrow_terminal_folds_the_sidebar_and_members() -> None:
    client = fake()
    app = make(client)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await main_screen(pilot)
        await screen.open_conversation("#team")
        await pilot.pause()
        pane = screen.pane_for("#team")
        assert pane is not None
        assert pane.member_list is not None
        assert not screen.sidebar.display or screen.sidebar.region.width == 0
        assert pane.log_view.region.width >= 75
        await pilot.press("ctrl+b")
        await wait_for(pilot, lambda: screen.sidebar.region.width > 0, "the sidebar overlay")
        assert pane.log_view.region.width >= 75  # over the log, not beside it
        assert screen.sidebar.option_list.has_focus
        await pilot.press("escape")
        await wait_for(pilot, lambda: screen.sidebar.region.width == 0, "folded again")
        await pilot.press("alt+m")
        await wait_for(pilot, lambda: pane.member_list.region.width > 0, "the members overlay")


async def test_alt_keys_are_shortcuts_never_letters() -> None:
    client = fake()
    app = make(client)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await main_screen(pilot)
        await screen.open_conversation("#team")
        await screen.open_conversation("@bob")
        await focus_composer(pilot)
        await pilot.press("alt+x")  # unbound: nothing typed
        assert screen.composer.text == ""
        await pilot.press("alt+w")  # closes @bob, even from the input box
        await wait_for(pilot, lambda: screen.pane_for("@bob") is None, "@bob closed")
        assert screen.composer.text == ""


async def test_alerts_are_turned_off_by_command_or_palette() -> None:
    client = fake()
    app = make(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await focus_composer(pilot)
        await type_text(pilot, "/notify off")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.settings.notifications.desktop == "off", "notify off")
        await pilot.press("ctrl+p")
        await type_text(pilot, "Turn the bell off")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: not app.settings.notifications.bell, "bell off")
        await wait_for(pilot, lambda: app.screen is screen, "the palette closed")
        client.receive("carol", "@alice", "psst")
        await wait_for(pilot, lambda: screen.pane_for("@carol") is not None, "the pane")
        await pilot.pause()
        assert app.bells == 0
        assert app.desktop == []


async def test_no_alert_for_the_replay_after_login() -> None:
    client = fake()
    client.welcome = client.welcome.model_copy(update={"last_id": 100})
    app = make(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await screen.open_conversation("#team")
        client.push(
            protocol.Message(
                id=90, ts="2026-11-26T11:00:00.000Z", from_="carol", to="@alice", text="old"
            )
        )
        await wait_for(pilot, lambda: screen.state.unread_for("@carol") == 1, "counted unread")
        await pilot.pause()
        assert app.bells == 0
        assert app.desktop == []
