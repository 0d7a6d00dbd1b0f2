"""Pilot tests: edits and deletions shown in place ("(edited)", "message deleted")."""

from __future__ import annotations

from typing import Any

from textual.widgets import Button

from tests.tui.fake_client import FakeClient
from tests.tui.helpers import log_of, main_screen, make_app, screen_shown, wait_for
from tlschat import protocol
from tlschat.tui.screens.dialogs import ConfirmDialog
from tlschat.tui.widgets.composer import Composer

SIZE = (100, 30)


def fake(**kwargs: Any) -> FakeClient:
    kwargs.setdefault("users", [("alice", True), ("carol", False)])
    return FakeClient("bob", **kwargs)


async def type_line(pilot: Any, text: str) -> None:
    pilot.app.screen.query_one("#composer", Composer).focus()
    await pilot.press(*text, "enter")


def entry(message: protocol.Message, new_id: int, **change: Any) -> protocol.Message:
    """An edit or delete entry about `message`, as the server pushes it."""
    return protocol.Message(id=new_id, ts=message.ts, from_=message.from_, to=message.to, **change)


async def test_edit_and_delete_change_the_message_in_place() -> None:
    client = fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        first = client.receive("alice", "@bob", "helo bob")
        second = client.receive("alice", "@bob", "secret thing")
        await wait_for(pilot, lambda: screen.pane_for("@alice") is not None, "alice's pane")
        screen.tabs.active = "dm-alice"
        log = log_of(screen, "@alice")
        await wait_for(pilot, lambda: len(log.message_ids) == 2, "two messages")
        client.push(entry(first, 100, text="hello bob", edit_of=first.id))
        client.push(entry(second, 101, text="", delete_of=second.id))

        def shown() -> bool:
            text = "\n".join(log.plain_lines)
            return "hello bob (edited)" in text and "message deleted" in text

        await wait_for(pilot, shown, "the edit and the deletion")
        text = "\n".join(log.plain_lines)
        assert "helo bob" not in text
        assert "secret thing" not in text
        assert log.message_ids == [first.id, second.id]  # no new rows for the entries


async def test_entries_are_not_unread() -> None:
    client = fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await type_line(pilot, "/msg carol")  # another pane is in view
        await wait_for(pilot, lambda: screen.current_address == "@carol", "the @carol pane")
        first = client.receive("alice", "@bob", "one")
        await wait_for(pilot, lambda: screen.state.unread_for("@alice") == 1, "one unread")
        client.push(entry(first, 100, text="uno", edit_of=first.id))
        client.push(entry(first, 101, text="", delete_of=first.id))
        log = log_of(screen, "@alice")
        await wait_for(pilot, lambda: len(log._ids) == 3, f"the entries arrived {log._ids}")
        assert screen.state.unread_for("@alice") == 1
        screen.tabs.active = "dm-alice"
        await wait_for(pilot, lambda: any("message deleted" in x for x in log.plain_lines), "gone")


async def test_history_shows_messages_as_they_stand() -> None:
    client = fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        client.receive("alice", "@bob", "newest")
        await wait_for(pilot, lambda: screen.pane_for("@alice") is not None, "alice's pane")
        screen.tabs.active = "dm-alice"
        log = log_of(screen, "@alice")
        log.add_messages(
            [
                protocol.Message(
                    id=500, ts="2026-12-07T00:00:00.000Z", from_="alice", to="@bob",
                    text="fixed", edited="2026-12-07T00:01:00.000Z",
                ),
                protocol.Message(
                    id=501, ts="2026-12-07T00:00:00.000Z", from_="alice", to="@bob",
                    text="", deleted=True,
                ),
            ]
        )  # fmt: skip
        await wait_for(pilot, lambda: any("fixed (edited)" in x for x in log.plain_lines), "edit")
        assert any("alice: message deleted" in x for x in log.plain_lines)


async def test_up_arrow_on_an_empty_line_edits_our_last_message() -> None:
    client = fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await screen.open_conversation("@alice")
        await type_line(pilot, "frist")
        log = log_of(screen, "@alice")
        await wait_for(pilot, lambda: len(log.message_ids) == 1, "our message")
        client.receive("alice", "@bob", "you typo'd")
        composer = screen.composer
        # Escape cancels
        await pilot.press("up")
        assert composer.value == "frist"
        assert composer.editing == log.message_ids[0]
        await pilot.press("escape")
        assert composer.value == ""
        assert composer.editing is None
        # Enter replaces it
        await pilot.press("up", *["backspace"] * len("frist"), *"first", "enter")
        await wait_for(pilot, lambda: client.calls_to("edit"), "an edit sent")
        assert client.calls_to("edit") == [("edit", log.message_ids[0], "first")]
        assert client.calls_to("send_message") == [("send_message", "@alice", "frist")]
        await wait_for(pilot, lambda: any("first (edited)" in x for x in log.plain_lines), "shown")
        # a non-empty line: up walks the history as before
        await pilot.press(*"draft", "up")
        assert composer.value == "frist"
        assert composer.editing is None


async def test_emptying_the_line_deletes_after_confirming() -> None:
    client = fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await screen.open_conversation("@alice")
        await type_line(pilot, "oops")
        log = log_of(screen, "@alice")
        await wait_for(pilot, lambda: len(log.message_ids) == 1, "our message")
        await pilot.press("up", *["backspace"] * len("oops"), "enter")
        dialog = await screen_shown(pilot, ConfirmDialog, "#confirm-yes")
        dialog.query_one("#confirm-no", Button).press()
        await pilot.pause(0.1)
        assert client.calls_to("delete") == []
        await pilot.press("up", *["backspace"] * len("oops"), "enter")
        dialog = await screen_shown(pilot, ConfirmDialog, "#confirm-yes")
        dialog.query_one("#confirm-yes", Button).press()
        await wait_for(pilot, lambda: client.calls_to("delete"), "a delete sent")
        await wait_for(pilot, lambda: any("message deleted" in x for x in log.plain_lines), "gone")


async def test_a_change_to_a_conversation_not_open_opens_nothing() -> None:
    client = fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        old = client.make_message("alice", "@bob", "old")  # stored, never pushed
        client.push(entry(old, 100, text="older", edit_of=old.id))
        client.push(entry(old, 101, text="", delete_of=old.id))
        client.receive("carol", "@bob", "a marker")
        await wait_for(pilot, lambda: screen.pane_for("@carol") is not None, "carol's pane")
        carol = log_of(screen, "@carol")
        await wait_for(pilot, lambda: len(carol.message_ids) == 1, "the marker shown")
        assert screen.pane_for("@alice") is None
