"""Files in the TUI with a fake client: pictures inline and cached, cards, saving, sending, and
the errors said in place (too large, not a file, not an image, cancelled, not allowed)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from textual import events
from textual.pilot import Pilot
from textual.widgets import Button, Input

from tests.tui.fake_client import LIMITS, FakeClient
from tests.tui.helpers import RecordingApp, log_of, main_screen, make_app, screen_shown, wait_for
from tlschat import protocol
from tlschat.client.cache import FileCache
from tlschat.tui.images import Terminal
from tlschat.tui.screens.dialogs import ConfirmDialog
from tlschat.tui.screens.files import FilePicker, PictureView, PictureViewer, SaveDialog
from tlschat.tui.widgets.composer import Composer
from tlschat.tui.widgets.message_log import MessageLog
from tlschat.tui.widgets.upload_bar import UploadBar

SIZE = (100, 30)
HALF = Terminal("halfcell")


def png(width: int = 64, height: int = 48) -> bytes:
    picture = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(picture)
    draw.rectangle((0, 0, width // 2, height // 2), fill="red")
    draw.ellipse((width // 3, height // 3, width - 2, height - 2), fill="blue")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def team() -> FakeClient:
    client = FakeClient("bob", users=[("alice", True)], rooms=[("team", ["bob", "alice"])])
    client.make_message("alice", "#team", "hello")
    return client


def app_with(client: FakeClient, cache: Path, **kwargs: Any) -> RecordingApp:
    return make_app(client, file_cache=FileCache(cache), image_terminal=HALF, **kwargs)


async def team_log(pilot: Pilot[Any]) -> MessageLog:
    screen = await main_screen(pilot)
    await screen.open_conversation("#team")
    log = log_of(screen, "#team")
    await wait_for(pilot, lambda: not log.more and not log.fetching_older, "history")
    return log


async def type_line(pilot: Pilot[Any], text: str) -> None:
    composer = pilot.app.screen.query_one("#composer", Composer)
    composer.focus()
    composer.value = text
    await pilot.press("enter")


def notices(log: MessageLog) -> str:
    """The log's text, lines joined and runs of spaces made one (notices wrap)."""
    return " ".join(" ".join(log.plain_lines).split())


# --- showing -------------------------------------------------------------------------------------


async def test_picture_inline_keeps_its_aspect_and_is_fetched_once(tmp_path: Path) -> None:
    client = team()
    message = client.receive_file("alice", "#team", "shapes.png", png(64, 48), text="look")
    cache = tmp_path / "cache"
    async with app_with(client, cache).run_test(size=SIZE) as pilot:
        log = await team_log(pilot)
        await wait_for(pilot, lambda: log.picture_sizes, "the picture decoded")
        columns, rows = log.picture_sizes[message.file.id]  # type: ignore[union-attr]
        # A cell is half as wide as it is tall: 64×48 shows as about twice as many columns
        # as rows, times 4/3.
        assert abs(columns / (rows * 2) - 64 / 48) < 0.15
        text = notices(log)
        assert "alice: look" in text
        assert "shapes.png · 64×48" in text
        assert "▀" in text
        assert client.calls_to("download_to") == [("download_to", message.file.id)]  # type: ignore[union-attr]

    # A second view (a restart: new app, same cache) makes no download request.
    again = team()
    again.receive_file("alice", "#team", "shapes.png", png(64, 48), text="look")
    async with app_with(again, cache).run_test(size=SIZE) as pilot:
        log = await team_log(pilot)
        await wait_for(pilot, lambda: log.picture_sizes, "the picture decoded")
        assert again.calls_to("download_to") == []


