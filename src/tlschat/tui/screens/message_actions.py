"""The main screen's part about single messages: select one in the log (alt+up, or a click),
edit or delete it if it is ours, its menu; and opening a conversation at a message found by
search, loading the history around it."""

from __future__ import annotations

from dataclasses import dataclass

from textual.geometry import Offset

from tlschat import protocol
from tlschat.tui.screens.dialogs import ConfirmDialog
from tlschat.tui.screens.file_actions import FileActions
from tlschat.tui.screens.message_menu import MessageMenu
from tlschat.tui.screens.search import Hit
from tlschat.tui.state import conversation_key
from tlschat.tui.widgets import attachments
from tlschat.tui.widgets.composer import Composer
from tlschat.tui.widgets.message_log import Entry, MessageLog
from tlschat.tui.widgets.pane import ConversationPane

WINDOW_AFTER = 10
"""A jump to a message loads `history` before its id + 1 + this: the message, the ones just
after it (ids are shared by all conversations, so at most this many) and older ones, in one
request."""

GOTO_TRIES = 20
"""History requests a jump makes before it gives up (a message deleted since, say)."""


@dataclass
class Goto:
    """A message to show once it is loaded, and the requests left to load it."""

    msg_id: int
    tries: int = GOTO_TRIES


class MessageActions(FileActions):
    """Mixed into MainScreen, which provides `composer`, `open_conversation` and `_goto`."""

    _goto: dict[str, Goto]
    """Conversation key -> the message a jump is loading."""

    # Provided by MainScreen.
    @property
    def composer(self) -> Composer:
        raise NotImplementedError

    async def open_conversation(self, address: str, *, activate: bool = True) -> ConversationPane:
        raise NotImplementedError

    # --- selecting a message ---------------------------------------------------------------------

    def action_select_message(self) -> None:
        """alt+up: select the newest message of the conversation shown (then up, down, e, d, m)."""
        address = self.current_address
        pane = self.pane_for(address) if address is not None else None
        if pane is None:
            return
        log = pane.log_view
        if log.selected is not None:
            log.action_select_step(-1)
        elif log.select_newest():
            log.focus()
        else:
            self.notify("No message to select here yet.", markup=False)

    def on_message_log_unselected(self, event: MessageLog.Unselected) -> None:
        self.composer.focus()

    def on_message_log_chosen(self, event: MessageLog.Chosen) -> None:
        self.act_on_message(event.log, event.entry, event.action, event.at)

    def act_on_message(
        self, log: MessageLog, entry: Entry, action: str, at: Offset | None = None
    ) -> None:
        """`edit`, `delete`, `menu`, `open` or `save` the message `entry` of `log`."""
        if entry.id is None:
            return
        if action == "menu":

            def picked(choice: str | None) -> None:
                if choice is not None:
                    self.act_on_message(log, entry, choice)

            self.app.push_screen(MessageMenu(entry, at), picked)
        elif action in ("edit", "delete") and (entry.deleted or not entry.own):
            who = "This message is deleted" if entry.deleted else f"This is {entry.nick}'s message"
            self.notify(
                f"{who}: you can only {action} your own messages.",
                severity="warning",
                markup=False,
            )
        elif action == "edit":
            log.select(None)
            self.composer.start_edit(entry.id, entry.raw)  # as up arrow on an empty input
            self.composer.focus()
        elif action == "delete":
            self.confirm_delete(entry.id, log)
        elif action in ("open", "save") and entry.file is not None:
            if action == "open" and not attachments.wants_picture(entry.file):
                action = "save"
            log.post_message(MessageLog.FileChosen(log, entry.file, action))

    def confirm_delete(self, msg_id: int, log: MessageLog | None = None) -> None:
        """Ask first, then delete our message `msg_id` for everyone."""

        def answered(yes: bool | None) -> None:
            if yes:
                self.chat.request_delete(msg_id)
            if log is not None:
                log.select(None)
                self.composer.focus()

        self.app.push_screen(
            ConfirmDialog("Delete this message for everyone?", yes="Delete"), answered
        )

    # --- opening a conversation at a message -----------------------------------------------------

    async def search_picked(self, hit: Hit | None) -> None:
        """Open the conversation at a search result: select it, once it is loaded."""
        if hit is None:
            return
        address, msg_id = hit
        pane = await self.open_conversation(address)
        self._goto[conversation_key(pane.address)] = Goto(msg_id)
        self.continue_goto(pane)

    def continue_goto(self, pane: ConversationPane) -> None:
        """Show the message a jump waits for if it is loaded; otherwise ask for what brings it:
        the newest page first (for a pane with nothing yet), then one window around it, or the
        gap a window left (when it lies there)."""
        key = conversation_key(pane.address)
        goal = self._goto.get(key)
        if goal is None:
            return
        log = pane.log_view
        if log.select(goal.msg_id, centre=True):
            del self._goto[key]
            log.focus()
            return
        if log.fetching_older or log.filling_gap:
            return  # a page is on its way: look again when it is in
        if goal.tries <= 0:
            del self._goto[key]
            self.notify("That message could not be found any more.", markup=False)
            return
        goal.tries -= 1
        oldest = log.oldest_id
        if oldest is None:
            if not log.more:
                del self._goto[key]
                self.notify("That message could not be found any more.", markup=False)
                return
            # The newest page first: what is shown must reach the newest message.
            log.fetching_older = True
            self.chat.request_history(pane.address, None)
        elif goal.msg_id < oldest:
            log.fetching_older = True
            before = min(goal.msg_id + 1 + WINDOW_AFTER, oldest)
            self.chat.request_history(pane.address, before, purpose="window")
        elif log.gap is not None and log.gap[0] <= goal.msg_id < log.gap[1]:
            log.filling_gap = True
            self.chat.request_history(pane.address, log.gap[1], purpose="gap")
        else:
            del self._goto[key]
            self.notify("That message could not be found any more.", markup=False)

    def route_history(
        self,
        pane: ConversationPane,
        messages: tuple[protocol.Message, ...],
        more: bool,
        failed: bool,
        *,
        before: int | None,
        purpose: str,
    ) -> None:
        """A `window` or `gap` answer to its method of the log; then a waiting jump goes on."""
        log = pane.log_view
        if purpose == "gap":
            if failed:
                log.gap_failed()
            else:
                log.fill_gap(messages, more)
        elif failed:
            log.older_failed()
        elif purpose == "window" and before is not None:
            log.add_window(messages, more, before)
        else:
            log.add_older(messages, more)
        if failed:
            self._goto.pop(conversation_key(pane.address), None)
        else:
            self.continue_goto(pane)
