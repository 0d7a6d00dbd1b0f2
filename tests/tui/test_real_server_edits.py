"""The TUI's edit, typing and search against a real server over real TLS."""

from __future__ import annotations

import ssl
from typing import Any

from textual.widgets import OptionList

from tests.tui.helpers import log_of, main_screen, screen_shown, sidebar_rows, wait_for
from tests.tui.test_real_server import PeerFactory, lines, peer, tui, type_line
from tlschat import protocol
from tlschat.tui.screens.search import SearchScreen
from tlschat.tui.widgets.typing_line import TypingLine

__all__ = ["peer"]  # the fixture, used by name

SIZE = (100, 30)


async def test_edit_typing_and_search_with_a_real_server(
    server: Any, client_ctx: ssl.SSLContext, peer: PeerFactory
) -> None:
    alice = await peer("alice")
    app, _ = tui(server, client_ctx)
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await wait_for(pilot, lambda: "● alice" in "\n".join(sidebar_rows(screen)), "alice online")
        await screen.open_conversation("@alice")
        # alice types: the line shows it
        await alice.client.typing("@bob")
        line = screen.query_one(TypingLine)
        await wait_for(pilot, lambda: line.typers("@alice") == ["alice"], "alice is typing")
        # we type: alice is told, once
        await type_line(pilot, "teh plan")
        await wait_for(
            pilot, lambda: alice.frames(protocol.TypingEvent), "alice told that bob types"
        )
        await wait_for(
            pilot, lambda: any(m.text == "teh plan" for m in alice.frames(protocol.Message)), "sent"
        )
        # up arrow edits it; alice gets the edit entry
        log = log_of(screen, "@alice")
        await wait_for(pilot, lambda: len(log.message_ids) == 1, "our message shown")
        # (ctrl+u picks a file to send: emptied with backspace)
        await pilot.press("up", *["backspace"] * len("teh plan"), *"the plan", "enter")
        await wait_for(
            pilot,
            lambda: any(m.edit_of == log.message_ids[0] for m in alice.frames(protocol.Message)),
            "alice gets the edit",
        )
        await wait_for(
            pilot, lambda: any("the plan (edited)" in x for x in lines(screen, "@alice")), "shown"
        )
        # ctrl+f finds the latest text, not the old one
        await pilot.press("ctrl+f")
        search = await screen_shown(pilot, SearchScreen, "#search-input")
        await pilot.press(*"pla", "enter")
        listing = search.query_one("#search-results", OptionList)
        await wait_for(pilot, lambda: listing.option_count == 1, "one result")
        assert "the plan" in str(listing.get_option_at_index(0).prompt)
        await pilot.press("escape")
