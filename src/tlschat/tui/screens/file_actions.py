"""The main screen's part about files: send one (/image, /file, ctrl+u, a pasted path), show
pictures as they come near the view, open them full size, save them."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, cast

from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widget import Widget

from tlschat.client import attachments
from tlschat.protocol import FileMeta
from tlschat.tui import images
from tlschat.tui.screens.files import FilePicker, PictureView, PictureViewer, SaveDialog, parse_path
from tlschat.tui.widgets.message_log import MessageLog
from tlschat.tui.widgets.upload_bar import CANCEL_KEY, UploadBar

if TYPE_CHECKING:
    from tlschat.tui.app import ChatApp
    from tlschat.tui.widgets.pane import ConversationPane


class FileActions(Screen[None]):
    """Mixed into MainScreen, which provides `current_address`, `pane_for` and `add_notice`."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # Priority: wherever the focus is (the input box, the log). Shown only while sending
        # (MainScreen.check_action).
        Binding(CANCEL_KEY, "cancel_upload", "Cancel upload", priority=True),
    ]

    @property
    def chat(self) -> ChatApp:
        return cast("ChatApp", self.app)

    @property
    def upload_bar(self) -> UploadBar:
        return self.query_one("#upload-bar", UploadBar)

    # Provided by MainScreen.
    @property
    def current_address(self) -> str | None:
        raise NotImplementedError

    def pane_for(self, address: str) -> ConversationPane | None:
        raise NotImplementedError

    # --- sending -------------------------------------------------------------------------------

    def send_file(self, path_text: str | None, *, images_only: bool) -> None:
        """`/image [PATH]`, `/file [PATH]`: send PATH, or pick one first."""
        address = self.current_address
        if address is None:
            self.notify(
                "Open a conversation first: the file goes to the one shown.",
                severity="warning",
                markup=False,
            )
            return
        path = parse_path(path_text) if path_text else None
        if path is not None:
            self.chat.request_upload(address, path)
            return

        def picked(chosen: Path | None) -> None:
            if chosen is not None:
                self.chat.request_upload(address, chosen)

        what = "an image" if images_only else "a file"
        self.app.push_screen(
            FilePicker(f"Send {what} to {address}", images_only=images_only), picked
        )

    def action_pick_file(self) -> None:
        self.send_file(None, images_only=False)

    async def pasted_path(self, text: str) -> Path | None:
        """The file named by a line that is only a path (drag-and-drop pastes one), or None."""
        stripped = text.strip()
        if "\n" in stripped or not stripped.startswith(("/", "~", "file://", "'/", '"/')):
            return None
        path = parse_path(stripped)
        if path is None:
            return None
        is_file = await asyncio.to_thread(path.is_file)
        return path if is_file else None

    def action_cancel_upload(self) -> None:
        self.upload_bar.cancel()

    def on_upload_bar_cancelled(self, event: UploadBar.Cancelled) -> None:
        self.chat.cancel_upload()

    # --- showing -------------------------------------------------------------------------------

    def on_message_log_file_wanted(self, event: MessageLog.FileWanted) -> None:
        log, meta = event.log, event.meta

        async def fetch() -> None:
            try:
                path = await self.chat.fetch_file(meta)
            except Exception as exc:
                log.file_failed(meta, attachments.download_failure(exc, meta.name))
                return
            log.file_ready(meta, path)

        self.run_worker(fetch(), group="files", exit_on_error=False)

    def action_open_file_in_view(self) -> None:
        address = self.current_address
        pane = self.pane_for(address) if address is not None else None
        if pane is not None:
            pane.log_view.action_open_file()

    def on_message_log_file_chosen(self, event: MessageLog.FileChosen) -> None:
        if event.action == "open":
            self.run_worker(self._open(event.log, event.meta), group="files", exit_on_error=False)
        else:
            self.save_file(event.meta, event.log)

    async def _open(self, log: MessageLog, meta: FileMeta) -> None:
        try:
            path = await self.chat.fetch_file(meta)
            body = await picture_widget(path, meta, self.chat.image_terminal)
        except Exception as exc:
            text = attachments.download_failure(exc, meta.name)
            log.file_failed(meta, text)
            self.notify(text, severity="error", markup=False)
            return
        await self.app.push_screen(PictureViewer(meta, body, lambda m: self.save_file(m, log)))

    # --- saving --------------------------------------------------------------------------------

    def save_file(self, meta: FileMeta, log: MessageLog | None = None) -> None:
        """Ask where (downloads folder by default), then write a copy there."""
        dialog = SaveDialog(meta)

        def chosen(target: Path | None) -> None:
            if target is not None:
                self.run_worker(
                    self._save(meta, target, dialog.replace, log),
                    group="files",
                    exit_on_error=False,
                )

        self.app.push_screen(dialog, chosen)

    async def _save(
        self, meta: FileMeta, target: Path, replace: bool, log: MessageLog | None
    ) -> None:
        try:
            source = await self.chat.fetch_file(meta)
        except Exception as exc:
            text = attachments.download_failure(exc, meta.name)
            if log is not None and not attachments.is_image(meta):
                log.file_failed(meta, text)
            self.notify(text, severity="error", markup=False)
            return
        try:
            await asyncio.to_thread(attachments.copy_atomically, source, target, replace=replace)
        except FileExistsError:
            self.notify(f"Not saved: {target} exists.", severity="warning", markup=False)
            return
        except OSError as exc:
            self.notify(
                f"Not saved: {target}: {exc.strerror or exc}", severity="error", markup=False
            )
            return
        self.notify(f"Saved {meta.name} to {target}", markup=False)


async def picture_widget(path: Path, meta: FileMeta, terminal: images.Terminal) -> Widget:
    """The full-size view of a picture: decoded and scaled in a worker thread."""
    width, height = meta.width or 1, meta.height or 1
    if terminal.graphics:
        with contextlib.suppress(Exception):
            picture = await asyncio.to_thread(images.open_picture, path)
            return _graphics_widget(picture, width, height, terminal)
    columns, rows = images.full_size(width, height, terminal)
    mode = terminal.mode if terminal.mode == "unicode" else "halfcell"
    strips = await asyncio.to_thread(images.render_cells, path, columns, rows, mode=mode)
    return PictureView(strips, columns, id="viewer-picture")


def _graphics_widget(picture: object, width: int, height: int, terminal: images.Terminal) -> Widget:
    """textual-image's own widget (Sixel or the Kitty protocol), in a scrollable frame."""
    from textual.containers import ScrollableContainer
    from textual_image.widget import SixelImage, TGPImage

    PictureWidget = SixelImage if terminal.mode == "sixel" else TGPImage
    columns, rows = images.full_size(width, height, terminal)
    widget = PictureWidget(picture, id="viewer-picture")  # type: ignore[arg-type]
    widget.styles.width = columns
    widget.styles.height = rows
    frame = ScrollableContainer(widget)
    frame.can_focus = True
    return frame
