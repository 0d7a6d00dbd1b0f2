"""One conversation's messages: a single line-API widget that wraps, scrolls and loads older history."""

from __future__ import annotations

import asyncio
import logging
import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual import events, work
from textual.binding import Binding, BindingType
from textual.geometry import Offset, Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tlschat.client.attachments import human_size
from tlschat.protocol import FileMeta
from tlschat.protocol import Message as ChatMessage
from tlschat.tui import images
from tlschat.tui.state import mention_pattern
from tlschat.tui.widgets import attachments

_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Control characters (other than newline and tab) never reach the terminal, whatever a peer sends."""


log = logging.getLogger(__name__)

GAP_TEXT = "⋯ newer messages are loading ⋯"
"""The gap row: messages between a jumped-to window and the newer ones shown."""

RIGHT_BUTTON = 3
"""`events.Click.button` of a right click."""

DECODES_AT_ONCE = 2
"""Pictures one log decodes at the same time; the rest wait their turn."""


def local_time(ts: str, tz: tzinfo | None = None) -> str:
    """`HH:MM` of a protocol timestamp (UTC, ISO 8601) in `tz`, or the local zone when None."""
    try:
        moment = datetime.fromisoformat(ts)
    except ValueError:
        return "--:--"
    return moment.astimezone(tz).strftime("%H:%M")


def describe_file(meta: FileMeta) -> str:
    """One line for an attachment: `red.png · 64×48 · 136 B` (a picture), or name, type, size."""
    if attachments.wants_picture(meta):
        return f"{meta.name} · {meta.width}×{meta.height} · {human_size(meta.size)}"
    return f"{meta.name} · {meta.mime} · {human_size(meta.size)}"


@dataclass(eq=False)
class Entry:
    """One row of the log: a message (`id` set) or a notice from the client (`id` None)."""

    id: int | None
    time: str
    text: str
    nick: str = ""
    own: bool = False
    notice: bool = False
    strips: list[Strip] = field(default_factory=list)
    """Rendered lines at the log's current width (empty: not rendered yet)."""
    file: FileMeta | None = None
    """The message's file: a picture or a card below the text."""
    file_line: int = -1
    """Index in `strips` of the file's first line (-1: none)."""
    raw: str = ""
    """The message's own text (without the picture's line): what editing it starts from."""
    edited: bool = False
    """Shown with "(edited)" after its text (PROTOCOL.md "Edit and delete")."""
    deleted: bool = False
    """Shown as "message deleted" in its place."""
    gap: bool = False
    """The row that stands for messages not loaded yet between two loaded parts (after a jump
    to an old message); they load when it comes into view."""

    @property
    def is_message(self) -> bool:
        """A message of the conversation (not a notice, the start line or the gap row)."""
        return bool(self.id) and not self.notice


