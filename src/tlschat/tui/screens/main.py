"""The main screen: status bar, sidebar, tabbed conversations, the input line and the footer."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, ClassVar, cast

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Input, Static, TabbedContent

from tlschat import protocol
from tlschat.tui import commands
from tlschat.tui.screens.dialogs import ConfirmDialog, InvitationDialog, InviteDialog, PromptDialog
from tlschat.tui.screens.help import HelpScreen
from tlschat.tui.screens.search import Hit, SearchScreen
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

if TYPE_CHECKING:
    from tlschat.tui.app import ChatApp

PLACEHOLDER = (
    "No conversation open.\n\n"
    "Pick someone or a group in the sidebar:\n"
    "ctrl+b, then Enter.\n\n"
    "Or type /msg NICK, /create ROOM,\n"
    "/join ROOM.  /help lists everything."
)


class MainScreen(Screen[None]):
    """Routes what the App learns to the right pane; turns keys and commands into App requests."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+n", "new_dm", "DM"),
        Binding("ctrl+g", "new_group", "Group"),
        Binding("ctrl+f", "search", "Search", show=False),
        Binding("ctrl+t", "invite", "Invite"),
        Binding("ctrl+o", "join", "Join", show=False),
        Binding("ctrl+l", "leave", "Leave", show=False),
        Binding("alt+w", "close_pane", "Close pane", show=False),
        Binding("f1", "help", "Help"),
        Binding("f2", "answer_invitation('accept')", "Accept"),
        Binding("f3", "answer_invitation('decline')", "Decline"),
        Binding("ctrl+b", "focus_sidebar", "Sidebar", show=False),
        Binding("escape", "focus_composer", "Input", show=False),
        Binding("alt+left,ctrl+pageup", "cycle_pane(-1)", "Previous pane", show=False),
        Binding("alt+right,ctrl+pagedown", "cycle_pane(1)", "Next pane", show=False),
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
        self.typing_sender = TypingSender()
        self._goto: dict[str, tuple[int, int]] = {}
        """Conversation key -> (message id to show, history pages left to find it)."""

    @property
    def chat(self) -> ChatApp:
        return cast("ChatApp", self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with Horizontal(id="body"):
            yield Sidebar(id="sidebar")
            with Vertical(id="conversation"):
                yield Static(Content(PLACEHOLDER), id="placeholder")
                yield TabbedContent(id="tabs")
                yield TypingLine(id="typing-line")
                yield InvitationBar(id="invitation-bar")
                yield Composer(placeholder="Pick a conversation, or type /help", id="composer")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.composer.cursor_blink = self.chat.cursor_blink
        self.composer.last_own = self._last_own_message
        self.query_one(InvitationBar).show(None)
        self._update_placeholder()
        self.refresh_sidebar()
        self.composer.focus()
        self.ready.set()

    def on_resize(self, event: events.Resize) -> None:
        # 80 columns: narrower sidebar and member lists, so the messages keep most of the width.
        self.set_class(event.size.width < 100, "-narrow")

    # --- widgets -------------------------------------------------------------------------------

    @property
    def tabs(self) -> TabbedContent:
        return self.query_one("#tabs", TabbedContent)

    @property
    def composer(self) -> Composer:
        return self.query_one("#composer", Composer)

    @property
    def status(self) -> StatusBar:
        return self.query_one("#status", StatusBar)

    @property
    def sidebar(self) -> Sidebar:
        return self.query_one("#sidebar", Sidebar)

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
        """File a message under its conversation, opening the pane if needed; count it unread."""
        address = self.state.conversation_of(message)
        if (message.edit_of or message.delete_of) and self.pane_for(address) is None:
            return  # a change to a message not shown: it opens nothing (history has it as is)
        pane = await self.open_conversation(address, activate=False)
        added = pane.log_view.add_messages([message])
        self.query_one(TypingLine).message_from(address, message.from_)
        if added and not self.state.is_me(message.from_) and self.tabs.active != pane.id:
            self.state.mark_unread(pane.address)
            self._show_unread(pane.address)

    def add_notice(self, address: str, text: str) -> None:
        pane = self.pane_for(address)
        if pane is not None:
            pane.log_view.add_notice(text, protocol.utc_timestamp())

    def history_loaded(
        self, address: str, messages: tuple[protocol.Message, ...], more: bool, failed: bool
    ) -> None:
        pane = self.pane_for(address)
        if pane is None:
            return
        if failed:
            pane.log_view.older_failed()
        else:
            pane.log_view.add_older(messages, more)
            self._continue_goto(pane)

    def _show_unread(self, address: str) -> None:
        pane = self.pane_for(address)
        if pane is not None and pane.id is not None:
            self.tabs.get_tab(pane.id).label = pane_title(
                pane.address, self.state.unread_for(address)
            )
        self.refresh_sidebar()

    def _update_placeholder(self) -> None:
        empty = not self._panes
        self.query_one("#placeholder", Static).display = empty
        self.tabs.display = not empty

    def _update_composer_hint(self) -> None:
        address = self.current_address
        self.composer.placeholder = (
            f"Message {address}   (/help for commands)"
            if address
            else "Pick a conversation, or type /help"
        )

    @on(TabbedContent.TabActivated, "#tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        address = self.current_address
        if address is not None:
            self.state.clear_unread(address)
            self._show_unread(address)
        self._update_composer_hint()
        self.refresh_bindings()  # Invite and Leave depend on the pane
        self.query_one(TypingLine).show(address)

    # --- groups, members, presence -------------------------------------------------------------

    def refresh_sidebar(self) -> None:
        self.sidebar.show(self.state)

    def _show_members(self, pane: ConversationPane) -> None:
        if pane.member_list is None:
            return
        online = {key: user.online for key, user in self.state.users.items()}
        online[fold(self.state.me)] = True
        pane.member_list.show(self.state.members_of(pane.address[1:]), online, self.state.me)

    def members_changed(self, room: str) -> None:
        pane = self.pane_for(room_address(room))
        if pane is not None:
            self._show_members(pane)
        self.refresh_sidebar()

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
        self.query_one(InvitationBar).show(invitation)
        self.refresh_bindings()

    @on(InvitationBar.Answered)
    def _bar_answered(self, event: InvitationBar.Answered) -> None:
        self.chat.answer_invitation(event.room, event.answer)

    def action_answer_invitation(self, answer: str) -> None:
        invitation = self.query_one(InvitationBar).invitation
        if invitation is not None:
            self.chat.answer_invitation(invitation.room, answer)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "answer_invitation":
            return self.query_one(InvitationBar).invitation is not None
        if action in ("invite", "leave"):
            return self.current_room is not None  # only in a group pane
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
        self.chat.request_history(event.log.address, event.before)

    # --- typing and search ---------------------------------------------------------------------

    def typing_received(self, nick: str, to: str) -> None:
        if self.state.is_me(nick):
            return
        address = to if to.startswith("#") else dm_address(nick)
        self.query_one(TypingLine).noted(self._canonical(address), nick)

    @on(Input.Changed, "#composer")
    def _composer_changed(self, event: Input.Changed) -> None:
        address = self.current_address
        text = event.value
        if address is None or not text or text.startswith("/"):
            return
        if self.typing_sender.should_send(address):
            self.chat.request_typing(address)

    def action_search(self) -> None:
        screen = SearchScreen(
            self.chat.search_messages,
            self.state.conversation_of,
            current=self.current_address,
            tz=self.chat.tz,
        )
        self.app.push_screen(screen, self._search_picked)

    async def _search_picked(self, hit: Hit | None) -> None:
        """Open the conversation at the message, loading older history until it is shown."""
        if hit is None:
            return
        address, msg_id = hit
        pane = await self.open_conversation(address)
        if pane.log_view.scroll_to_message(msg_id):
            return
        self._goto[conversation_key(pane.address)] = (msg_id, 20)
        if not pane.log_view.fetching_older:
            pane.log_view.fetching_older = True
            self.chat.request_history(pane.address, pane.log_view.oldest_id)

    def _continue_goto(self, pane: ConversationPane) -> None:
        key = conversation_key(pane.address)
        goal = self._goto.pop(key, None)
        if goal is None:
            return
        msg_id, pages = goal
        log = pane.log_view
        if log.scroll_to_message(msg_id):
            return
        if log.fetching_older:  # a page is on its way already: look again when it is in
            self._goto[key] = goal
        elif log.more and pages > 1:
            self._goto[key] = (msg_id, pages - 1)
            log.fetching_older = True
            self.chat.request_history(pane.address, log.oldest_id)
        else:
            self.notify("That message is too far back to show here.", markup=False)

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
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.chat.request_delete(msg_id)

        self.app.push_screen(
            ConfirmDialog("Delete this message for everyone?", yes="Delete"), answered
        )

    @on(Composer.Submitted)
    async def _submitted(self, event: Composer.Submitted) -> None:
        if event.editing is not None:
            self._edit_submitted(event.editing, event.text)
            return
        try:
            command = commands.parse(event.text)
        except commands.CommandError as exc:
            self.notify(str(exc), title="Command", severity="warning", markup=False)
            return
        await self.run_command(command)

    async def run_command(self, command: commands.Command) -> None:
        """Do what a parsed input line asks."""
        match command:
            case commands.Say(text=text):
                address = self.current_address
                if address is None:
                    self.notify(
                        "Open a conversation first: pick one in the sidebar, or /msg NICK.",
                        severity="warning",
                        markup=False,
                    )
                else:
                    self.chat.request_send(address, text)
                    self.typing_sender.sent_message(address)
            case commands.Msg(nick=nick, text=text):
                pane = await self.open_conversation(dm_address(nick))
                if text:
                    self.chat.request_send(pane.address, text)
            case commands.Create(room=room, invite=invite):
                self.chat.request_create(room, invite)
            case commands.InviteUser(nick=nick):
                room = self.current_room
                if room is None:
                    self.notify("/invite works in a group pane.", severity="warning", markup=False)
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
                    self.notify(
                        f"{address} is a direct conversation: there is no group to leave. "
                        "/close (alt+w) closes the pane.",
                        severity="warning",
                        markup=False,
                    )
                elif target is None:
                    self.notify(
                        "/leave works in a group pane (or /leave ROOM).",
                        severity="warning",
                        markup=False,
                    )
                else:
                    self.chat.request_leave(target)
            case commands.Close():
                self.action_close_pane()
            case commands.Image():
                self.notify(
                    "Sending images is not available yet.", severity="warning", markup=False
                )
            case commands.Help():
                self.action_help()
            case commands.Quit():
                await self.app.action_quit()

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
        async def answered(text: str | None) -> None:
            if text:
                await self._run_text(f"/create {text}")

        self.app.push_screen(
            PromptDialog(
                "Create a group",
                placeholder="ROOM [NICK...]",
                hint="A name, then who to invite (optional). Groups are invite-only.",
            ),
            answered,
        )

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

    def action_join(self) -> None:
        rooms = [name for name, _ in self.state.joinable_public_rooms()]

        async def answered(room: str | None) -> None:
            if room:
                await self._run_text(f"/join {room}")

        hint = (
            "Public groups: " + ", ".join(f"#{r}" for r in rooms)
            if rooms
            else "No public groups announced."
        )
        self.app.push_screen(
            PromptDialog("Join a public group", placeholder="ROOM", suggestions=rooms, hint=hint),
            answered,
        )

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
        self.sidebar.option_list.focus()

    def action_focus_composer(self) -> None:
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
