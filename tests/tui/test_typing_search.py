"""Pilot tests: "bob is typing…", sending `typing`, and the ctrl+f search screen."""

from __future__ import annotations

from typing import Any

from textual.widgets import OptionList

from tests.tui.fake_client import FakeClient
from tests.tui.helpers import log_of, main_screen, make_app, screen_shown, wait_for
from tlschat import protocol
from tlschat.tui.screens.search import SearchScreen, highlight
from tlschat.tui.widgets.composer import Composer
from tlschat.tui.widgets.typing_line import TypingLine

SIZE = (100, 30)


def fake(**kwargs: Any) -> FakeClient:
    kwargs.setdefault("users", [("alice", True), ("carol", False)])
    return FakeClient("bob", **kwargs)


async def open_alice(pilot: Any, client: FakeClient) -> Any:
    screen = await main_screen(pilot)
    client.receive("alice", "@bob", "hi bob")
    await wait_for(pilot, lambda: screen.pane_for("@alice") is not None, "alice's pane")
    screen.tabs.active = "dm-alice"
    await wait_for(pilot, lambda: screen.current_address == "@alice", "alice's pane in view")
    return screen


async def test_typing_line_shows_and_clears() -> None:
    client = fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_alice(pilot, client)
        line = screen.query_one(TypingLine)
        now = [1000.0]
        line.clock = lambda: now[0]
        client.push(protocol.TypingEvent(from_="alice", to="@bob"))
        await wait_for(pilot, lambda: line.typers("@alice") == ["alice"], "alice typing")
        assert str(line.render()) == "alice is typing…"
        # a message from alice ends it at once
        client.receive("alice", "@bob", "done")
        await wait_for(pilot, lambda: line.typers("@alice") == [], "alice done")
        # otherwise it lasts 6 s after the last `typing`
        client.push(protocol.TypingEvent(from_="alice", to="@bob"))
        await wait_for(pilot, lambda: line.typers("@alice") == ["alice"], "alice typing again")
        now[0] += 5.9
        assert line.typers("@alice") == ["alice"]
        now[0] += 0.2
        assert line.typers("@alice") == []
        # typing in a group shows in the group's pane only
        client.push(protocol.TypingEvent(from_="carol", to="#den"))
        await wait_for(pilot, lambda: line.typers("#den") == ["carol"], "carol in #den")
        assert line.typers("@alice") == []


async def test_typing_is_sent_at_most_every_3_seconds() -> None:
    client = fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_alice(pilot, client)
        now = [50.0]
        screen.typing_sender.clock = lambda: now[0]
        screen.query_one("#composer", Composer).focus()
        await pilot.press(*"hello")
        await wait_for(pilot, lambda: client.calls_to("typing"), "a typing sent")
        assert client.calls_to("typing") == [("typing", "@alice")]
        now[0] += 3.1
        await pilot.press("!")
        await wait_for(pilot, lambda: len(client.calls_to("typing")) == 2, "a second typing")
        await pilot.press("enter")  # sent: the next keystroke may tell again at once
        await pilot.press("x")
        await wait_for(pilot, lambda: len(client.calls_to("typing")) == 3, "typing after send")
        await pilot.press("backspace", *"/help")
        await pilot.pause(0.1)
        assert len(client.calls_to("typing")) == 3  # a command is not typing


def test_highlight_marks_words_starting_with_a_query_word() -> None:
    content = highlight("Deployed the deploy script", "deplo SCRIPT")
    bold = [content.plain[s.start : s.end] for s in content.spans]
    assert bold == ["Deployed", "deploy", "script"]


async def test_search_opens_the_conversation_at_the_message() -> None:
    client = fake()
    old = client.make_message("alice", "@bob", "the needle is here")
    for n in range(120):
        client.make_message("alice", "@bob", f"hay {n}")
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await pilot.press("ctrl+f")
        search = await screen_shown(pilot, SearchScreen, "#search-input")
        await pilot.press(*"needle", "enter")
        listing = search.query_one("#search-results", OptionList)
        await wait_for(pilot, lambda: listing.option_count == 1, "one result")
        assert "needle" in str(listing.get_option_at_index(0).prompt)
        assert client.calls_to("search") == [("search", "needle", None)]
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.current_address == "@alice", "alice's pane")
        log = log_of(screen, "@alice")
        await wait_for(pilot, lambda: log.selected == old.id, "the old message selected")
        assert log.has_focus  # e, d, m act on it; Esc goes back to the input
        assert any("the needle is here" in line for line in log.plain_lines[log.scroll_y :])
        # One request for the newest page, then one for a window around the message (its id
        # + 1 + 10), instead of paging back from the newest.
        history = client.calls_to("history")
        assert history[:2] == [("history", "@alice", None), ("history", "@alice", old.id + 11)]
        # The gap between the window and the newest page fills from its newer end.
        await wait_for(pilot, lambda: log.gap is None, "the gap filled")
        assert log.message_ids == [m.id for m in client.store["@alice"]]
        assert not any("loading" in line for line in log.plain_lines)
