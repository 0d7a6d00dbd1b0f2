"""The TUI side of room owners, topics and kicks (PROTOCOL.md "Groups"), against a fake client."""

from __future__ import annotations

from typing import Any

from tests.tui.fake_client import FakeClient
from tests.tui.helpers import main_screen, make_app, type_text, wait_for
from tlschat import protocol
from tlschat.tui import commands

SIZE = (100, 30)


async def type_line(pilot: Any, text: str) -> None:
    pilot.app.screen.query_one("#composer").focus()
    await type_text(pilot, text)
    await pilot.press("enter")


def test_topic_and_kick_commands_parse() -> None:
    assert commands.parse("/topic ship it today") == commands.Topic("ship it today")
    assert commands.parse("/topic") == commands.Topic("")
    assert commands.parse("/kick @carol being rude") == commands.Kick("carol", "being rude")
    assert commands.parse("/kick carol") == commands.Kick("carol", None)


async def test_topic_shown_in_pane_and_owner_marked() -> None:
    client = FakeClient("bob", users=[("alice", True), ("carol", False)],
                        rooms=[("team", ["alice", "bob"])])  # fmt: skip
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await type_line(pilot, "/join team")
        await wait_for(pilot, lambda: screen.current_address == "#team", "the pane")
        pane = screen.pane_for("#team")
        assert pane is not None
        assert pane.member_list is not None
        assert pane.topic_line is not None
        assert not pane.topic_line.display  # no topic yet: no line

        client.push(protocol.Members(room="team", members=("alice", "bob"), owner="alice"))

        def owner_marked() -> bool:
            assert pane.member_list is not None
            return any("alice (owner)" in str(o.prompt) for o in pane.member_list.options)

        await wait_for(pilot, owner_marked, "alice marked as owner")

        await type_line(pilot, "/topic release on friday")
        await wait_for(pilot, lambda: pane.topic_line.display, "the topic line")  # type: ignore[union-attr]
        assert client.calls_to("topic") == [("topic", "team", "release on friday")]
        assert "release on friday" in str(pane.topic_line.render())
        assert any("set the topic" in line for line in pane.log_view.plain_lines)


async def test_kick_command_and_being_kicked() -> None:
    client = FakeClient("bob", users=[("alice", True), ("carol", True)],
                        rooms=[("team", ["bob", "carol"])])  # fmt: skip
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await type_line(pilot, "/join team")
        await wait_for(pilot, lambda: screen.current_address == "#team", "the pane")
        await type_line(pilot, "/kick carol spamming")
        await wait_for(pilot, lambda: client.calls_to("kick"), "the kick request")
        assert client.calls_to("kick") == [("kick", "team", "carol")]

        client.push(protocol.Left(room="team", by="alice", reason="cleanup"))
        await wait_for(pilot, lambda: screen.pane_for("#team") is None, "the pane closed")

        await wait_for(
            pilot,
            lambda: any("alice removed you from #team: cleanup" in n for n in app.notes),
            "a notification",
        )


async def test_palette_offers_topic_and_kick_to_the_owner() -> None:
    from tlschat.tui.palette import ChatCommands

    client = FakeClient("bob", users=[("carol", True)], rooms=[("team", ["bob", "carol"])])
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await type_line(pilot, "/join team")
        await wait_for(pilot, lambda: screen.current_address == "#team", "the pane")
        provider = ChatCommands(screen)
        names = [name for name, _, _ in provider._commands()]
        assert "Set the topic of #team…" in names
        assert "Kick from #team…" not in names  # bob is not the owner (yet)
        client.push(protocol.Members(room="team", members=("bob", "carol"), owner="bob"))
        await wait_for(pilot, lambda: app.state.owner_of("team") == "bob", "bob owns it")
        names = [name for name, _, _ in provider._commands()]
        assert "Kick from #team…" in names