async def test_only_pictures_near_the_view_are_fetched(tmp_path: Path) -> None:
    client = team()
    for n in range(60):  # more than the first page of history (50)
        client.make_message("alice", "#team", f"picture {n}")
        meta = client.add_file(f"p{n}.png", png(40 + n, 30))
        stored = client.store["#team"]
        stored[-1] = stored[-1].model_copy(update={"file": meta})
    async with app_with(client, tmp_path / "cache").run_test(size=SIZE) as pilot:
        screen = await main_screen(pilot)
        await screen.open_conversation("#team")
        log = log_of(screen, "#team")
        await wait_for(pilot, lambda: log.picture_sizes, "the newest pictures")
        await pilot.pause(0.2)
        fetched = len(client.calls_to("download_to"))
        assert 0 < fetched < 10
        assert len(log.message_ids) == 50
        # Scrolling up loads older history, whose pictures show the same way.
        for _ in range(20):
            if ("download_to", "file1") in client.calls_to("download_to"):
                break
            log.scroll_home(animate=False)
            log.action_scroll_home()
            await pilot.pause(0.1)
        await wait_for(pilot, lambda: "file1" in log.picture_sizes, "the oldest picture shown")
        assert len(log.message_ids) == 61  # and "hello"
        assert len(client.calls_to("download_to")) < 30


async def test_a_file_that_is_no_picture_shows_as_a_card_and_saves(tmp_path: Path) -> None:
    client = team()
    data = b"%PDF-1.4 not really"
    message = client.receive_file("alice", "#team", "report.pdf", data)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    async with app_with(client, tmp_path / "cache").run_test(size=SIZE) as pilot:
        log = await team_log(pilot)
        await wait_for(pilot, lambda: "report.pdf" in notices(log), "the card")
        text = notices(log)
        assert "Save" in text
        assert "application/octet-stream · 19 B" in text
        assert client.calls_to("download_to") == []  # nothing fetched until asked
        log.post_message(MessageLog.FileChosen(log, message.file, "save"))  # type: ignore[arg-type]
        dialog = await screen_shown(pilot, SaveDialog, "#save-path")
        assert str(dialog.folder) != ""
        target = downloads / "report.pdf"
        dialog.query_one("#save-path", Input).value = str(target)
        await pilot.press("enter")
        await wait_for(pilot, target.exists, "saved")
        assert target.read_bytes() == data

        # Saving over it again asks first: the first Enter only warns.
        log.post_message(MessageLog.FileChosen(log, message.file, "save"))  # type: ignore[arg-type]
        dialog = await screen_shown(pilot, SaveDialog, "#save-path")
        target.write_bytes(b"mine")
        dialog.query_one("#save-path", Input).value = str(target)
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: "already exists" in str(dialog.query_one("#save-error").render()),
            "warned",
        )
        assert target.read_bytes() == b"mine"
        await pilot.press("enter")
        await wait_for(pilot, lambda: target.read_bytes() == data, "replaced on the second Save")


async def test_click_opens_full_size_and_s_saves(tmp_path: Path) -> None:
    client = team()
    original = png(64, 48)
    client.receive_file("alice", "#team", "shapes.png", original)
    async with app_with(client, tmp_path / "cache").run_test(size=SIZE) as pilot:
        log = await team_log(pilot)
        await wait_for(pilot, lambda: log.picture_sizes, "decoded")
        log.focus()
        await pilot.press("enter")
        viewer = await screen_shown(pilot, PictureViewer, "#viewer-picture")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(pilot.app.screen, PictureViewer), "closed")
        # A click on the picture opens it too.
        line = next(i for i, text in enumerate(log.plain_lines) if "▀" in text)
        await pilot.click(log, offset=(12, line - log.scroll_offset.y))
        viewer = await screen_shown(pilot, PictureViewer, "#viewer-picture")
        picture = viewer.query_one(PictureView)
        assert picture.virtual_size.width == 64  # one pixel a column at full size
        await pilot.press("s")
        dialog = await screen_shown(pilot, SaveDialog, "#save-path")
        target = tmp_path / "saved.png"
        dialog.query_one("#save-path", Input).value = str(target)
        await pilot.press("enter")
        await wait_for(pilot, target.exists, "saved")
        assert target.read_bytes() == original


