"""The main screen: status bar, sidebar, tabbed conversations, the input line and the footer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, cast

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.timer import Timer
from textual.widgets import Footer, Static, TabbedContent, Tabs

from tlschat import protocol
from tlschat.client.errors_text import Context, explain, explain_failure
from tlschat.tui import commands
from tlschat.tui.screens.dialogs import (
    ConfirmDialog,
    CreateGroupDialog,
    InvitationDialog,
    InviteDialog,
    JoinDialog,
    NewGroup,
    PromptDialog,
)
from tlschat.tui.screens.help import HelpScreen
from tlschat.tui.screens.message_actions import Goto, MessageActions
from tlschat.tui.screens.search import SearchScreen
from tlschat.tui.screens.switcher import Destination, QuickSwitcher
from tlschat.tui.state import (
    ChatState,
    Invitation,
    conversation_key,
    dm_address,
    fold,
    room_address,
)
from tlschat.tui.widgets.composer import Composer
from tlschat.tui.widgets.invitation_bar import InvitationBar
from tlschat.tui.widgets.message_log import MessageLog
from tlschat.tui.widgets.pane import ConversationPane, MemberList, pane_title
from tlschat.tui.widgets.sidebar import Sidebar
from tlschat.tui.widgets.status_bar import StatusBar
from tlschat.tui.widgets.typing_line import TypingLine, TypingSender
from tlschat.tui.widgets.upload_bar import UploadBar

if TYPE_CHECKING:
    from tlschat.tui.app import ChatApp

PLACEHOLDER = (
    "No conversation open.\n\n"
    "Pick someone or a group in the sidebar:\n"
    "ctrl+b, then Enter.\n\n"
    "Or type /msg NICK, /create ROOM,\n"
    "/join ROOM.  /help lists everything."
)


"""What a DM pane says when its guest's hold ended (`presence` with `gone`)."""

READ_DELAY = 0.3
"""Seconds the read marker waits after the pane is shown or a message arrives in view: a burst
(history, then the replay) moves it once, to the newest message."""

NARROW = 100
"""Below this many columns the sidebar and member list fold away."""