class MessageLog(ScrollView, can_focus=True):
    """A conversation's messages, oldest first, rendered as wrapped lines without a widget per message.

    Text is rendered literally (a rich `Text`, never markup). The view follows new messages only
    while it is scrolled to the bottom. Reaching the top posts `OlderWanted` while the server
    has `more`; answer with `add_older()` (or `older_failed()`).
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "message-log--time",
        "message-log--nick",
        "message-log--own",
        "message-log--mark",
        "message-log--notice",
        "message-log--file",
        "message-log--button",
        "message-log--mention",
        "message-log--action",
        "message-log--unread",
        "message-log--selected",
    }

    DEFAULT_CSS = """
    MessageLog {
        background: $surface;
        overflow-x: hidden;
        overflow-y: scroll;
        scrollbar-size-vertical: 1;
    }
    MessageLog > .message-log--time { color: $text-muted; }
    MessageLog > .message-log--nick { color: $text-secondary; text-style: bold; }
    MessageLog > .message-log--own { color: $text-accent; text-style: bold; }
    MessageLog > .message-log--mark { color: $text-accent; text-style: bold; }
    MessageLog > .message-log--notice { color: $text-muted; text-style: italic; }
    MessageLog > .message-log--file { color: $text-muted; background: $boost; }
    MessageLog > .message-log--button { color: $text; background: $primary-muted; text-style: bold; }
    MessageLog > .message-log--mention { color: $text-warning; background: $warning-muted; text-style: bold; }
    MessageLog > .message-log--action { text-style: italic; }
    MessageLog > .message-log--unread { color: $text-warning; text-style: bold; }
    MessageLog > .message-log--selected { background: $accent-muted; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        # While a message is selected (see `check_action`); otherwise the keys scroll.
        Binding("up,k", "select_step(-1)", "Previous", show=False),
        Binding("down,j", "select_step(1)", "Next", show=False),
        Binding("e", "choose('edit')", "Edit"),
        Binding("d,delete", "choose('delete')", "Delete"),
        # shift+f10 is the usual key for a context menu where there is no menu key.
        Binding("m,shift+f10", "choose('menu')", "Menu"),
        Binding("escape", "unselect", "Done"),
        Binding("up", "scroll_up", "Scroll up", show=False),
        Binding("down", "scroll_down", "Scroll down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "scroll_home", "Oldest", show=False),
        Binding("end", "scroll_end", "Newest", show=False),
        Binding("enter", "open_file", "Open file", show=False),
        Binding("s", "save_file", "Save file", show=False),
    ]

    class OlderWanted(Message):
        """The user reached the top and the server has older messages: fetch them, and answer
        with `add_older()`. With `gap`, the gap row came into view: answer with `fill_gap()`."""

        def __init__(self, log: MessageLog, before: int | None, *, gap: bool = False) -> None:
            super().__init__()
            self.log = log
            self.before = before
            """Fetch messages older than this id (None: the newest)."""
            self.gap = gap

        @property
        def control(self) -> MessageLog:
            return self.log

    class FileWanted(Message):
        """A picture came near the view: fetch its bytes, then call `file_ready()` (or
        `file_failed()`)."""

        def __init__(self, log: MessageLog, meta: FileMeta) -> None:
            super().__init__()
            self.log = log
            self.meta = meta

        @property
        def control(self) -> MessageLog:
            return self.log

    class FileChosen(Message):
        """The user asked to `open` a picture full size, or to `save` a file."""

        def __init__(self, log: MessageLog, meta: FileMeta, action: str) -> None:
            super().__init__()
            self.log = log
            self.meta = meta
            self.action = action

        @property
        def control(self) -> MessageLog:
            return self.log

    class Chosen(Message):
        """The user asked to `edit`, `delete` or open the `menu` of the selected message."""

        def __init__(
            self, log: MessageLog, entry: Entry, action: str, at: Offset | None = None
        ) -> None:
            super().__init__()
            self.log = log
            self.entry = entry
            self.action = action
            self.at = at
            """Where on the screen the menu was asked for (a right click), else None."""

        @property
        def control(self) -> MessageLog:
            return self.log

    class Unselected(Message):
        """The user left the selection (Escape): back to the input box."""

        def __init__(self, log: MessageLog) -> None:
            super().__init__()
            self.log = log

        @property
        def control(self) -> MessageLog:
            return self.log

    class UnseenChanged(Message):
        """How many messages arrived below the view while the user was scrolled up (0: none)."""

        def __init__(self, log: MessageLog, count: int) -> None:
            super().__init__()
            self.log = log
            self.count = count

        @property
        def control(self) -> MessageLog:
            return self.log

    def __init__(
        self,
        address: str,
        *,
        me: str = "",
        tz: tzinfo | None = None,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.address = address
        """The conversation shown: `@nick` or `#room`."""
        self.me = me
        """Our nick: messages from it are marked as our own."""
        self.tz = tz
        """Zone of the timestamps; None is the local zone."""
        self.more = True
        """The server may have older messages than the oldest shown."""
        self.fetching_older = False
        """An `OlderWanted` is being answered. (Not Textual's `loading`, which mounts a spinner and
        needs a screen: history may arrive before this widget is mounted.)"""
        self._entries: list[Entry] = []
        self._ids: set[int] = set()
        self._max_id = 0
        self._lines: list[Strip] = []
        self._starts: list[int] = []
        """Index of each entry's first line in `_lines`."""
        self._width = 0
        self._rendered_styles: tuple[Style, ...] = ()
        self._relayouting = False
        """Scroll changes made by `_relayout` itself are not the user reaching the top."""
        self._following = True
        """The view was at the bottom when last scrolled: a resize (the upload bar showing,
        say) keeps it there."""
        self._decode_slots: asyncio.Semaphore | None = None
        """At most DECODES_AT_ONCE pictures decoded at once (worker threads share 2 cores)."""
        self._files: dict[str, attachments.FileState] = {}
        """Files shown, by id: whether their bytes are here, and their decoded pictures."""
        self.unseen = 0
        """Messages of others that arrived below the view while scrolled up."""
        self.unread_after: int | None = None
        """The read marker the pane started with: a line goes above the first message of
        others newer than it ("where unread messages start"). None: no line."""
        self._divider_id: int | None = None
        """The id of the message the line is drawn above (at the last layout)."""
        self.selected: int | None = None
        """The message the selection cursor is on (None: no selection)."""
        self.gap: tuple[int, int] | None = None
        """Ids `[low, high)` not loaded between two loaded parts (after `add_window`)."""
        self.filling_gap = False
        """An `OlderWanted` with `gap` is being answered."""
        self._reveal_pending = False
        """The selection is to be scrolled into view once the log has a size."""
        self._centre_selected = False

    # --- public API ----------------------------------------------------------------------------

    @property
    def message_ids(self) -> list[int]:
        """Ids of the messages shown, oldest first (for tests and for `before`)."""
        return [e.id for e in self._entries if e.id]

    @property
    def oldest_id(self) -> int | None:
        ids = self.message_ids
        return ids[0] if ids else None

    @property
    def plain_lines(self) -> list[str]:
        """The rendered lines as plain text (what a reader sees; used by tests)."""
        return [strip.text.rstrip() for strip in self._lines]

    def add_messages(self, messages: Iterable[ChatMessage]) -> int:
        """Show messages in id order, skipping ids already shown; return how many were new.

        An edit or delete entry (`edit_of`, `delete_of`) changes the message it names, where it
        is shown, and is not counted: it is no new message."""
        fresh = sorted((m for m in messages if m.id not in self._ids), key=lambda m: m.id)
        if not fresh:
            return 0
        view = self._view()
        newest = self._max_id
        added: list[ChatMessage] = []
        for message in fresh:
            self._ids.add(message.id)
            if message.edit_of is not None or message.delete_of is not None:
                self._apply_change(message)
                continue
            self._insert(self._entry_for(message))
            added.append(message)
        self._relayout(view)
        at_bottom = view[0]
        below = [m for m in added if m.id > newest and m.from_.casefold() != self.me.casefold()]
        if below and not at_bottom and self._lines and self.max_scroll_y > 0:
            self._set_unseen(self.unseen + len(below))
        return len(added)

    def _apply_change(self, change: ChatMessage) -> None:
        """An edit or delete entry: change the message it names where it is shown."""
        target = change.edit_of if change.edit_of is not None else change.delete_of
        entry = next((e for e in self._entries if e.id == target and not e.notice), None)
        if entry is None or entry.deleted:
            return  # not loaded here (older history brings it as it stands now)
        if change.delete_of is not None:
            entry.deleted, entry.text, entry.raw = True, "", ""
            entry.file, entry.file_line = None, -1
        else:
            entry.edited = True
            entry.raw = _UNPRINTABLE.sub("\ufffd", change.text)
            entry.text = self._shown_text(entry.raw, entry.file)
        entry.strips = []

    def scroll_to_message(self, msg_id: int) -> bool:
        """Put message `msg_id` at the top of the view; False if it is not loaded here."""
        index = next((i for i, e in enumerate(self._entries) if e.id == msg_id), None)
        if index is None:
            return False
        if index < len(self._starts):
            self.scroll_to(y=self._starts[index], animate=False, force=True)
        return True

    # --- selection -------------------------------------------------------------------------------

    @property
    def selected_entry(self) -> Entry | None:
        return next((e for e in self._entries if e.id == self.selected), None)

    def select(self, msg_id: int | None, *, centre: bool = False) -> bool:
        """Put the selection on message `msg_id` and bring it into view (None: no selection);
        False if that message is not loaded here. `centre`: a third down the view, with what
        was said before it above (a jump to it), rather than scrolling as little as possible."""
        if msg_id is not None:
            entry = next((e for e in self._entries if e.id == msg_id and e.is_message), None)
            if entry is None:
                return False
        if msg_id != self.selected:
            self.selected = msg_id
            self.refresh()
            self.refresh_bindings()  # the footer shows Edit, Delete... only while selecting
        if msg_id is not None:
            self._centre_selected = centre
            self._show_selected()
        return True

    def select_newest(self) -> bool:
        """Start selecting at the newest message (False: there is none)."""
        newest = next((e for e in reversed(self._entries) if e.is_message), None)
        return newest is not None and self.select(newest.id)

    def _show_selected(self) -> None:
        """Scroll just enough that the whole selected message is in view (its top if it is
        taller than the view)."""
        index = next((i for i, e in enumerate(self._entries) if e.id == self.selected), None)
        self._reveal_pending = index is not None and index >= len(self._starts)
        if index is None or self._reveal_pending:
            return  # not laid out yet (a pane just opened): `_relayout` comes back here
        top = self._starts[index]
        bottom = top + len(self._entries[index].strips)
        height = max(1, self.scrollable_content_region.height)
        y = self.scroll_offset.y
        if self._centre_selected:
            y = max(0, top - height // 3)
        elif top < y or bottom - top > height:
            y = top
        elif bottom > y + height:
            y = bottom - height
        self.scroll_to(y=y, animate=False, force=True)
        if y <= 0:
            self._check_top()

    def action_select_step(self, step: int) -> None:
        """Move the selection to the previous (-1) or next (1) message."""
        messages = [e for e in self._entries if e.is_message]
        index = next((i for i, e in enumerate(messages) if e.id == self.selected), None)
        if index is None:
            self.select_newest()
            return
        target = min(max(0, index + step), len(messages) - 1)
        self.select(messages[target].id)
        if step < 0 and target == 0:
            self.scroll_to(
                y=0, animate=False, force=True, immediate=True
            )  # older history loads at the top
            self._check_top()

    def action_choose(self, action: str, at: Offset | None = None) -> None:
        entry = self.selected_entry
        if entry is not None:
            self.post_message(self.Chosen(self, entry, action, at))

    def action_unselect(self) -> None:
        self.select(None)
        self.post_message(self.Unselected(self))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("select_step", "choose", "unselect"):
            return self.selected is not None  # otherwise up and down scroll, Esc goes on
        return True

    def on_blur(self, event: events.Blur) -> None:
        # Focus moved elsewhere on this screen (a click in the input box, say): the selection
        # ends. Not when a dialog opens over it (a menu, a question about this very message).
        if self.is_mounted and self.app.screen is self.screen:
            self.select(None)

    # --- a window of older history, and the gap it leaves ---------------------------------------

    def add_window(self, messages: Iterable[ChatMessage], more: bool, before: int) -> None:
        """The answer to `history` with `before` (at most the oldest id shown): messages around
        one the user jumped to. Whatever lies between `before` and what was shown becomes a
        gap row, filled (from its newer end) when it comes into view."""
        oldest = self.oldest_id
        if oldest is not None and before < oldest and self.gap is None:
            self.gap = (before, oldest)
            index = next(i for i, e in enumerate(self._entries) if e.id == oldest)
            self._entries.insert(index, Entry(None, "", GAP_TEXT, notice=True, gap=True))
        self.add_older(messages, more)

    def fill_gap(self, messages: Iterable[ChatMessage], more: bool) -> None:
        """The answer to `OlderWanted` with `gap`: the newest messages below the gap's upper end."""
        page = list(messages)
        self.filling_gap = False
        if self.gap is None:
            return
        low, _ = self.gap
        closed = not page or not more or min(m.id for m in page) < low
        self.gap = None if closed else (low, min(m.id for m in page))
        if closed:
            self._entries = [e for e in self._entries if not e.gap]
        self.add_messages(page)
        self._relayout()
        self.call_after_refresh(self._check_gap)

    def gap_failed(self) -> None:
        """Filling the gap failed; it is tried again when the gap row comes into view again."""
        self.filling_gap = False

    def _check_gap(self) -> None:
        if self.gap is None or self.filling_gap or not self.is_mounted or not self._starts:
            return
        index = next((i for i, e in enumerate(self._entries) if e.gap), None)
        if index is None or index >= len(self._starts):
            return
        height = self.size.height
        line = self._starts[index]
        if self.scroll_offset.y - height <= line <= self.scroll_offset.y + 2 * height:
            self.filling_gap = True
            self.post_message(self.OlderWanted(self, self.gap[1], gap=True))

    def last_own_message(self) -> tuple[int, str] | None:
        """(id, text) of our newest message shown that is not deleted (up arrow edits it)."""
        for entry in reversed(self._entries):
            if entry.id and entry.own and not entry.deleted and not entry.notice:
                return entry.id, entry.raw
        return None

    def set_unread_after(self, marker: int | None) -> None:
        """Draw the unread line above the first message of others newer than `marker`."""
        if marker != self.unread_after:
            self.unread_after = marker
            self._relayout()

    @property
    def divider_id(self) -> int | None:
        """The message the unread line is above, if one is drawn."""
        return self._divider_id

    @property
    def newest_id(self) -> int:
        """The newest message shown (0: none)."""
        return self._max_id

    def count_after(self, marker: int) -> int:
        """Messages of others shown that are newer than `marker`."""
        return sum(
            1 for e in self._entries if e.id and e.id > marker and not e.own and not e.notice
        )

    def _first_unread(self) -> int | None:
        marker = self.unread_after
        if marker is None:
            return None
        for entry in self._entries:
            if entry.id and entry.id > marker and not entry.own and not entry.notice:
                return entry.id
        return None

    def _set_unseen(self, count: int) -> None:
        if count != self.unseen:
            self.unseen = count
            self.post_message(self.UnseenChanged(self, count))

    def add_notice(self, text: str, ts: str | None = None) -> None:
        """A line from the client itself (joins, declines, errors), after everything shown."""
        time = local_time(ts, self.tz) if ts else ""
        view = self._view()
        self._entries.append(Entry(None, time, _UNPRINTABLE.sub("\ufffd", text), notice=True))
        self._relayout(view)

    def add_older(self, messages: Iterable[ChatMessage], more: bool) -> int:
        """The answer to `OlderWanted`: show the messages, remember whether there are more."""
        self.more = more
        added = self.add_messages(messages)
        if not more and not any(e.id == 0 for e in self._entries):
            view = self._view()
            self._entries.insert(0, Entry(0, "", "start of the conversation", notice=True))
            self._relayout(view)
        self.fetching_older = False
        # A short page may not fill the view (nothing to scroll): keep fetching.
        self.call_after_refresh(self._check_top)
        return added

    def older_failed(self) -> None:
        """`OlderWanted` could not be answered; scrolling to the top again retries."""
        self.fetching_older = False

    def set_me(self, nick: str) -> None:
        if nick != self.me:
            self.me = nick
            for entry in self._entries:
                entry.strips = []
            self._relayout()

    # --- files ---------------------------------------------------------------------------------

    def file_state(self, file_id: str) -> attachments.FileState:
        return self._files.setdefault(file_id, attachments.FileState())

    def file_ready(self, meta: FileMeta, path: Path) -> None:
        """The answer to `FileWanted`: the verified bytes of `meta` are at `path`."""
        state = self.file_state(meta.id)
        state.status, state.path, state.error = "ready", path, ""
        self._file_changed(meta.id)

    def file_failed(self, meta: FileMeta, error: str) -> None:
        """`FileWanted` could not be answered: say why where the picture would be."""
        state = self.file_state(meta.id)
        state.status, state.error = "failed", error
        self._file_changed(meta.id)

    @property
    def picture_sizes(self) -> dict[str, tuple[int, int]]:
        """File id -> (columns, rows) of each picture shown decoded (for tests)."""
        return {file_id: size for file_id, state in self._files.items() for size in state.pictures}

    def _file_changed(self, file_id: str) -> None:
        for entry in self._entries:
            if entry.file is not None and entry.file.id == file_id:
                entry.strips = []
        self._relayout()

    @property
    def _terminal(self) -> images.Terminal:
        terminal = getattr(self.app, "image_terminal", None)
        return terminal if isinstance(terminal, images.Terminal) else images.Terminal()

    def _file_strips(self, meta: FileMeta, width: int) -> list[Strip]:
        """The picture (or its placeholder) or the card of `meta`, in the text column."""
        inner = max(1, width - attachments.INDENT)
        base = self._style("message-log--file")
        state = self.file_state(meta.id)
        if not attachments.wants_picture(meta):
            button = self._style("message-log--button")
            strips = attachments.card(meta, inner, base, button, state.error)
            return attachments.indent(strips, width, self.rich_style)
        if images.inline_renderer(self._terminal) == "sixel":
            # A cell after the picture on every line: the band's control code comes after its
            # cells, and a line cut at the picture's end would lose it.
            inner = max(1, inner - 1)
        size = attachments.picture_box(meta, inner, self.app.size.height or 24, self._terminal)
        picture = state.pictures.get(size)
        if picture is None:
            if state.status == "failed":
                label = state.error
            elif state.status == "ready":
                label = "…"
                self._decode(meta, size)
            else:
                label = f"loading {meta.name}…"
            picture = attachments.placeholder(*size, label, base)
        return attachments.indent(picture, width, self.rich_style)

    def _decode(self, meta: FileMeta, size: tuple[int, int]) -> None:
        state = self.file_state(meta.id)
        if size in state.decoding or state.path is None:
            return
        state.decoding.add(size)
        self._decode_picture(meta, state.path, size)

    @work(group="decode", exit_on_error=False)
    async def _decode_picture(self, meta: FileMeta, path: Path, size: tuple[int, int]) -> None:
        state = self.file_state(meta.id)
        background = self.rich_style.bgcolor
        triplet = background.get_truecolor() if background is not None else None
        back = (triplet.red, triplet.green, triplet.blue) if triplet is not None else (0, 0, 0)
        terminal = self._terminal
        if self._decode_slots is None:
            self._decode_slots = asyncio.Semaphore(DECODES_AT_ONCE)
        try:
            async with self._decode_slots:
                strips = await self._decoded(path, size, terminal, back)
        except Exception as exc:
            log.debug("cannot decode %s: %r", meta.name, exc)
            state.status, state.error = "failed", f"cannot show {meta.name}: it does not decode"
            strips = None
        finally:
            state.decoding.discard(size)
        if strips is not None:
            state.pictures[size] = strips
        self._file_changed(meta.id)

    async def _decoded(
        self,
        path: Path,
        size: tuple[int, int],
        terminal: images.Terminal,
        back: tuple[int, int, int],
    ) -> list[Strip]:
        renderer = images.inline_renderer(terminal)
        if renderer == "kitty":
            kitty = await asyncio.to_thread(images.render_kitty, path, *size, terminal)
            self._send_to_terminal(kitty.transmit)
            return kitty.strips
        if renderer == "sixel":
            return await asyncio.to_thread(images.render_sixel, path, *size, terminal, back)
        return await asyncio.to_thread(
            images.render_cells, path, *size, mode=terminal.mode, background=back
        )

    def _send_to_terminal(self, data: str) -> None:
        """Raw escape codes (Kitty graphics), in order with Textual's own output: through the
        driver's writer, never straight to stdout from here."""
        driver = getattr(self.app, "_driver", None)  # Textual has no public handle on it
        if driver is not None and not self.app.is_headless:
            driver.write(data)

    def _want_visible_files(self) -> None:
        """Ask for the pictures within a screen of the view (lazily, never the whole history)."""
        if not self.is_mounted or not self._starts:
            return
        height = self.size.height
        top = max(0, self.scroll_offset.y - height)
        bottom = self.scroll_offset.y + 2 * height
        first = max(0, bisect_right(self._starts, top) - 1)
        for entry, start in zip(self._entries[first:], self._starts[first:], strict=False):
            if start > bottom:
                break
            meta = entry.file
            if meta is None or not attachments.wants_picture(meta):
                continue
            state = self.file_state(meta.id)
            if state.status == "new":
                state.status = "loading"
                self.post_message(self.FileWanted(self, meta))

    def _file_in_view(self) -> FileMeta | None:
        """The file of the selected message, else of the lowest message in view that has one."""
        selected = self.selected_entry
        if selected is not None:
            return selected.file
        if not self._starts:
            return None
        top, bottom = self.scroll_offset.y, self.scroll_offset.y + self.size.height
        last = bisect_right(self._starts, bottom) - 1
        for index in range(min(last, len(self._entries) - 1), -1, -1):
            entry = self._entries[index]
            if self._starts[index] + len(entry.strips) <= top:
                break
            if entry.file is not None:
                return entry.file
        return None

    def action_open_file(self) -> None:
        selected = self.selected_entry
        if selected is not None and selected.file is None:
            self.action_choose("menu")  # Enter on a selected message without a file
            return
        meta = self._file_in_view()
        if meta is not None:
            action = "open" if attachments.wants_picture(meta) else "save"
            self.post_message(self.FileChosen(self, meta, action))

    def action_save_file(self) -> None:
        meta = self._file_in_view()
        if meta is not None:
            self.post_message(self.FileChosen(self, meta, "save"))

    def on_click(self, event: events.Click) -> None:
        """A click on a file opens or saves it; on a message's text, selects the message; a
        right click selects it and asks for its menu."""
        offset = event.get_content_offset(self)
        if offset is None or not self._starts:
            return
        line = self.scroll_offset.y + offset.y
        index = bisect_right(self._starts, line) - 1
        if not 0 <= index < len(self._entries):
            return
        entry = self._entries[index]
        on_file = entry.file is not None and 0 <= entry.file_line <= line - self._starts[index]
        if entry.file is not None and on_file and event.button != RIGHT_BUTTON:
            action = "open" if attachments.wants_picture(entry.file) else "save"
            self.post_message(self.FileChosen(self, entry.file, action))
            return
        if not entry.is_message:
            return
        self.focus()
        self.select(entry.id)
        if event.button == RIGHT_BUTTON:
            self.action_choose("menu", event.screen_offset)

    # --- building and rendering ----------------------------------------------------------------

    def _entry_for(self, message: ChatMessage) -> Entry:
        raw = "" if message.deleted else _UNPRINTABLE.sub("\ufffd", message.text)
        meta = None if message.deleted else message.file
        if meta is not None:
            # The file's name is a peer's text too: never control characters on the terminal.
            meta = meta.model_copy(update={"name": _UNPRINTABLE.sub("\ufffd", meta.name)})
        own = message.from_.casefold() == self.me.casefold()
        return Entry(
            message.id,
            local_time(message.ts, self.tz),
            self._shown_text(raw, meta),
            nick=message.from_,
            own=own,
            file=meta,
            raw=raw,
            edited=message.edited is not None,
            deleted=bool(message.deleted),
        )

    @staticmethod
    def _shown_text(text: str, meta: FileMeta | None) -> str:
        """A message's text with, for a picture, its description line under it."""
        if meta is not None:
            if attachments.wants_picture(meta):
                return f"{text}\n{describe_file(meta)}" if text else describe_file(meta)
            if not text:
                return meta.name  # the card below says the rest
        return text

    def _insert(self, entry: Entry) -> None:
        assert entry.id is not None
        if entry.id > self._max_id:  # the usual case: a new message
            self._max_id = entry.id
            self._entries.append(entry)
            return
        # Older than something shown (history): before the first message with a larger id,
        # or before the gap row if it is older than the gap.
        below_gap = self.gap is not None and entry.id < self.gap[0]
        for index, other in enumerate(self._entries):
            if (other.id is not None and other.id > entry.id) or (other.gap and below_gap):
                self._entries.insert(index, entry)
                return
        self._entries.append(entry)

    def _render_entry(self, entry: Entry, width: int) -> list[Strip]:
        console = self.app.console
        grid = Table.grid(padding=(0, 1), expand=True)
        grid.add_column(width=5, no_wrap=True)
        grid.add_column(width=1, no_wrap=True)
        grid.add_column(ratio=1, overflow="fold")
        time = Text(entry.time, style=self._style("message-log--time"))
        if entry.notice:
            mark = Text("·", style=self._style("message-log--notice"))
            body = Text(
                entry.text,
                style=self._style("message-log--notice"),
                overflow="fold",
            )
        else:
            mark = Text("›" if entry.own else " ")
            mark.stylize(self._style("message-log--mark"))
            component = "message-log--own" if entry.own else "message-log--nick"
            body = Text(overflow="fold")
            text = entry.text
            if entry.deleted:
                body.append(entry.nick, style=self._style(component))
                body.append(": ")
                body.append("message deleted", style=self._style("message-log--notice"))
                text = ""
            elif text.startswith("/me "):  # an action: `* bob waves`
                body.append("* ", style=self._style("message-log--action"))
                body.append(entry.nick, style=self._style(component))
                text = text[3:]
                start = len(body)
                body.append(text, style=self._style("message-log--action"))
            else:
                body.append(entry.nick, style=self._style(component))
                body.append(": ")
                start = len(body)
                body.append(text)  # literally: Text.append never parses markup
            if not entry.own and self.me:
                mention = self._style("message-log--mention")
                for match in mention_pattern(self.me).finditer(text):
                    body.stylize(mention, start + match.start(), start + match.end())
            if entry.edited and not entry.deleted:
                body.append(" (edited)", style=self._style("message-log--notice"))
        grid.add_row(time, mark, body)
        options = console.options.update(width=width, min_width=width, max_width=width, height=None)
        lines = console.render_lines(grid, options, pad=True)
        strips = [Strip(line, width) for line in lines]
        if entry.id is not None and entry.id == self._divider_id:
            strips.insert(0, self._divider_strip(width))
        entry.file_line = -1
        if entry.file is not None and not entry.notice:
            entry.file_line = len(strips)
            strips.extend(self._file_strips(entry.file, width))
        return strips

    def _divider_strip(self, width: int) -> Strip:
        """`──── unread ────`: where the messages newer than the read marker start."""
        label = " unread "
        left = max(0, (width - len(label)) // 2)
        right = max(0, width - left - len(label))
        text = Text("─" * left + label + "─" * right, style=self._style("message-log--unread"))
        text.truncate(width)
        options = self.app.console.options.update(width=width, min_width=width, max_width=width)
        line = self.app.console.render_lines(text, options, pad=True)[0]
        return Strip(line, width)

    @property
    def text_width(self) -> int:
        """Cells for text: the widget's size less padding, border and the (always shown) scrollbar.

        Not `scrollable_content_region`, which is empty while the screen is being laid out.
        """
        return max(0, self.container_size.width - self.scrollbar_size_vertical)

    def _view(self) -> tuple[bool, tuple[Entry, int] | None]:
        """Where the reader is, taken before the entries change: at the bottom, or which line."""
        return self._at_bottom(), self._anchor()

    def _relayout(self, view: tuple[bool, tuple[Entry, int] | None] | None = None) -> None:
        """Re-render what needs it at the current width, keeping the reader's place (`view`)."""
        width = self.text_width
        if width <= 0:
            return  # not laid out yet: `on_resize` renders everything
        at_bottom, anchor = view if view is not None else self._view()
        if width != self._width:
            self._width = width
            for entry in self._entries:
                entry.strips = []
        divider = self._first_unread()
        if divider != self._divider_id:
            for entry in self._entries:
                if entry.id is not None and entry.id in (divider, self._divider_id):
                    entry.strips = []
            self._divider_id = divider
        lines: list[Strip] = []
        starts: list[int] = []
        for entry in self._entries:
            if not entry.strips:
                entry.strips = self._render_entry(entry, width)
            starts.append(len(lines))
            lines.extend(entry.strips)
        self._lines = lines
        self._starts = starts
        self._relayouting = True
        try:
            self.virtual_size = Size(width, len(lines))
            if at_bottom:
                self.scroll_to(y=self.max_scroll_y, animate=False, force=True)
            elif anchor is not None:
                entry, offset = anchor
                index = next((i for i, e in enumerate(self._entries) if e is entry), None)
                if index is not None:
                    self.scroll_to(
                        y=starts[index] + offset, animate=False, force=True, immediate=True
                    )
        finally:
            self._relayouting = False
        if self._reveal_pending:
            self._show_selected()
        self.refresh()
        self.call_after_refresh(self._want_visible_files)
        self.call_after_refresh(self._check_gap)

    def _at_bottom(self) -> bool:
        return not self._lines or self.scroll_offset.y >= self.max_scroll_y

    def _anchor(self) -> tuple[Entry, int] | None:
        """The entry at the top of the view and how far into it the view starts."""
        if not self._lines or not self._starts:
            return None
        top = self.scroll_offset.y
        index = max(0, bisect_right(self._starts, top) - 1)
        if index >= len(self._entries):
            return None
        return self._entries[index], top - self._starts[index]

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.text_width
        index = scroll_y + y
        style = self.rich_style
        if index >= len(self._lines):
            return Strip.blank(width, style)
        line = self._lines[index].crop_extend(scroll_x, scroll_x + width, style)
        if self.selected is not None and self._selected_line(index):
            # Over every cell's own colours (the time column has a background of its own).
            selected = self._style("message-log--selected")
            line = Strip(Segment.apply_style(line, post_style=selected), line.cell_length)
        return line.apply_style(style)

    def _selected_line(self, line: int) -> bool:
        """Whether `line` is a text line of the selected message (its picture keeps its
        colours)."""
        entry_index = bisect_right(self._starts, line) - 1
        if not 0 <= entry_index < len(self._entries):
            return False
        entry = self._entries[entry_index]
        if entry.id != self.selected:
            return False
        return entry.file_line < 0 or line - self._starts[entry_index] < entry.file_line

    def _style(self, component: str) -> Style:
        # A default, because a restyle (theme change) may be half-way through.
        return self.get_component_rich_style(component, default=Style.null())

    def _styles_key(self) -> tuple[Style, ...]:
        return tuple(self._style(name) for name in sorted(self.COMPONENT_CLASSES))

    def render_lines(self, crop: Region) -> list[Strip]:
        # The colours come from the theme: after a theme change, re-render before painting.
        # Only colours change, never line counts, so the scroll position stays valid.
        key = self._styles_key()
        if key != self._rendered_styles:
            self._rendered_styles = key
            if self._width > 0:
                lines: list[Strip] = []
                for entry in self._entries:
                    entry.strips = self._render_entry(entry, self._width)
                    lines.extend(entry.strips)
                self._lines = lines
        return super().render_lines(crop)

    # --- events --------------------------------------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        # The height changed under a view that followed the newest messages: keep following
        # (the new size already makes the old offset look scrolled up).
        self._relayout((self._following or self._at_bottom(), self._anchor()))
        self.call_after_refresh(self._check_top)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._following = round(new_value) >= self.max_scroll_y
        if round(new_value) <= 0 and not self._relayouting:
            self._check_top()
        if round(old_value) != round(new_value):
            self._want_visible_files()
            self._check_gap()
        if self.unseen and round(new_value) >= self.max_scroll_y:
            self._set_unseen(0)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        # Already at the top, the scroll position does not change: ask here.
        self._check_top()

    def action_scroll_up(self) -> None:
        super().action_scroll_up()
        self._check_top()

    def action_page_up(self) -> None:
        super().action_page_up()
        self._check_top()

    def action_scroll_home(self) -> None:
        super().action_scroll_home()
        self._check_top()

    def _check_top(self) -> None:
        if not self.is_mounted or self._width <= 0:
            return
        if self.more and not self.fetching_older and self.scroll_offset.y <= 0:
            self.fetching_older = True
            self.post_message(self.OlderWanted(self, self.oldest_id))
