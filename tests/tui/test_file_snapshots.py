"""Snapshot of a conversation with a picture, half blocks forced, at 80×24.

Review `snapshot_report.html` before `pytest tests/tui/test_file_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from tests.tui.fake_client import FakeClient
from tests.tui.helpers import log_of, main_screen, make_app, wait_for
from tests.tui.test_files import png
from tlschat.client.cache import FileCache
from tlschat.tui.images import Terminal

SnapCompare = Callable[..., bool]


def test_conversation_with_a_picture(snap_compare: SnapCompare, tmp_path: Path) -> None:
    client = FakeClient("bob", users=[("alice", True)], rooms=[("team", ["bob", "alice"])])
    client.make_message("alice", "#team", "the new logo, what do you think?")
    client.make_message("bob", "#team", "show me")
    meta = client.add_file("logo.png", png(64, 48))
    stored = client.store["#team"]
    stored.append(client.make_message("alice", "#team", "").model_copy(update={"file": meta}))
    stored.pop(-2)  # make_message stored the plain copy; keep the one with the file
    app = make_app(
        client,
        theme="textual-dark",
        file_cache=FileCache(tmp_path / "cache"),
        image_terminal=Terminal("halfcell"),
    )

    async def run_before(pilot: Pilot[Any]) -> None:
        screen = await main_screen(pilot)
        await screen.open_conversation("#team")
        log = log_of(screen, "#team")
        await wait_for(pilot, lambda: log.picture_sizes, "the picture decoded")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
