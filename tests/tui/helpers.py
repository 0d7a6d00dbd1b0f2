"""Helpers for the TUI tests: wait for a condition (never for a time), find the main screen."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input, TextArea

from tests.tui.fake_client import FakeClient
from tlschat.tui.app import ChatApp
from tlschat.tui.screens.main import MainScreen
from tlschat.tui.widgets.message_log import MessageLog

WAIT = 10.0
"""Seconds before a wait gives up (a failure, not a timing assertion)."""


async def wait_for(
    pilot: Pilot[Any], predicate: Callable[[], object], what: str = "condition"
) -> None:
    """Let the app run until `predicate()` is true."""
    steps = int(WAIT / 0.02)
    for _ in range(steps):
        await pilot.pause(0.02)
        if predicate():
            return
    raise AssertionError(f"timed out waiting for {what}")


async def type_text(pilot: Pilot[Any], text: str) -> None:
    """Put `text` into the focused input at its cursor, as a paste of it would.

    `pilot.press` waits for the app to go idle after every key (about 80 ms each); tests
    about keys themselves (completion, history, typing notices) still press them."""
    await pilot.pause()  # a focus() just asked for takes effect first, as before a key press
    focused = pilot.app.focused
    if isinstance(focused, TextArea):
        focused.insert(text)
    elif isinstance(focused, Input):
        focused.insert_text_at_cursor(text)
    else:
        raise AssertionError(f"typing {text!r} needs a focused input, not {focused!r}")
    await pilot.pause()


class RecordingApp(ChatApp):
    """A ChatApp that keeps the text of every notification it shows."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("tz", UTC)
        kwargs.setdefault("cursor_blink", False)
        super().__init__(*args, **kwargs)
        self.notes: list[str] = []

    def notify(self, message: str, **kwargs: Any) -> None:  # type: ignore[override]
        self.notes.append(message)
        super().notify(message, **kwargs)


def make_app(client: FakeClient | None = None, **kwargs: Any) -> RecordingApp:
    return RecordingApp(client, **kwargs)


async def main_screen(pilot: Pilot[Any]) -> MainScreen:
    """Wait for the main screen (after `welcome`) and return it."""

    def ready() -> bool:
        screen = pilot.app.screen
        return isinstance(screen, MainScreen) and screen.ready.is_set()

    await wait_for(pilot, ready, "the main screen")
    screen = pilot.app.screen
    assert isinstance(screen, MainScreen)
    return screen


def log_of(screen: MainScreen, address: str) -> MessageLog:
    pane = screen.pane_for(address)
    assert pane is not None, f"no pane for {address}"
    return pane.log_view


def sidebar_rows(screen: MainScreen) -> list[str]:
    listing = screen.sidebar.option_list
    return [str(option.prompt) for option in listing.options]


async def screen_shown(pilot: Pilot[Any], kind: type[Any], selector: str) -> Any:
    """Wait until the current screen is a `kind` whose widgets include `selector` (composed)."""

    def shown() -> bool:
        screen = pilot.app.screen
        return isinstance(screen, kind) and bool(screen.query(selector))

    await wait_for(pilot, shown, f"{kind.__name__} with {selector}")
    return pilot.app.screen
