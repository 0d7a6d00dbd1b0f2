"""Pilot tests: selecting a message in the log (alt+up, a click) to edit, delete it, or open its
menu; only our own messages may be edited or deleted."""

from __future__ import annotations

from typing import Any

from textual.widgets import Button, OptionList

from tests.tui.fake_client import FakeClient
from tests.tui.helpers import log_of, main_screen, make_app, screen_shown, wait_for
from tlschat.tui.screens.dialogs import ConfirmDialog
from tlschat.tui.screens.message_menu import MessageMenu
from tlschat.tui.widgets.message_log import MessageLog

SIZE = (100, 30)


async def conversation(pilot: Any, client: FakeClient) -> tuple[Any, MessageLog]:
    """@alice open, with alice's "one", our "two" and alice's "three"."""
    screen = await main_screen(pilot)
    client.receive("alice", "@bob", "one")
    client.receive("bob", "@alice", "two")
    client.receive("alice", "@bob", "three")
    await wait_for(pilot, lambda: screen.pane_for("@alice") is not None, "alice's pane")
    screen.tabs.active = "dm-alice"
    log = log_of(screen, "@alice")
    await wait_for(pilot, lambda: len(log.message_ids) == 3, "three messages")
    await wait_for(pilot, lambda: screen.current_address == "@alice", "the pane shown")
    return screen, log


def footer_keys(pilot: Any) -> set[str]:
    """Descriptions of the bindings the footer shows now."""
    return {b.binding.description for b in pilot.app.active_bindings.values() if b.enabled}


async def test_alt_up_selects_and_e_edits_our_message() -> None:
    client = FakeClient("bob", users=[("alice", True)])
    async with make_app(client).run_test(size=SIZE) as pilot:
        screen, log = await conversation(pilot, client)
        assert "Edit" not in footer_keys(pilot)
        await pilot.press("alt+up")
        ids = log.message_ids
        assert log.selected == ids[2]
        assert log.has_focus
        assert {"Edit", "Delete", "Menu", "Done"} <= footer_keys(pilot)
        await pilot.press("e")  # alice's message: a notice, no edit
        assert screen.composer.editing is None
        assert any("alice's message" in note for note in pilot.app.notes)
        await pilot.press("up")
        assert log.selected == ids[1]
        await pilot.press("e")  # ours: the up-arrow edit flow, in the input box
        assert screen.composer.editing == ids[1]
        assert screen.composer.value == "two"
        assert screen.composer.has_focus
        assert log.selected is None


async def test_d_deletes_our_message_after_confirming_and_escape_leaves() -> None:
    client = FakeClient("bob", users=[("alice", True)])
    async with make_app(client).run_test(size=SIZE) as pilot:
        screen, log = await conversation(pilot, client)
        await pilot.press("alt+up", "up")
        assert log.selected == log.message_ids[1]
        await pilot.press("d")
        dialog = await screen_shown(pilot, ConfirmDialog, "#confirm-yes")
        dialog.query_one("#confirm-yes", Button).press()
        await wait_for(pilot, lambda: client.calls_to("delete"), "a delete sent")
        assert client.calls_to("delete") == [("delete", log.message_ids[1])]
        await wait_for(pilot, lambda: screen.composer.has_focus, "back in the input box")
        await pilot.press("alt+up", "up", "up", "d")  # alice's: never asked, never sent
        assert any("only delete your own" in note for note in pilot.app.notes)
        assert len(client.calls_to("delete")) == 1
        await pilot.press("escape")
        assert log.selected is None
        assert screen.composer.has_focus


async def test_selection_is_highlighted() -> None:
    client = FakeClient("bob", users=[("alice", True)])
    async with make_app(client).run_test(size=SIZE) as pilot:
        _, log = await conversation(pilot, client)
        row = next(i for i, line in enumerate(log.plain_lines) if "two" in line)
        y = row - log.scroll_offset.y
        plain = log.render_line(y)
        await pilot.press("alt+up", "up")
        assert log.render_line(y) != plain  # the same text, another background
        assert log.render_line(y).text == plain.text


async def test_right_click_opens_the_menu_of_a_message() -> None:
    client = FakeClient("bob", users=[("alice", True)])
    async with make_app(client).run_test(size=SIZE) as pilot:
        screen, log = await conversation(pilot, client)
        row = next(i for i, line in enumerate(log.plain_lines) if "one" in line)
        await pilot.click(log, offset=(10, row - log.scroll_offset.y), button=3)
        menu = await screen_shown(pilot, MessageMenu, "#message-menu-list")
        listing = menu.query_one("#message-menu-list", OptionList)
        options = [(str(o.prompt), o.disabled) for o in listing.options]
        assert options == [("Edit", True), ("Delete", True)]  # alice's: greyed out
        assert log.selected == log.message_ids[0]
        await pilot.press("escape")
        await wait_for(pilot, lambda: pilot.app.screen is screen, "the menu closed")
        # Enter (or `m`) on our message: Edit is there, and picking it starts the edit
        await pilot.press("down", "enter")
        menu = await screen_shown(pilot, MessageMenu, "#message-menu-list")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.composer.editing == log.message_ids[1], "editing")
        assert screen.composer.value == "two"