async def test_no_permission_to_download_is_said_in_place(tmp_path: Path) -> None:
    client = team()
    message = client.receive_file("alice", "#team", "secret.png", png())
    del client.files[message.file.id]  # type: ignore[union-attr]
    async with app_with(client, tmp_path / "cache").run_test(size=SIZE) as pilot:
        log = await team_log(pilot)
        await wait_for(pilot, lambda: "you may not download secret.png" in notices(log), "said")


# --- sending -------------------------------------------------------------------------------------


async def test_image_command_sends_with_progress(tmp_path: Path) -> None:
    client = team()
    picture = tmp_path / "mine.png"
    picture.write_bytes(png())
    async with app_with(client, tmp_path / "cache").run_test(size=SIZE) as pilot:
        log = await team_log(pilot)
        await type_line(pilot, f"/image {picture}")
        await wait_for(pilot, lambda: client.calls_to("send_message"), "sent")
        (call,) = client.calls_to("send_message")
        assert call[:3] == ("send_message", "#team", "")
        assert client.progress[-1] == (picture.stat().st_size, picture.stat().st_size)
        await wait_for(pilot, lambda: log.picture_sizes, "our own picture, shown")
        assert client.calls_to("download_to") == []  # the cache kept the copy we sent


async def test_picker_from_ctrl_u(tmp_path: Path) -> None:
    client = team()
    data = tmp_path / "notes.txt"
    data.write_text("some notes\n")
    async with app_with(client, tmp_path / "cache").run_test(size=SIZE) as pilot:
        await team_log(pilot)
        await pilot.press("ctrl+u")
        picker = await screen_shown(pilot, FilePicker, "#picker-path")
        picker.query_one("#picker-path", Input).value = str(data)
        await pilot.press("enter")
        await wait_for(pilot, lambda: client.calls_to("send_message"), "sent")
        assert client.calls_to("upload_file") == [("upload_file", "notes.txt", 11)]


async def test_a_pasted_path_offers_to_send_the_file(tmp_path: Path) -> None:
    client = team()
    picture = tmp_path / "dropped file.png"
    picture.write_bytes(png())
    async with app_with(client, tmp_path / "cache").run_test(size=SIZE) as pilot:
        await team_log(pilot)
        await type_line(pilot, f"'{picture}'")  # as terminals paste a dropped file
        await screen_shown(pilot, ConfirmDialog, "#confirm-yes")
        await pilot.click("#confirm-yes")
        await wait_for(pilot, lambda: client.calls_to("send_message"), "sent")
        assert client.calls_to("upload_file")[0][1] == "dropped file.png"
        # Unquoted (it starts like a /command), then Cancel: the path is back in the input
        # line, to edit or send as text.
        await wait_for(pilot, lambda: not isinstance(pilot.app.screen, ConfirmDialog), "closed")
        await type_line(pilot, str(picture))

        await screen_shown(pilot, ConfirmDialog, "#confirm-no")
        await pilot.click("#confirm-no")
        composer = pilot.app.screen.query_one("#composer", Composer)
        await wait_for(pilot, lambda: composer.value == str(picture), "the text back")
        assert composer.cursor_location == composer.document.end  # to go on typing
        assert composer.has_focus
        assert len(client.calls_to("upload_file")) == 1


async def test_a_path_pasted_into_the_multi_line_composer_offers_to_send(tmp_path: Path) -> None:
    """A bracketed paste (a file dropped on the terminal) lands in the TextArea composer as
    typed text; Enter then offers to send the file, as for a typed path."""
    client = team()
    picture = tmp_path / "dropped.png"
    picture.write_bytes(png())
    async with app_with(client, tmp_path / "cache").run_test(size=SIZE) as pilot:
        await team_log(pilot)
        composer = pilot.app.screen.query_one("#composer", Composer)
        composer.focus()
        pilot.app.post_message(events.Paste(f"{picture} "))  # some terminals add a space
        await wait_for(pilot, lambda: composer.text.strip() == str(picture), "pasted")
        await pilot.press("enter")
        await screen_shown(pilot, ConfirmDialog, "#confirm-yes")
        await pilot.click("#confirm-yes")
        await wait_for(pilot, lambda: client.calls_to("send_message"), "sent")
        assert client.calls_to("upload_file")[0][1] == "dropped.png"


