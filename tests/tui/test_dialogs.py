"""Pilot tests of the small dialogs' keys."""

from __future__ import annotations

from textual.app import App

from tlschat.tui.screens.dialogs import ConfirmDialog


class Asking(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.answers: list[bool | None] = []

    def on_mount(self) -> None:
        self.push_screen(ConfirmDialog("Delete this message for everyone?"), self.answers.append)


async def test_confirm_starts_on_no_and_arrows_move_between_the_buttons() -> None:
    app = Asking()
    async with app.run_test(size=(60, 12)) as pilot:
        await pilot.pause()
        assert app.focused is not None
        assert app.focused.id == "confirm-no"
        await pilot.press("left")
        assert app.focused.id == "confirm-yes"
        await pilot.press("right")
        assert app.focused.id == "confirm-no"
        await pilot.press("left", "enter")
        await pilot.pause()
        assert app.answers == [True]


async def test_enter_on_the_default_answers_no() -> None:
    app = Asking()
    async with app.run_test(size=(60, 12)) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert app.answers == [False]
