"""One conversation's messages: a single line-API widget that wraps, scrolls and loads older history."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import ClassVar

from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tlschat.protocol import FileMeta
from tlschat.protocol import Message as ChatMessage

_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Control characters (other than newline and tab) never reach the terminal, whatever a peer sends."""


def local_time(ts: str, tz: tzinfo | None = None) -> str:
    """`HH:MM` of a protocol timestamp (UTC, ISO 8601) in `tz`, or the local zone when None."""
    try:
        moment = datetime.fromisoformat(ts)
    except ValueError:
        return "--:--"
    return moment.astimezone(tz).strftime("%H:%M")


def describe_file(meta: FileMeta) -> str:
    """One line for an attachment; the image widget (a later issue) replaces it for images."""
    size = f"{meta.size / 1024:.0f} KiB" if meta.size >= 1024 else f"{meta.size} B"
    dims = f", {meta.width}×{meta.height}" if meta.width and meta.height else ""
    return f"[file: {meta.name} ({meta.mime}, {size}{dims})]"


@dataclass(eq=False)
class Entry:
    """One row of the log: a message (`id` set) or a notice from the client (`id` None)."""

    id: int | None
    time: str
    text: str
    nick: str = ""
    own: bool = False
    notice: bool = False
    attachment: str = ""
    """A line describing the message's file, shown under its text."""
    edited: bool = False
    """Shown with "(edited)" after its text (PROTOCOL.md "Edit and delete")."""
    deleted: bool = False
    """Shown as "message deleted" in its place."""
    strips: list[Strip] = field(default_factory=list)
    """Rendered lines at the log's current width (empty: not rendered yet)."""


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
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "scroll_up", "Scroll up", show=False),
        Binding("down", "scroll_down", "Scroll down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "scroll_home", "Oldest", show=False),
        Binding("end", "scroll_end", "Newest", show=False),
    ]

    class OlderWanted(Message):
        """The user reached the top and the server has older messages: fetch them."""

        def __init__(self, log: MessageLog, before: int | None) -> None:
            super().__init__()
            self.log = log
            self.before = before
            """Fetch messages older than this id (None: the newest)."""

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
        added = 0
        for message in fresh:
            self._ids.add(message.id)
            if message.edit_of is not None or message.delete_of is not None:
                self._apply_change(message)
                continue
            self._insert(self._entry_for(message))
            added += 1
        self._relayout(view)
        return added

    def _apply_change(self, change: ChatMessage) -> None:
        target = change.edit_of if change.edit_of is not None else change.delete_of
        entry = next((e for e in self._entries if e.id == target and not e.notice), None)
        if entry is None or entry.deleted:
            return  # not loaded here (older history brings it as it stands now)
        if change.delete_of is not None:
            entry.deleted, entry.text, entry.attachment = True, "", ""
        else:
            entry.edited, entry.text = True, _UNPRINTABLE.sub("\ufffd", change.text)
        entry.strips = []

    def scroll_to_message(self, msg_id: int) -> bool:
        """Put message `msg_id` at the top of the view; False if it is not loaded here."""
        index = next((i for i, e in enumerate(self._entries) if e.id == msg_id), None)
        if index is None:
            return False
        if index < len(self._starts):
            self.scroll_to(y=self._starts[index], animate=False, force=True)
        return True

    def last_own_message(self) -> tuple[int, str] | None:
        """(id, text) of our newest message shown that is not deleted (up arrow edits it)."""
        for entry in reversed(self._entries):
            if entry.id and entry.own and not entry.deleted and not entry.notice:
                return entry.id, entry.text
        return None

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

    # --- building and rendering ----------------------------------------------------------------

    def _entry_for(self, message: ChatMessage) -> Entry:
        text = _UNPRINTABLE.sub("\ufffd", message.text)
        # Where the image widget goes later: for now, one descriptive line.
        attachment = describe_file(message.file) if message.file is not None else ""
        own = message.from_.casefold() == self.me.casefold()
        return Entry(
            message.id,
            local_time(message.ts, self.tz),
            "" if message.deleted else text,
            nick=message.from_,
            own=own,
            attachment="" if message.deleted else attachment,
            edited=message.edited is not None,
            deleted=bool(message.deleted),
        )

    def _insert(self, entry: Entry) -> None:
        assert entry.id is not None
        if entry.id > self._max_id:  # the usual case: a new message
            self._max_id = entry.id
            self._entries.append(entry)
            return
        # Older than something shown (history): before the first message with a larger id.
        for index, other in enumerate(self._entries):
            if other.id is not None and other.id > entry.id:
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
            body.append(entry.nick, style=self._style(component))
            body.append(": ")
            if entry.deleted:
                body.append("message deleted", style=self._style("message-log--notice"))
            else:
                body.append(entry.text)  # literally: Text.append never parses markup
                if entry.attachment:
                    body.append(("\n" if entry.text else "") + entry.attachment)
                if entry.edited:
                    body.append(" (edited)", style=self._style("message-log--notice"))
        grid.add_row(time, mark, body)
        options = console.options.update(width=width, min_width=width, max_width=width, height=None)
        lines = console.render_lines(grid, options, pad=True)
        return [Strip(line, width) for line in lines]

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
                    self.scroll_to(y=starts[index] + offset, animate=False, force=True)
        finally:
            self._relayouting = False
        self.refresh()

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
        return self._lines[index].crop_extend(scroll_x, scroll_x + width, style).apply_style(style)

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
        self._relayout()
        self.call_after_refresh(self._check_top)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if round(new_value) <= 0 and not self._relayouting:
            self._check_top()

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