async def test_too_large_is_said_before_any_byte_goes_out(tmp_path: Path) -> None:
    client = team()
    client.welcome = client.welcome.model_copy(
        update={"limits": LIMITS.model_copy(update={"max_upload": 1000})}
    )
    big = tmp_path / "big.png"
    big.write_bytes(png(300, 300) + b"\0" * 2000)
    async with app_with(client, tmp_path / "cache").run_test(size=SIZE) as pilot:
        log = await team_log(pilot)
        await type_line(pilot, f"/image {big}")
        await wait_for(pilot, lambda: "too large" in notices(log), "said in the pane")
        assert "1000 B" in notices(log)
        assert client.calls_to("upload_file") == []


async def test_not_a_file_and_not_an_image_are_said(tmp_path: Path) -> None:
    client = team()
    for n in range(40):  # enough to scroll: the notices must stay in view
        client.make_message("alice", "#team", f"line {n}")
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    async with app_with(client, tmp_path / "cache").run_test(size=SIZE) as pilot:
        log = await team_log(pilot)
        await type_line(pilot, f"/image {tmp_path / 'nothing.png'}")
        await wait_for(pilot, lambda: "no such file" in notices(log), "missing file")
        await type_line(pilot, f"/file {tmp_path}")
        await wait_for(pilot, lambda: "is a folder" in notices(log), "a folder")
        client.upload_gate = protocol_event()
        await type_line(pilot, f"/image {fake}")
        bar = pilot.app.screen.query_one(UploadBar)
        await wait_for(pilot, lambda: bar.active and client.progress, "uploading")
        await pilot.pause(0.1)
        client.upload_gate.set()
        await wait_for(pilot, lambda: "not a valid image" in notices(log), "not an image")
        assert client.calls_to("send_message") == []
        # The upload bar came and went (the log shrank and grew): still following the newest.
        await pilot.pause(0.1)
        assert log.scroll_offset.y == log.max_scroll_y > 0


async def test_cancel_stops_the_upload(tmp_path: Path) -> None:
    client = team()
    client.upload_gate = protocol_event()
    picture = tmp_path / "slow.png"
    picture.write_bytes(png())
    async with app_with(client, tmp_path / "cache").run_test(size=SIZE) as pilot:
        log = await team_log(pilot)
        await type_line(pilot, f"/image {picture}")
        bar = pilot.app.screen.query_one(UploadBar)
        await wait_for(pilot, lambda: bar.active and client.progress, "uploading")
        assert "slow.png" in str(bar.query_one("#upload-label").render())
        await pilot.click("#upload-cancel")
        await wait_for(pilot, lambda: "cancelled" in notices(log), "said in the pane")
        assert not bar.active
        assert client.calls_to("send_message") == []


async def test_alt_c_cancels_the_upload_and_the_footer_says_so(tmp_path: Path) -> None:
    client = team()
    client.upload_gate = protocol_event()
    picture = tmp_path / "slow.png"
    picture.write_bytes(png())
    async with app_with(client, tmp_path / "cache").run_test(size=SIZE) as pilot:
        log = await team_log(pilot)

        def footer() -> set[str]:
            return {b.binding.description for b in pilot.app.active_bindings.values() if b.enabled}

        assert "Cancel upload" not in footer()
        await type_line(pilot, f"/image {picture}")
        bar = pilot.app.screen.query_one(UploadBar)
        await wait_for(pilot, lambda: bar.active and client.progress, "uploading")
        assert "alt+c" in str(bar.query_one("#upload-cancel", Button).label)
        assert "Cancel upload" in footer()
        await pilot.press("alt+c")  # the input box has the focus: the key still cancels
        await wait_for(pilot, lambda: "cancelled" in notices(log), "said in the pane")
        assert not bar.active
        assert "Cancel upload" not in footer()
        assert client.calls_to("send_message") == []


def protocol_event() -> Any:
    import asyncio

    return asyncio.Event()


