"""Pictures through a real server over real TLS: one user sends a PNG to a group, the TUI of
the other shows it inline with the right aspect, and saving it writes the very same bytes."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from textual.widgets import Input

from tests.tui.helpers import log_of, main_screen, make_app, screen_shown, wait_for
from tests.tui.test_files import png
from tests.tui.test_real_server import FAST, PeerFactory, peer, type_line, wait_for_peer
from tlschat import protocol
from tlschat.client import ChatClient
from tlschat.client.cache import FileCache
from tlschat.tui.images import Terminal
from tlschat.tui.screens.files import SaveDialog
from tlschat.tui.widgets.invitation_bar import InvitationBar

__all__ = ["peer"]  # the fixture, shared with test_real_server

SIZE = (100, 30)


async def test_png_to_a_group_shown_inline_and_saved(
    server: Any, client_ctx: ssl.SSLContext, peer: PeerFactory, tmp_path: Path
) -> None:
    alice = await peer("alice")
    original = png(120, 60)
    client = ChatClient(
        "127.0.0.1", server.port, "bob", password="pw-bob", ssl_context=client_ctx, backoff=FAST
    )
    app = make_app(
        client, file_cache=FileCache(tmp_path / "cache"), image_terminal=Terminal("halfcell")
    )
    async with app.run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await alice.client.create_room("team", invite=["bob"])
        bar = screen.query_one(InvitationBar)
        await wait_for(pilot, lambda: bar.display, "the invitation")
        await pilot.press("f2")
        await wait_for(pilot, lambda: screen.current_address == "#team", "joined #team")

        meta = await alice.client.upload("wide.png", original)
        await alice.client.send_message("#team", "a wide one", file=meta.id)
        log = log_of(screen, "#team")
        await wait_for(pilot, lambda: meta.id in log.picture_sizes, "the picture, inline")
        columns, rows = log.picture_sizes[meta.id]
        # 120×60 in cells half as wide as tall: twice as many columns as rows, times 2.
        assert abs(columns / (rows * 2) - 2.0) < 0.2
        assert "alice: a wide one" in "\n".join(log.plain_lines)

        # Save it: from the log, `s`, into a folder of ours.
        log.focus()
        await pilot.press("s")
        dialog = await screen_shown(pilot, SaveDialog, "#save-path")
        target = tmp_path / "saved.png"
        dialog.query_one("#save-path", Input).value = str(target)
        await pilot.press("enter")
        await wait_for(pilot, target.exists, "saved")
        assert target.read_bytes() == original

        # And the other way: the TUI sends a picture, alice downloads the same bytes.
        mine = tmp_path / "mine.png"
        mine.write_bytes(png(32, 32))
        await type_line(pilot, f"/image {mine}")
        await wait_for_peer(
            lambda: any(
                m.file is not None and m.file.name == "mine.png"
                for m in alice.frames(protocol.Message)
            )
        )
        got = next(
            m
            for m in alice.frames(protocol.Message)
            if m.file is not None and m.file.name == "mine.png"
        )
        assert got.to == "#team"
        assert got.file is not None
        assert (got.file.width, got.file.height) == (32, 32)
        assert await alice.client.download(got.file.id) == mine.read_bytes()