class MainScreen(MessageActions):
    """Routes what the App learns to the right pane; turns keys and commands into App requests."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+n", "new_dm", "DM"),
        Binding("ctrl+g", "new_group", "Group"),
        Binding("ctrl+t", "invite", "Invite", show=False),  # in f1 and the palette; 60 columns
        # Priority: the input box would take ctrl+f (delete the word to the right).
        Binding("ctrl+f", "search", "Search", show=False, priority=True),
        Binding("ctrl+o", "join", "Join", show=False),
        # Over the input line's own ctrl+u (delete to the start): issue 11 asks for the picker.
        Binding("ctrl+u", "pick_file", "Send file", show=False, priority=True),
        Binding("f4", "open_file_in_view", "Open picture", show=False),
        # Priority: the input box would move the cursor. Then up/down, e, d, m act on it.
        Binding("alt+up", "select_message", "Select message", show=False, priority=True),
        # Priority: the input box would take ctrl+k (delete to the end of the line).
        Binding("ctrl+k", "switcher", "Switch", priority=True),
        # ctrl+l redraws, as everywhere in a terminal (it used to leave the group).
        Binding("ctrl+l", "redraw", "Redraw", show=False, priority=True),
        Binding("alt+w", "close_pane", "Close pane", show=False, priority=True),
        Binding("f1", "help", "Help"),
        Binding("f2", "answer_invitation('accept')", "Accept"),
        Binding("f3", "answer_invitation('decline')", "Decline"),
        Binding("ctrl+b", "toggle_sidebar", "People", show=False),
        Binding("alt+m", "toggle_members", "Members", show=False, priority=True),
        Binding("escape", "focus_composer", "Input", show=False),
        *[
            Binding(f"alt+{n}", f"tab({n})", f"Tab {n}", show=False, priority=True)
            for n in range(1, 10)
        ],
        Binding(
            "alt+left,ctrl+pageup", "cycle_pane(-1)", "Previous pane", show=False, priority=True
        ),
        Binding("alt+right,ctrl+pagedown", "cycle_pane(1)", "Next pane", show=False, priority=True),
        Binding("pageup", "scroll_log('page_up')", "Older", show=False),
        Binding("pagedown", "scroll_log('page_down')", "Newer", show=False),
    ]

    def __init__(self, state: ChatState) -> None:
        super().__init__()
        self.state = state
        self._panes: dict[str, ConversationPane] = {}
        """Open panes by conversation key."""
        self._pane_ready: dict[str, asyncio.Event] = {}
        self.ready = asyncio.Event()
        """Set once mounted: everything below waits for it before touching widgets."""
        self._viewing: str | None = None
        """The key of the conversation whose tab was last shown (its unread line goes when the
        user moves to another tab)."""
        self._read_timer: Timer | None = None
        self.typing_sender = TypingSender()
        self._goto: dict[str, Goto] = {}
        # The screen keeps its widgets rather than querying for them: a message that arrives
        # while the app is closing (its widgets already pruned) must not raise NoMatches.
        self._status = StatusBar(id="status")
        self._sidebar = Sidebar(id="sidebar")
        self._placeholder = Static(Content(PLACEHOLDER), id="placeholder")
        self._tabs = TabbedContent(id="tabs")
        self._typing_line = TypingLine(id="typing-line")
        self._invitation_bar = InvitationBar(id="invitation-bar")
        self._counter = Static("", id="counter")
        self._composer = Composer(placeholder="Pick a conversation, or type /help", id="composer")

    @property
    def chat(self) -> ChatApp:
        return cast("ChatApp", self.app)

    def compose(self) -> ComposeResult:
        yield self._status
        with Horizontal(id="body"):
            yield self._sidebar
            with Vertical(id="conversation"):
                yield self._placeholder
                yield self._tabs
                yield self._typing_line
                yield self._invitation_bar
                yield UploadBar(id="upload-bar")
                yield self._counter
                yield self._composer
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.composer.cursor_blink = self.chat.cursor_blink
        self.composer.completer = self.completions
        self.composer.last_own = self._last_own_message
        self._invitation_bar.show(None)
        self._update_placeholder()
        self.refresh_sidebar()
        self.composer.focus()
        self.watch(self.app, "app_focus", self._app_focus_changed, init=False)
        self.ready.set()

    def _app_focus_changed(self, focused: bool) -> None:
        if focused:
            self.read_soon()

    def on_resize(self, event: events.Resize) -> None:
        # Below 100 columns the sidebar and the member list fold away (ctrl+b / alt+m show them
        # over the conversation), so that the messages keep the width (PRODUCT.md).
        narrow = event.size.width < NARROW
        if narrow != self.has_class("-narrow"):
            self.remove_class("-show-sidebar", "-show-members")
        self.set_class(narrow, "-narrow")
        self.call_after_refresh(self._update_composer_hint)

    # --- widgets -------------------------------------------------------------------------------

    @property
    def tabs(self) -> TabbedContent:
        return self._tabs

    @property
    def composer(self) -> Composer:
        return self._composer

    @property
    def status(self) -> StatusBar:
        return self._status

    @property
    def sidebar(self) -> Sidebar:
        return self._sidebar

    def pane_for(self, address: str) -> ConversationPane | None:
        return self._panes.get(conversation_key(address))

    @property
    def current_address(self) -> str | None:
        """The conversation of the active tab, if any."""
        active = self.tabs.active
        for pane in self._panes.values():
            if pane.id == active:
                return pane.address
        return None

    @property
    def current_room(self) -> str | None:
        address = self.current_address
        return address[1:] if address and address.startswith("#") else None

    # --- conversations -------------------------------------------------------------------------

    async def open_conversation(self, address: str, *, activate: bool = True) -> ConversationPane:
        """The pane of `@nick`/`#room`, added if it is not open yet; `activate` shows it."""
        await self.ready.wait()
        address = self._canonical(address)
        key = conversation_key(address)
        pane = self._panes.get(key)
        if pane is None:
            pane = ConversationPane(address, me=self.state.me, tz=self.chat.tz)
            ready = asyncio.Event()
            self._panes[key] = pane
            self._pane_ready[key] = ready
            if pane.member_list is not None:
                self._show_members(pane)
            await self.tabs.add_pane(pane)
            ready.set()
            self._update_placeholder()
        else:
            await self._pane_ready[key].wait()
        if activate:
            self.tabs.active = pane.id or ""
            # Now, not when TabActivated comes: what is typed meanwhile belongs to this pane.
            self.composer.switch_to(key)
            self.composer.focus()
        return pane

    async def close_conversation(self, address: str) -> None:
        key = conversation_key(address)
        pane = self._panes.pop(key, None)
        ready = self._pane_ready.pop(key, None)
        if pane is None or pane.id is None:
            return
        if ready is not None:
            await ready.wait()
        await self.tabs.remove_pane(pane.id)
        self._update_placeholder()
        self._update_composer_hint()

    def _canonical(self, address: str) -> str:
        """`@BOB` -> `@Bob` when we know how the server spells it."""
        name = address[1:]
        if address.startswith("@"):
            return dm_address(self.state.display_nick(name))
        room = self.state.rooms.get(fold(name))
        return room_address(room.name if room is not None else name)

    async def deliver(self, message: protocol.Message) -> None:
        """File a message under its conversation, opening the pane if needed; count it unread;
        alert (bell, desktop notification) on a DM or a mention that is not in view."""
        address = self.state.conversation_of(message)
        if (message.edit_of or message.delete_of) and self.pane_for(address) is None:
            return  # a change to a message not shown: it opens nothing (history has it as is)
        pane = await self.open_conversation(address, activate=False)
        self.state.saw(pane.address, message.id)
        added = pane.log_view.add_messages([message])
        self._typing_line.message_from(address, message.from_)
        if not added or self.state.is_me(message.from_):
            if added:
                self.refresh_sidebar()  # recency
            return
        in_view = self.in_view(pane.address)
        if in_view:
            self.read_soon()
        elif pane.log_view.unread_after is None:
            # Unread messages start here: the line stays until the user has seen them.
            pane.log_view.set_unread_after(
                max(self.state.read_marker(pane.address), message.id - 1)
            )
        if self.tabs.active != pane.id:
            if self.state.counts_as_unread(pane.address, message):
                self.state.mark_unread(pane.address)
            self._show_unread(pane.address)
        else:
            self.refresh_sidebar()  # recency
        direct = address.startswith("@")
        fresh = message.id > self.state.replayed_until
        if fresh and not in_view and (direct or self.state.mentions_me(message.text)):
            where = "" if direct else f" in {pane.address}"
            self.chat.alert(f"{message.from_}{where}", message.text or "(a file)")

    def in_view(self, address: str) -> bool:
        """Whether the user is looking at `address` (its tab shown, the terminal focused)."""
        pane = self.pane_for(address)
        return (
            pane is not None
            and self.tabs.active == pane.id
            and self.app.app_focus
            and self.is_current
        )

    def add_notice(self, address: str, text: str) -> None:
        pane = self.pane_for(address)
        if pane is not None:
            pane.log_view.add_notice(text, protocol.utc_timestamp())

    def history_loaded(
        self,
        address: str,
        messages: tuple[protocol.Message, ...],
        more: bool,
        failed: bool,
        *,
        before: int | None = None,
        purpose: str = "older",
    ) -> None:
        pane = self.pane_for(address)
        if pane is None:
            return
        self.route_history(pane, messages, more, failed, before=before, purpose=purpose)
        if not failed:
            if messages:
                self.state.saw(pane.address, max(m.id for m in messages))
            if self.in_view(pane.address):
                self.read_soon()

    # --- conversations that come back, read markers --------------------------------------------

    async def restore(self, unread: list[str]) -> None:
        """After `welcome`: reopen the conversations with unread messages (most recent first),
        each with its unread line at the read marker it had."""
        for address in unread:
            if self.pane_for(address) is not None:
                continue
            pane = await self.open_conversation(address, activate=False)
            pane.log_view.set_unread_after(self.state.read_marker(address))
        current = self.current_address
        if current is not None:
            self.state.clear_unread(current)
        for pane in self._panes.values():
            self._show_unread(pane.address)
        self.refresh_sidebar()
        self.read_soon()

    def read_soon(self) -> None:
        """Move the read marker of the pane in view, once things settle (debounced)."""
        if self._read_timer is not None:
            self._read_timer.stop()
        self._read_timer = self.set_timer(READ_DELAY, self._mark_current_read)

    def _mark_current_read(self) -> None:
        self._read_timer = None
        address = self.current_address
        if address is None or not self.in_view(address):
            return
        pane = self.pane_for(address)
        if pane is None:
            return
        newest = pane.log_view.newest_id
        if newest and self.state.set_read(address, newest):
            self.chat.request_mark_read(address, newest)

    def read_elsewhere(self, address: str, message_id: int) -> None:
        """Another session of ours read `address` up to `message_id`: so did we."""
        self.state.set_read(address, message_id)
        pane = self.pane_for(address)
        if message_id >= self.state.recency(address):
            self.state.clear_unread(address)
        elif pane is not None and pane.log_view.newest_id >= self.state.recency(address):
            # The pane shows the newest messages: count those still unread.
            left = min(pane.log_view.count_after(message_id), self.state.unread_for(address))
            if left:
                self.state.unread[conversation_key(address)] = left
            else:
                self.state.clear_unread(address)
        if pane is not None:
            marker = pane.log_view.unread_after
            if marker is not None and marker < message_id and not self.in_view(address):
                pane.log_view.set_unread_after(message_id)  # those were read over there
            self._show_unread(address)
        self.refresh_sidebar()

    def user_gone(self, nick: str) -> None:
        """A guest's hold ended: its DM pane says so; the lists drop it."""
        pane = self.pane_for(dm_address(nick))
        if pane is not None:
            self.add_notice(pane.address, self.state.gone_sentence(pane.address[1:]))
            self._show_unread(pane.address)
        self.presence_changed()

    def _show_unread(self, address: str) -> None:
        pane = self.pane_for(address)
        if pane is not None and pane.id is not None:
            self.tabs.get_tab(pane.id).label = pane_title(
                pane.address, self.state.unread_for(address)
            )
        self.refresh_sidebar()

    def _update_placeholder(self) -> None:
        empty = not self._panes
        self._placeholder.display = empty
        self.tabs.display = not empty

    def _update_composer_hint(self) -> None:
        address = self.current_address
        if address is None:
            self.composer.placeholder = "Pick a conversation, or type /help"
            return
        hint = f"Message {address}"
        room = (self.composer.size.width or self.size.width) - 4
        if len(hint) + 23 <= room:  # the placeholder must fit on the one line shown
            hint += "   (/help for commands)"
        self.composer.placeholder = hint

    @on(TabbedContent.TabActivated, "#tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        address = self.current_address
        key = conversation_key(address) if address is not None else None
        if self._viewing is not None and self._viewing != key:
            # The user saw what was below the unread line and moved on: the line goes.
            left = self._panes.get(self._viewing)
            if left is not None:
                left.log_view.set_unread_after(None)
        self._viewing = key
        if address is not None:
            self.state.clear_unread(address)
            self._show_unread(address)
            self.composer.switch_to(conversation_key(address))
            self.read_soon()
        self._update_composer_hint()
        self.refresh_bindings()  # Invite and Leave depend on the pane
        self._typing_line.show(address)
        # The active tab is always in view, even after many tabs (or a long name) were added.
        self.call_after_refresh(self._scroll_to_active_tab)

    def _scroll_to_active_tab(self) -> None:
        # Textual's Tabs scrolls when a tab is activated, but a tab added a moment before has
        # no size yet, so it scrolls nowhere: do it again once the tab is laid out. The strip
        # hides its overflow, hence `force`.
        if not self.tabs.active:
            return
        tab = self.tabs.get_tab(self.tabs.active)
        strip = self.tabs.query_one(Tabs).query_one("#tabs-scroll")
        strip.scroll_to_center(tab, animate=False, force=True)

    # --- groups, members, presence -------------------------------------------------------------

    def refresh_sidebar(self) -> None:
        self.sidebar.show(self.state)
        dialog = self.app.screen
        if isinstance(dialog, JoinDialog):  # it lists public groups live
            dialog.show_rooms(self.state.joinable_public_rooms())

    def _show_members(self, pane: ConversationPane) -> None:
        if pane.member_list is None:
            return
        online = {key: user.online for key, user in self.state.users.items()}
        online[fold(self.state.me)] = True
        room = pane.address[1:]
        pane.member_list.show(
            self.state.members_of(room),
            online,
            self.state.me,
            self.state.invited_to(room),
            owner=self.state.owner_of(room),
        )
        pane.show_topic(self.state.topic_of(room))

    def members_changed(self, room: str) -> None:
        pane = self.pane_for(room_address(room))
        if pane is not None:
            self._show_members(pane)
        self.refresh_sidebar()

    def topic_changed(self, room: str) -> None:
        pane = self.pane_for(room_address(room))
        if pane is not None:
            pane.show_topic(self.state.topic_of(room))

    def presence_changed(self) -> None:
        for pane in self._panes.values():
            self._show_members(pane)
        self.refresh_sidebar()

    def welcomed(self) -> None:
        """After a (re)connect: our nick and every list may have changed."""
        for pane in self._panes.values():
            pane.log_view.set_me(self.state.me)
            self._show_members(pane)
        self.refresh_sidebar()

    # --- invitations ---------------------------------------------------------------------------

    def show_invitation(self, invitation: Invitation | None) -> None:
        """Put `invitation` in the notification bar (None hides it)."""
        self._invitation_bar.show(invitation)
        self.refresh_bindings()

    @on(InvitationBar.Answered)
    def _bar_answered(self, event: InvitationBar.Answered) -> None:
        self.chat.answer_invitation(event.room, event.answer)

    def action_answer_invitation(self, answer: str) -> None:
        invitation = self._invitation_bar.invitation
        if invitation is not None:
            self.chat.answer_invitation(invitation.room, answer)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "answer_invitation":
            return self._invitation_bar.invitation is not None
        if action in ("invite", "leave"):
            return self.current_room is not None  # only in a group pane
        if action == "cancel_upload":
            return self.upload_bar.active
        return True

    @on(Sidebar.InvitationChosen)
    def _invitation_chosen(self, event: Sidebar.InvitationChosen) -> None:
        invitation = self.state.invites.get(fold(event.room))
        if invitation is None:
            return

        def answered(answer: str | None) -> None:
            if answer is not None:
                self.chat.answer_invitation(invitation.room, answer)

        self.app.push_screen(InvitationDialog(invitation), answered)

    # --- picking conversations -----------------------------------------------------------------

    @on(Sidebar.Opened)
    async def _sidebar_opened(self, event: Sidebar.Opened) -> None:
        await self.open_conversation(event.address)

    @on(Sidebar.JoinChosen)
    def _sidebar_join(self, event: Sidebar.JoinChosen) -> None:
        self.chat.request_join(event.room)

    @on(MemberList.Picked)
    async def _member_picked(self, event: MemberList.Picked) -> None:
        if not self.state.is_me(event.nick):
            await self.open_conversation(dm_address(event.nick))

    @on(MessageLog.OlderWanted)
    def _older_wanted(self, event: MessageLog.OlderWanted) -> None:
        purpose = "gap" if event.gap else "older"
        self.chat.request_history(event.log.address, event.before, purpose)

    # --- typing and search ---------------------------------------------------------------------

    def typing_received(self, nick: str, to: str) -> None:
        if self.state.is_me(nick):
            return
        address = to if to.startswith("#") else dm_address(nick)
        self._typing_line.noted(self._canonical(address), nick)

    def action_search(self) -> None:
        screen = SearchScreen(
            self.chat.search_messages,
            self.state.conversation_of,
            current=self.current_address,
            tz=self.chat.tz,
        )
        self.app.push_screen(screen, self.search_picked)

    # --- the input line ------------------------------------------------------------------------

    def _last_own_message(self) -> tuple[int, str] | None:
        address = self.current_address
        pane = self.pane_for(address) if address else None
        return pane.log_view.last_own_message() if pane is not None else None

    def _edit_submitted(self, msg_id: int, text: str) -> None:
        address = self.current_address
        if address is None:
            return
        if text:
            self.chat.request_edit(msg_id, text)
        else:
            self.confirm_delete(msg_id)

    @on(Composer.Submitted)
    async def _submitted(self, event: Composer.Submitted) -> None:
        if event.editing is not None:
            self._edit_submitted(event.editing, event.text)
            return
        if self.current_address is not None:
            # A path alone (pasted, or a file dropped on the terminal), before it is taken
            # for a /command: `/home/me/cat.png` is a file, not an unknown command.
            path = await self.pasted_path(event.text)
            if path is not None:
                self._offer_to_send(self.current_address, path, event.text)
                return
        try:
            command = commands.parse(event.text)
        except commands.CommandError as exc:
            self.notify(str(exc), title="Command", severity="warning", markup=False)
            return
        if not self._fits(command):
            self.composer.value = event.text  # keep it, to be shortened
            return
        await self.run_command(command)

    def _offer_to_send(self, address: str, path: Path, text: str) -> None:
        def answered(send: bool | None) -> None:
            if send:
                self.chat.request_upload(address, path)
            else:  # back in the input box, to edit or send as text
                self.composer.value = text  # puts the cursor at its end
                self.composer.focus()

        question = f"Send the file {path} to {address}?"
        self.app.push_screen(ConfirmDialog(question, yes="Send file", no="Cancel"), answered)

    @on(Composer.Changed, "#composer")
    def _composer_changed(self, event: Composer.Changed) -> None:
        self._show_counter()
        self._maybe_send_typing(self.composer.text)

    def _maybe_send_typing(self, text: str) -> None:
        """Tell the conversation shown that we type (at most every few seconds): not for a
        /command, and not while editing a message."""
        address = self.current_address
        if address is None or not text or text.startswith("/") or self.composer.editing:
            return
        if self.typing_sender.should_send(address):
            self.chat.request_typing(address)

    def _show_counter(self) -> None:
        """`3950/4000` once the text nears `max_text`; in error colours beyond it."""
        counter = self._counter
        length = len(self.composer.text)
        limit = self.state.max_text
        near = length >= limit * 0.9
        counter.display = near
        counter.set_class(length > limit, "-over")
        if near:
            over = length - limit
            extra = f" ({over} too many)" if over > 0 else ""
            counter.update(Content(f"{length}/{limit} characters{extra}"))

    def _fits(self, command: commands.Command) -> bool:
        """Refuse, before sending, a text longer than the server's `max_text`."""
        text = ""
        match command:
            case commands.Say(text=said):
                text = said
            case commands.Msg(text=said):
                text = said
            case commands.Me(text=said):
                text = f"/me {said}"
        limit = self.state.max_text
        if len(text) <= limit:
            return True
        self.notify(
            f"The message is {len(text)} characters; the server takes at most {limit}. "
            "Shorten it, or send it in parts.",
            title="Too long",
            severity="warning",
            markup=False,
        )
        return False

    def say(self, text: str) -> None:
        """An answer to a command (`/whois`, `/names`): in the current pane, else a toast."""
        address = self.current_address
        if address is not None:
            self.add_notice(address, text)
        else:
            self.notify(text, markup=False, timeout=10)

    def _warn(self, text: str) -> None:
        self.notify(text, severity="warning", markup=False)

    async def run_command(self, command: commands.Command) -> None:
        """Do what a parsed input line asks."""
        match command:
            case commands.Say(text=text):
                address = self.current_address
                if address is None:
                    self._warn("Open a conversation first: pick one in the sidebar, or /msg NICK.")
                else:
                    self.chat.request_send(address, text)
                    self.typing_sender.sent_message(address)
            case commands.Me(text=text):
                address = self.current_address
                if address is None:
                    self._warn("Open a conversation first: pick one in the sidebar, or /msg NICK.")
                else:
                    self.chat.request_send(address, f"/me {text}")
                    self.typing_sender.sent_message(address)
            case commands.Msg(nick=nick, text=text):
                if self.state.knows(nick) or self.pane_for(dm_address(nick)) is not None:
                    pane = await self.open_conversation(dm_address(nick))
                    if text:
                        self.chat.request_send(pane.address, text)
                else:
                    # Ask the server first: no pane for someone who does not exist.
                    self.run_worker(self._msg_stranger(nick, text), group="ui")
            case commands.Create(room=room, invite=invite, public=public):
                self.chat.request_create(room, invite, public)
            case commands.InviteUser(nick=nick):
                room = self.current_room
                if room is None:
                    self._warn("/invite works in a group pane.")
                else:
                    self.chat.request_invite(room, nick)
            case commands.Join(room=room):
                if self.state.is_member(room):
                    await self.open_conversation(room_address(room))
                else:
                    self.chat.request_join(room)
            case commands.Leave(room=room):
                target = room or self.current_room
                address = self.current_address
                if target is None and address is not None:
                    self._warn(
                        f"{address} is a direct conversation: there is no group to leave. "
                        "/close (alt+w) closes the pane."
                    )
                elif target is None:
                    self._warn("/leave works in a group pane (or /leave ROOM).")
                else:
                    self.chat.request_leave(target)
            case commands.Topic(text=text):
                room = self.current_room
                if room is None:
                    self.notify("/topic works in a group pane.", severity="warning", markup=False)
                else:
                    self.chat.request_topic(room, text)
            case commands.Kick(nick=nick, reason=reason):
                room = self.current_room
                if room is None:
                    self.notify("/kick works in a group pane.", severity="warning", markup=False)
                else:
                    self.chat.request_kick(room, nick, reason)
            case commands.Whois(nick=nick):
                self.run_worker(self._whois(nick), group="ui")
            case commands.Names():
                room = self.current_room
                if room is None:
                    self._warn("/names works in a group pane.")
                else:
                    self.say(self._names_text(room))
            case commands.ListRooms():
                self.say(self._list_text())
            case commands.Alerts(what=what, value=value):
                notes = self.chat.settings.notifications
                if what == "bell":
                    notes.bell = value == "on"
                    self.say(f"Bell {value} (the config file sets the default).")
                else:
                    notes.desktop = "osc9" if value == "on" else value  # type: ignore[assignment]
                    shown = "off" if notes.desktop == "off" else f"on ({notes.desktop})"
                    self.say(f"Desktop notifications {shown} (the config file sets the default).")
            case commands.Unsupported(reason=reason):
                self._warn(reason)
            case commands.Close():
                self.action_close_pane()
            case commands.Image(path=path):
                self.send_file(path, images_only=True)
            case commands.SendFile(path=path):
                self.send_file(path, images_only=False)
            case commands.Help():
                self.action_help()
            case commands.Quit():
                await self.app.action_quit()

    async def _msg_stranger(self, nick: str, text: str) -> None:
        """`/msg` to a nick we do not know: open the pane only if the server knows it."""
        try:
            exists = await self.chat.user_exists(nick)
        except Exception as exc:
            self.notify(
                explain_failure(exc, Context(nick=nick)),
                title=f"Could not open @{nick}",
                severity="error",
                markup=False,
            )
            return
        if not exists and self.state.is_gone(nick):
            self.notify(self.state.gone_sentence(nick), title=f"No @{nick}", markup=False)
            return
        if not exists:
            self.notify(
                explain("no_such_user", Context(nick=nick)),
                title=f"No @{nick}",
                severity="warning",
                markup=False,
            )
            return
        self.state.note_user(nick)
        pane = await self.open_conversation(dm_address(nick))
        if text:
            self.chat.request_send(pane.address, text)

    async def _whois(self, nick: str) -> None:
        if not self.state.knows(nick):
            try:
                exists = await self.chat.user_exists(nick)
            except Exception as exc:
                self.notify(
                    explain_failure(exc, Context(nick=nick)), severity="error", markup=False
                )
                return
            if not exists:
                self.say(explain("no_such_user", Context(nick=nick)))
                return
            self.say(f"{nick}: offline (has an account); you share no group.")
            return
        shown = self.state.display_nick(nick)
        if self.state.is_me(nick):
            status = "you"
        else:
            status = "online" if self.state.is_online(nick) else "offline"
        shared = self.state.shared_rooms(nick)
        groups = "in " + ", ".join(f"#{r}" for r in shared) if shared else "you share no group"
        self.say(f"{shown}: {status}; {groups}.")

    def _names_text(self, room: str) -> str:
        members = sorted(self.state.members_of(room), key=lambda n: (not self._online(n), fold(n)))
        shown = [f"{n}{'' if self._online(n) else ' (offline)'}" for n in members]
        pending = self.state.invited_to(room)
        text = f"#{room}, {len(members)}: " + ", ".join(shown)
        if pending:
            text += "; invited: " + ", ".join(pending)
        return text

    def _online(self, nick: str) -> bool:
        return self.state.is_me(nick) or self.state.is_online(nick)

    def _list_text(self) -> str:
        rooms = sorted(self.state.public_rooms.values(), key=lambda item: fold(item[0]))
        if not rooms:
            return "No public groups right now. /create ROOM --public makes one."
        return "Public groups: " + ", ".join(f"#{name} ({count})" for name, count in rooms)

    # --- completion ------------------------------------------------------------------------------

    def completions(self, word: str, before: str) -> list[str]:
        """What Tab offers for `word` (see `Composer.completer`): commands, #rooms, nicks."""
        folded = fold(word)
        if word.startswith("/") and not before.strip():
            return [f"/{n}" for n in sorted(commands.USAGE) if n.startswith(folded[1:])]
        rooms = sorted(
            {r.name for r in self.state.rooms.values()}
            | {name for name, _ in self.state.public_rooms.values()},
            key=fold,
        )
        if word.startswith("#"):
            return [f"#{r}" for r in rooms if fold(r).startswith(folded[1:])]
        first = before.strip().split(" ")[0].lower() if before.strip() else ""
        if first in ("/join", "/j", "/leave", "/part") and before.strip() == first:
            return [r for r in rooms if fold(r).startswith(folded)]
        sigil = "@" if word.startswith("@") else ""
        prefix = folded[len(sigil) :]
        return [f"{sigil}{n}" for n in self._nick_candidates() if fold(n).startswith(prefix)]

    def _nick_candidates(self) -> list[str]:
        """Nicks, best first: the current group's members, the DM partner, everyone known."""
        ordered: list[str] = []
        room = self.current_room
        address = self.current_address
        if room is not None:
            ordered += sorted(self.state.members_of(room), key=fold)
        elif address is not None:
            ordered.append(address[1:])
        ordered += [u.nick for u in self.state.sorted_users()]
        seen: set[str] = set()
        result = []
        for nick in ordered:
            if fold(nick) not in seen and not self.state.is_me(nick):
                seen.add(fold(nick))
                result.append(nick)
        return result

    # --- key bindings (also reached from the command palette) ----------------------------------

    def action_new_dm(self) -> None:
        nicks = [u.nick for u in self.state.sorted_users()]

        async def answered(nick: str | None) -> None:
            if nick:
                await self._run_text(f"/msg {nick}")

        self.app.push_screen(
            PromptDialog(
                "Message who?",
                placeholder="nick",
                suggestions=nicks,
                hint="Enter opens the conversation.",
            ),
            answered,
        )

    def action_new_group(self) -> None:
        def answered(group: NewGroup | None) -> None:
            if group is not None:
                self.chat.request_create(group.room, group.invite, group.public)

        nicks = [u.nick for u in self.state.sorted_users()]
        self.app.push_screen(CreateGroupDialog(nicks), answered)

    def action_invite(self) -> None:
        room = self.current_room
        if room is None:
            self.notify("Invite from a group pane.", severity="warning", markup=False)
            return
        candidates = [
            (nick, self.state.is_online(nick)) for nick in self.state.invite_candidates(room)
        ]

        def answered(nick: str | None) -> None:
            if nick and room is not None:
                self.chat.request_invite(room, nick)

        pending = self.state.invited_to(room)
        self.app.push_screen(InviteDialog(room, candidates, pending=pending), answered)

    def action_topic(self) -> None:
        room = self.current_room
        if room is None:
            self.notify("Set a topic from a group pane.", severity="warning", markup=False)
            return

        async def answered(text: str | None) -> None:
            if text and room is not None:
                self.chat.request_topic(room, text)

        self.app.push_screen(
            PromptDialog(
                f"Topic of #{room}",
                placeholder=self.state.topic_of(room) or "topic",
                hint="Every member sees it above the conversation (`/topic` alone clears it).",
            ),
            answered,
        )

    def action_kick(self) -> None:
        room = self.current_room
        if room is None:
            self.notify("Kick from a group pane.", severity="warning", markup=False)
            return
        others = [m for m in self.state.members_of(room) if not self.state.is_me(m)]

        async def answered(text: str | None) -> None:
            if text:
                await self._run_text(f"/kick {text}")

        self.app.push_screen(
            PromptDialog(
                f"Remove from #{room}",
                placeholder="NICK [REASON]",
                suggestions=others,
                hint="Only the group's owner (or a server administrator) may.",
            ),
            answered,
        )

    def action_join(self) -> None:
        async def answered(room: str | None) -> None:
            if room:
                await self._run_text(f"/join {room}")

        self.app.push_screen(JoinDialog(self.state.joinable_public_rooms()), answered)

    def action_switcher(self) -> None:
        """ctrl+k: go to any conversation by typing part of its name."""
        seen: set[str] = set()
        destinations: list[Destination] = []

        def add(address: str, hint: str, unread: int = 0) -> None:
            key = conversation_key(address)
            if key not in seen:
                seen.add(key)
                destinations.append(Destination(address, hint, unread))

        # Unread first, then the open panes in tab order, then everyone and every group.
        panes = [p for p in self.tabs.query(ConversationPane)]
        for pane in panes:
            unread = self.state.unread_for(pane.address)
            if unread:
                add(pane.address, f"{unread} unread", unread)
        for pane in panes:
            if pane.id != self.tabs.active:
                add(pane.address, "open")
        for user in self.state.sorted_users():
            add(dm_address(user.nick), "online" if user.online else "offline")
        for info in sorted(self.state.rooms.values(), key=lambda r: fold(r.name)):
            add(room_address(info.name), f"group, {_members(len(info.members))}")
        for name, count in self.state.joinable_public_rooms():
            add(room_address(name), f"public, {_members(count)}: Enter joins")

        async def answered(address: str | None) -> None:
            if address is None:
                return
            if address.startswith("#") and not self.state.is_member(address[1:]):
                self.chat.request_join(address[1:])
            else:
                await self.open_conversation(address)

        self.app.push_screen(QuickSwitcher(destinations), answered)

    def action_redraw(self) -> None:
        """ctrl+l: repaint the whole terminal (after line noise, a resize the terminal missed)."""
        self.app.refresh(repaint=True, layout=True)
        self.refresh(repaint=True, layout=True)

    def action_tab(self, number: int) -> None:
        """alt+N: the Nth tab."""
        ids = [pane.id for pane in self.tabs.query(ConversationPane) if pane.id]
        if 1 <= number <= len(ids):
            self.tabs.active = ids[number - 1]
            self.composer.focus()

    def action_toggle_sidebar(self) -> None:
        """ctrl+b: the sidebar; when narrow it folds away, and this shows it over the log."""
        if self.has_class("-narrow"):
            showing = not self.has_class("-show-sidebar")
            self.set_class(showing, "-show-sidebar")
            if showing:
                self.remove_class("-show-members")
                self.sidebar.option_list.focus()
            else:
                self.composer.focus()
            return
        if self.sidebar.option_list.has_focus:
            self.composer.focus()
        else:
            self.sidebar.option_list.focus()

    def action_toggle_members(self) -> None:
        """alt+m: the member list of the group shown (over the log, when narrow)."""
        address = self.current_address
        pane = self.pane_for(address) if address else None
        if pane is None or pane.member_list is None:
            return
        if self.has_class("-narrow"):
            showing = not self.has_class("-show-members")
            self.set_class(showing, "-show-members")
            if showing:
                self.remove_class("-show-sidebar")
                pane.member_list.focus()
            else:
                self.composer.focus()
        elif pane.member_list.has_focus:
            self.composer.focus()
        else:
            pane.member_list.focus()

    def action_leave(self) -> None:
        room = self.current_room
        if room is None:
            return

        def answered(yes: bool | None) -> None:
            if yes and room is not None:
                self.chat.request_leave(room)

        self.app.push_screen(ConfirmDialog(f"Leave #{room}?", yes="Leave", no="Stay"), answered)

    def action_close_pane(self) -> None:
        address = self.current_address
        if address is not None:
            self.run_worker(self.close_conversation(address), group="ui")

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen())

    def action_focus_sidebar(self) -> None:
        if self.has_class("-narrow"):
            self.add_class("-show-sidebar")
        self.sidebar.option_list.focus()

    def action_focus_composer(self) -> None:
        self.remove_class("-show-sidebar", "-show-members")
        self.composer.focus()

    def action_cycle_pane(self, step: int) -> None:
        ids = [pane.id for pane in self.tabs.query(ConversationPane) if pane.id]
        if not ids:
            return
        current = ids.index(self.tabs.active) if self.tabs.active in ids else 0
        self.tabs.active = ids[(current + step) % len(ids)]

    def action_scroll_log(self, how: str) -> None:
        address = self.current_address
        pane = self.pane_for(address) if address else None
        if pane is None:
            return
        if how == "page_up":
            pane.log_view.action_page_up()
        else:
            pane.log_view.action_page_down()

    async def _run_text(self, text: str) -> None:
        try:
            command = commands.parse(text)
        except commands.CommandError as exc:
            self.notify(str(exc), severity="warning", markup=False)
            return
        await self.run_command(command)

    def open_later(self, address: str) -> None:
        """Open a conversation from a callback that cannot await (the command palette)."""
        self.run_worker(self.open_conversation(address), group="ui")


def _members(count: int) -> str:
    return "1 member" if count == 1 else f"{count} members"