def test_commands_parse() -> None:
    from tlschat.tui import commands

    assert commands.parse("/image") == commands.Image(None)
    assert commands.parse("/image ~/a b.png") == commands.Image("~/a b.png")
    assert commands.parse("/file") == commands.SendFile(None)
    assert commands.parse("/file x.pdf") == commands.SendFile("x.pdf")
    assert isinstance(protocol.FileMeta, type)


async def test_kitty_graphics_inline(tmp_path: Path, monkeypatch: Any) -> None:
    """With the Kitty protocol, the picture is sent once and drawn as placeholder cells."""
    import base64
    import re

    sent: list[str] = []
    monkeypatch.setattr(MessageLog, "_send_to_terminal", lambda self, data: sent.append(data))
    client = team()
    message = client.receive_file("alice", "#team", "wide.png", png(200, 100))
    kitty = Terminal("tgp", cell_width=10, cell_height=20)
    app = make_app(client, file_cache=FileCache(tmp_path / "cache"), image_terminal=kitty)
    async with app.run_test(size=SIZE) as pilot:
        log = await team_log(pilot)
        await wait_for(pilot, lambda: log.picture_sizes, "the picture")
        columns, rows = log.picture_sizes[message.file.id]  # type: ignore[union-attr]
        assert (columns, rows) == (20, 5)  # its real size: 200×100 px in 10×20 px cells
        (escape,) = sent
        placement = re.search(r"\x1b_Ga=p,i=(\d+),c=(\d+),r=(\d+),U=1", escape)
        assert placement is not None
        assert (int(placement[2]), int(placement[3])) == (columns, rows)
        payload = "".join(re.findall(r"\x1b_Gi=\d+,m=\d,f=100,q=2;([^\x1b]*)", escape))
        with Image.open(io.BytesIO(base64.b64decode(payload))) as shown:
            assert shown.size == (200, 100)
        cells = [line for line in log.plain_lines if "\U0010eeee" in line]
        assert len(cells) == rows
        assert all(line.strip().count("\U0010eeee") == columns for line in cells)


async def test_full_size_uses_sixel_where_the_terminal_has_it(tmp_path: Path) -> None:
    from textual_image.widget import SixelImage

    client = team()
    client.receive_file("alice", "#team", "shapes.png", png(120, 80))
    sixel = Terminal("sixel", cell_width=10, cell_height=20)
    app = make_app(client, file_cache=FileCache(tmp_path / "cache"), image_terminal=sixel)
    async with app.run_test(size=SIZE) as pilot:
        log = await team_log(pilot)
        await wait_for(pilot, lambda: log.picture_sizes, "inline, in Sixel bands")
        assert list(log.picture_sizes.values()) == [(12, 4)]  # real pixels: 120×80
        bands = [line for line in log.plain_lines if "\x1bP0;1;0q" in line]
        assert len(bands) == 4  # one a line, each drawing its band
        await pilot.press("f4")
        viewer = await screen_shown(pilot, PictureViewer, "#viewer-picture")
        picture = viewer.query_one("#viewer-picture")
        assert isinstance(picture, SixelImage)
        await pilot.pause()
        assert (picture.size.width, picture.size.height) == (12, 4)  # real pixels: 120×80


async def test_an_interrupted_upload_is_said(tmp_path: Path) -> None:
    client = team()
    client.fail["upload_file"] = protocol.ConnectionClosed("connection lost")
    picture = tmp_path / "p.png"
    picture.write_bytes(png())
    async with app_with(client, tmp_path / "cache").run_test(size=SIZE) as pilot:
        log = await team_log(pilot)
        await type_line(pilot, f"/image {picture}")
        await wait_for(pilot, lambda: "interrupted" in notices(log), "said")
        assert "the connection was lost" in notices(log)
        assert "try again" in notices(log)
        # And it works again afterwards (after a reconnect, say).
        del client.fail["upload_file"]
        await type_line(pilot, f"/image {picture}")
        await wait_for(pilot, lambda: client.calls_to("send_message"), "sent this time")
