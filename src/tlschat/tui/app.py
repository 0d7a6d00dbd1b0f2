"""The Textual app: owns the client, runs the one network worker and routes what it reports."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from datetime import tzinfo
from pathlib import Path
from typing import Any, ClassVar, Protocol, cast

from textual import on, work
from textual.app import App, InvalidThemeError
from textual.binding import Binding, BindingType
from textual.worker import Worker, WorkerState

from tlschat import protocol
from tlschat.address import Server, format_hostport, format_servers
from tlschat.client import ChatClient, ConnectionState, StateChanged, TrustError, attachments
from tlschat.client.cache import FileCache
from tlschat.client.errors_text import Context, explain, explain_detail, explain_failure
from tlschat.client.guest_tokens import GuestTokens
from tlschat.client.settings import ClientSettings
from tlschat.tui import images
from tlschat.tui.messages import (
    ConnectionStateChanged,
    ConversationWanted,
    HistoryLoaded,
    InvitationDeclined,
    InvitationReceived,
    MembersChanged,
    MessageReceived,
    PresenceChanged,
    PublicRoomChanged,
    ReadElsewhere,
    RoomJoined,
    RoomLeft,
    ServerSaidBye,
    TopicChanged,
    TypingReceived,
    Welcomed,
    translate,
)
from tlschat.tui.palette import ChatCommands
from tlschat.tui.screens.connect import ConnectParams, ConnectScreen
from tlschat.tui.screens.main import MainScreen
from tlschat.tui.screens.trust import HostChangedScreen, TrustDialog
from tlschat.tui.state import ChatState, Invitation, dm_address, fold, room_address

AskTrust = Callable[[str, int, str], Awaitable[bool]]
"""`(host, port, fingerprint) -> trust it?`: what `tlschat.client.Trust(ask=...)` calls."""


class ChatClientLike(Protocol):
    """The part of `tlschat.client.ChatClient` the TUI uses (tests pass a fake with this surface)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def nick(self) -> str: ...
    @property
    def tls_version(self) -> str | None: ...
    @property
    def cipher(self) -> str | None: ...
    @property
    def last_seen(self) -> int: ...

    async def connect(self) -> protocol.Welcome: ...
    async def close(self) -> None: ...
    def events(self) -> AsyncIterator[Any]: ...
    async def send_message(
        self, to: str, text: str, file: str | None = None
    ) -> protocol.Message: ...
    async def upload_file(
        self, path: Path, *, progress: Callable[[int, int], None] | None = None
    ) -> protocol.FileMeta: ...
    async def download_to(
        self, file_id: str, path: Path, *, meta: protocol.FileMeta | None = None
    ) -> None: ...
    async def history(
        self, with_: str, before: int | None = None, limit: int = 50
    ) -> protocol.History: ...
    async def create_room(
        self, room: str, *, public: bool = False, invite: Sequence[str] = ()
    ) -> protocol.Joined: ...
    async def invite(self, room: str, nick: str) -> None: ...
    async def accept(self, room: str) -> protocol.Joined: ...
    async def decline(self, room: str) -> None: ...
    async def join(self, room: str) -> protocol.Joined: ...
    async def leave(self, room: str) -> protocol.Left: ...
    async def set_topic(self, room: str, topic: str) -> protocol.TopicEvent: ...
    async def kick(self, room: str, nick: str, reason: str | None = None) -> None: ...
    async def mark_read(self, with_: str, message_id: int) -> None: ...

    async def typing(self, to: str) -> None: ...
    async def edit(self, message_id: int, text: str) -> protocol.Message: ...
    async def delete(self, message_id: int) -> protocol.Message: ...
    async def search(
        self, query: str, with_: str | None = None, before: int | None = None, limit: int = 20
    ) -> protocol.SearchResult: ...


ClientFactory = Callable[[ConnectParams, AskTrust], ChatClientLike]
"""Builds a client for the connect screen's parameters; `AskTrust` goes into its `Trust(ask=...)`."""

_OSC_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f;]")
"""Never let a peer's text end the escape sequence early or smuggle another one."""


def osc_notification(title: str, body: str, kind: str, *, tmux: bool | None = None) -> str:
    """The escape sequence for a desktop notification: OSC 9 (body only) or OSC 777 (title, body).

    Inside tmux it is wrapped for passthrough (tmux needs `allow-passthrough on`).
    """
    title = _OSC_UNSAFE.sub(" ", title)[:80]
    body = _OSC_UNSAFE.sub(" ", body)[:200]
    if kind == "osc9":
        sequence = f"\x1b]9;{title}: {body}\x07"
    elif kind == "osc777":
        sequence = f"\x1b]777;notify;{title};{body}\x07"
    else:
        return ""
    if tmux if tmux is not None else bool(os.environ.get("TMUX")):
        sequence = "\x1bPtmux;" + sequence.replace("\x1b", "\x1b\x1b") + "\x1b\\"
    return sequence


def describe_error(exc: BaseException) -> str:
    """One line for a failure, in words (never a protocol code alone, never a traceback)."""
    return explain_failure(exc)


class ChatApp(App[int]):
    """tlschat's terminal client. Inject `client=` (tests) or `client_factory=` (the real one)."""

    CSS_PATH = Path(__file__).with_name("chat.tcss")
    """Absolute, so that subclasses elsewhere (tests) find it too."""
    TITLE = "tlschat"
    COMMANDS: ClassVar[set[Any]] = App.COMMANDS | {ChatCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("ctrl+r", "reconnect", "Reconnect"),
    ]

    def __init__(
        self,
        client: ChatClientLike | None = None,
        *,
        client_factory: ClientFactory | None = None,
        host: str | None = None,
        port: int | None = None,
        nick: str | None = None,
        password: str | None = None,
        other_servers: Sequence[Server] = (),
        tz: tzinfo | None = None,
        cursor_blink: bool = True,
        theme: str | None = None,
        file_cache: FileCache | None = None,
        image_terminal: images.Terminal | None = None,
        settings: ClientSettings | None = None,
    ) -> None:
        super().__init__()
        if client is None and client_factory is None:
            raise ValueError("ChatApp needs a client or a client_factory")
        self.client = client
        """The connection; None until the connect screen has what it needs."""
        self.client_factory = client_factory
        self.tz = tz
        """Zone for timestamps; None is the local zone (tests pin one)."""
        self.cursor_blink = cursor_blink
        """False in snapshot tests, so screenshots do not depend on the blink phase."""
        self._bad_theme: str | None = None
        if theme is not None:
            try:
                self.theme = theme
            except InvalidThemeError:
                self._bad_theme = theme  # from the config file: said once the screen is up
        self.file_cache = file_cache if file_cache is not None else FileCache()
        """Downloaded files by SHA-256 (the user's cache dir unless a test gives another)."""
        self.image_terminal = image_terminal if image_terminal is not None else images.detect()
        """How pictures are drawn (detected before the app starts; tests force half blocks)."""
        self.limits: protocol.Limits | None = None
        """The server's limits from the latest `welcome` (`max_upload` is checked before sending)."""
        self._upload: Worker[None] | None = None
        self.state = ChatState()
        self.main: MainScreen | None = None
        self.connect_screen: ConnectScreen | None = None
        self._params: ConnectParams | None = None
        if client is not None:
            self._params = ConnectParams(client.host, client.port, client.nick, password)
        elif host is not None and port is not None and nick is not None:
            self._params = ConnectParams(
                host, port, nick, password, other_servers=tuple(other_servers)
            )
        address = "" if host is None else format_servers([(host, port or 7700), *other_servers])
        self._prefill = (address, nick, password)
        """What the connect screen shows at first: the server list, nick and password."""
        self._invitations: deque[Invitation] = deque()
        """Fresh invitations waiting to be shown in the notification bar, oldest first."""
        self._welcomed = False
        self._attempts = 0
        self._client_closed = False
        """The client closed for good after `welcome`: only a new one (ctrl+r) connects again."""
        self._contexts: dict[Worker[Any], Context] = {}
        """What each running request is about, for its error message."""
        self.settings = settings or ClientSettings()
        """The config file's settings (notifications); defaults when there is none."""

    # --- start-up and connecting ---------------------------------------------------------------

    def on_mount(self) -> None:
        if self._bad_theme is not None:
            self.notify(
                f"No theme named {self._bad_theme!r}: ctrl+p lists the themes.",
                severity="warning",
                markup=False,
            )
        address, nick, password = self._prefill
        if self._params is not None:
            address, nick = self._params.address, self._params.nick
        self.connect_screen = ConnectScreen(
            address=address, nick=nick or "", password=password or ""
        )
        self.push_screen(self.connect_screen)
        if self._params is not None:
            self.call_after_refresh(self._start, self._params)

    @on(ConnectScreen.Submitted)
    async def _connect_submitted(self, event: ConnectScreen.Submitted) -> None:
        await self._start(event.params)

    async def _start(self, params: ConnectParams) -> None:
        """Connect with `params` (a new client from the factory, or the injected one again)."""
        if self.connect_screen is not None and self.connect_screen.is_mounted:
            self.connect_screen.set_busy(True, params.address)
        if self.client_factory is not None and (self.client is None or self._attempts > 0):
            # Every attempt gets a fresh client, so that nothing of a failed one carries over.
            old, self.client = self.client, None
            if old is not None:
                with contextlib.suppress(Exception):
                    await old.close()
            self.client = self.client_factory(params, self.ask_trust)
        self._attempts += 1
        self._params = params
        assert self.client is not None
        self.run_client(self.client)

    async def ask_trust(self, host: str, port: int, fingerprint: str) -> bool:
        """Show the fingerprint and wait for the user's answer (callable from any task)."""
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def answered(trusted: bool | None) -> None:
            if not answer.done():
                answer.set_result(bool(trusted))

        self.push_screen(TrustDialog(host, port, fingerprint), answered)
        return await answer

    @work(exclusive=True, group="net", exit_on_error=False)
    async def run_client(self, client: ChatClientLike) -> None:
        """The one network worker: log in, then turn every event into an App message."""
        welcome = await client.connect()
        self.post_message(Welcomed(welcome))
        closed = False
        async for event in client.events():
            if isinstance(event, StateChanged):
                closed = event.state is ConnectionState.CLOSED
                self.post_message(
                    ConnectionStateChanged(str(event.state), event.detail, event.retry_in)
                )
                continue
            message = translate(event)
            if message is not None:
                self.post_message(message)
        if not closed:  # a bare CLOSED would replace the one that says why (can_replace)
            self.post_message(ConnectionStateChanged(str(ConnectionState.CLOSED)))

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        """The one place worker failures are shown: in place, as a dialog, or as a notification."""
        if event.state is not WorkerState.ERROR:
            return
        worker = event.worker
        error = worker.error
        if error is None:
            return
        if worker.group == "net":
            self._connection_failed(error)
        else:
            context = self._contexts.pop(worker, None)
            self.notify(
                explain_failure(error, context),
                title=f"Could not {worker.name or 'do that'}",
                severity="error",
                markup=False,
            )

    def _connection_failed(self, error: BaseException) -> None:
        if isinstance(error, TrustError) and error.reason == "changed":
            screen = HostChangedScreen(
                error.host, error.port, error.fingerprint, error.known, error.known_hosts
            )
            self.push_screen(screen)
            return
        if isinstance(error, TrustError):
            text = f"Not connected: the server's certificate was not trusted (SHA-256 {error.fingerprint})."
        elif isinstance(error, protocol.RequestFailed):
            text = explain(error.code, message=error.message, retry_after_ms=error.retry_after_ms)
        elif isinstance(error, OSError | protocol.TlsChatError):
            where = self._params.address if self._params else "the server"
            text = f"Cannot connect to {where}: {describe_error(error)}"
        else:
            text = f"Unexpected error: {describe_error(error)}"
        if not self._welcomed:
            self._show_connect_error(text)
        else:
            self._set_closed(True)
            if self.main is not None:
                self.main.status.show(state="closed", detail=describe_error(error))
            self.notify(
                f"{text} ctrl+r reconnects.",
                title="Disconnected",
                severity="error",
                markup=False,
                timeout=15,
            )

    def _show_connect_error(self, text: str) -> None:
        screen = self.connect_screen
        if screen is not None and screen.is_mounted:
            screen.show_error(text)
        elif self.main is None:
            self.connect_screen = ConnectScreen(error=text)
            self.push_screen(self.connect_screen)
        else:
            self.notify(text, severity="error", markup=False)

    # --- reconnecting after the client closed for good -----------------------------------------

    @property
    def can_reconnect(self) -> bool:
        """The client closed for good and a new one can be built (a factory was given)."""
        return self._client_closed and self.client_factory is not None and self._params is not None

    def _set_closed(self, closed: bool) -> None:
        if closed != self._client_closed:
            self._client_closed = closed
            self.screen.refresh_bindings()  # the footer shows Reconnect only while closed
            if self.main is not None:
                self.main.refresh_bindings()
                self.main.status.show(hint="ctrl+r reconnects" if self.can_reconnect else "")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "reconnect":
            return self.can_reconnect  # False hides it from the footer while connected
        return True

    async def action_reconnect(self) -> None:
        """Connect again with a fresh client, resuming after the last message seen."""
        if not self.can_reconnect or self._params is None:
            return
        last_seen = self.client.last_seen if self.client is not None else 0
        params = dataclasses.replace(self._params, last_seen=last_seen or self._params.last_seen)
        self._set_closed(False)
        self._show_status(state=str(ConnectionState.CONNECTING), detail="")
        await self._start(params)

    async def action_quit(self) -> None:
        """Close the connection politely, then exit."""
        client = self.client
        if client is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(3):
                    await client.close()
        self.exit(return_code=0)

    # --- what the network worker reports -------------------------------------------------------

    @on(Welcomed)
    async def _welcomed_event(self, event: Welcomed) -> None:
        fresh = self.state.apply_welcome(event.welcome)
        unread = self.state.apply_conversations(event.welcome.conversations)
        self.limits = event.welcome.limits
        self._welcomed = True
        if self.main is None:
            self.main = MainScreen(self.state)
            self.connect_screen = None
            # Wait until the main screen is up: the messages after `welcome` go into its panes.
            await self.switch_screen(self.main)
            await self.main.ready.wait()
        else:
            self.main.welcomed()
        # Conversations come back: the ones with unread messages reopen (their history loads
        # as the panes are shown); the replay that follows is not counted twice.
        await self.main.restore(unread)
        self._show_status(state=str(ConnectionState.CONNECTED))
        for invitation in fresh:
            self._queue_invitation(invitation)
        self._show_next_invitation()

    def _show_status(self, **changes: Any) -> None:
        if self.main is None or self.client is None:
            return
        client = self.client
        tls = " ".join(part for part in (client.tls_version, client.cipher) if part)
        # The address in use now: with several, the one the client has failed over to.
        server = format_hostport(client.host, client.port)
        self.main.status.show(server=server, tls=tls, nick=self.state.me, **changes)

    @on(ConnectionStateChanged)
    def _connection_state(self, event: ConnectionStateChanged) -> None:
        if self.main is None:
            return
        self._set_closed(event.state == ConnectionState.CLOSED)
        detail = "" if event.state == ConnectionState.CONNECTED else explain_detail(event.detail)
        self._show_status(state=event.state, detail=detail, retry_in=event.retry_in)

    @on(MessageReceived)
    async def _message(self, event: MessageReceived) -> None:
        message = event.message
        if message.to.startswith("@"):
            # A DM partner stays listed while offline: we have a conversation.
            partner = self.state.conversation_of(message)[1:]
            self.state.note_user(message.from_, known=not self.state.is_me(message.from_))
            self.state.note_user(partner, known=True)
        else:
            self.state.note_user(message.from_)
        if self.main is not None:
            await self.main.deliver(message)

    @on(PresenceChanged)
    def _presence(self, event: PresenceChanged) -> None:
        self.state.set_online(event.nick, event.online, event.gone)
        if self.main is None:
            return
        if event.gone:
            self.main.user_gone(event.nick)
        else:
            self.main.presence_changed()

    @on(ReadElsewhere)
    def _read_elsewhere(self, event: ReadElsewhere) -> None:
        if self.main is not None:
            self.main.read_elsewhere(event.address, event.id)

    # --- alerts: bell and desktop notification -------------------------------------------------

    def alert(self, title: str, body: str) -> None:
        """A DM or a mention arrived where the user is not looking: bell and/or desktop note."""
        notes = self.settings.notifications
        if notes.bell:
            self.bell()
        if notes.desktop != "off":
            self.desktop_notify(title, body)

    def desktop_notify(self, title: str, body: str) -> None:
        """Ask the terminal for a desktop notification (OSC 9 or OSC 777, as configured)."""
        sequence = osc_notification(title, body, self.settings.notifications.desktop)
        if sequence and not self.is_headless and self._driver is not None:
            self._driver.write(sequence)

    @on(InvitationReceived)
    def _invited(self, event: InvitationReceived) -> None:
        if not self.state.add_invite(event.room, event.by, event.members):
            return
        self.bell()
        invitation = self.state.invites[fold(event.room)]
        self._queue_invitation(invitation)
        self._show_next_invitation()
        if self.main is not None:
            self.main.refresh_sidebar()

    @on(RoomJoined)
    async def _joined(self, event: RoomJoined) -> None:
        self.state.join(event.room, event.members, event.public, event.owner, event.topic)
        self._forget_invitation(event.room)
        if self.main is not None:
            await self.main.open_conversation(room_address(event.room), activate=False)
            self.main.members_changed(event.room)

    @on(MembersChanged)
    def _members(self, event: MembersChanged) -> None:
        before = {fold(m) for m in self.state.members_of(event.room)}
        self.state.set_members(event.room, event.members, event.owner)
        if self.main is None:
            return
        self.main.members_changed(event.room)
        address = room_address(event.room)
        after = {fold(m): m for m in event.members}
        for key, nick in after.items():
            if key not in before and before and not self.state.is_me(nick):
                self.main.add_notice(address, f"{nick} joined")
        for key in before - after.keys():
            self.main.add_notice(address, f"{self.state.display_nick(key)} left")

    @on(InvitationDeclined)
    def _declined(self, event: InvitationDeclined) -> None:
        self.state.invitation_declined(event.room, event.nick)
        text = f"{event.nick} declined the invitation to #{event.room}"
        self.notify(text, markup=False)
        if self.main is not None:
            self.main.add_notice(room_address(event.room), text)

    @on(PublicRoomChanged)
    def _public_room(self, event: PublicRoomChanged) -> None:
        self.state.set_public(event.room, event.members)
        if self.main is not None:
            self.main.refresh_sidebar()

    @on(TopicChanged)
    def _topic(self, event: TopicChanged) -> None:
        self.state.set_topic(event.room, event.topic)
        if self.main is not None:
            self.main.topic_changed(event.room)
            text = (
                f"{event.by} set the topic: {event.topic}"
                if event.topic
                else (f"{event.by} cleared the topic")
            )
            self.main.add_notice(room_address(event.room), text)

    @on(RoomLeft)
    async def _left(self, event: RoomLeft) -> None:
        if not self.state.is_member(event.room):
            return
        self.state.leave(event.room)
        if self.main is not None:
            await self.main.close_conversation(room_address(event.room))
            self.main.refresh_sidebar()
        if event.by is not None and not self.state.is_me(event.by):
            reason = f": {event.reason}" if event.reason else ""
            self.notify(
                f"{event.by} removed you from #{event.room}{reason}",
                severity="warning",
                markup=False,
            )
        else:
            self.notify(f"You left #{event.room}.", markup=False)

    @on(ServerSaidBye)
    def _bye(self, event: ServerSaidBye) -> None:
        reason = f": {event.reason}" if event.reason else ""
        self.notify(
            f"The server is closing{reason}. Reconnecting…", severity="warning", markup=False
        )

    @on(TypingReceived)
    def _typing(self, event: TypingReceived) -> None:
        if self.main is not None:
            self.main.typing_received(event.nick, event.address)

    @on(HistoryLoaded)
    def _history(self, event: HistoryLoaded) -> None:
        if self.main is not None:
            self.main.history_loaded(
                event.address,
                event.messages,
                event.more,
                event.failed,
                before=event.before,
                purpose=event.purpose,
            )

    @on(ConversationWanted)
    async def _conversation_wanted(self, event: ConversationWanted) -> None:
        if self.main is not None:
            await self.main.open_conversation(event.address, activate=event.activate)

    # --- invitations ---------------------------------------------------------------------------

    def _queue_invitation(self, invitation: Invitation) -> None:
        if all(fold(i.room) != fold(invitation.room) for i in self._invitations):
            self._invitations.append(invitation)

    def _forget_invitation(self, room: str) -> None:
        self.state.drop_invite(room)
        self._invitations = deque(i for i in self._invitations if fold(i.room) != fold(room))
        self._show_next_invitation()

    def _show_next_invitation(self) -> None:
        # Skip those answered meanwhile (from another session of ours, say).
        while self._invitations and fold(self._invitations[0].room) not in self.state.invites:
            self._invitations.popleft()
        if self.main is not None:
            self.main.show_invitation(self._invitations[0] if self._invitations else None)
            self.main.refresh_sidebar()

    def answer_invitation(self, room: str, answer: str) -> None:
        """Answer with `accept`, `decline` or `later` (hide the notification; it stays listed)."""
        if answer == "later":
            self._invitations = deque(i for i in self._invitations if fold(i.room) != fold(room))
            self._show_next_invitation()
            return
        client = self._client()

        async def accept() -> None:
            joined = await client.accept(room)
            self.post_message(RoomJoined.of(joined))
            self.post_message(ConversationWanted(room_address(joined.room)))

        async def decline() -> None:
            await client.decline(room)
            self._forget_invitation(room)
            if self.main is not None:
                self.main.refresh_sidebar()

        if answer == "accept":
            self._request(accept(), f"accept the invitation to #{room}", Context(room=room))
        else:
            self._request(decline(), f"decline the invitation to #{room}", Context(room=room))

    # --- requests (each in its own worker; failures become notifications) -----------------------

    def _client(self) -> ChatClientLike:
        if self.client is None:
            raise RuntimeError("not connected")
        return self.client

    def _request(
        self, work: Coroutine[Any, Any, None], name: str, context: Context | None = None
    ) -> None:
        """Run a request in its own worker; a failure becomes a notification in words.

        `name` completes "Could not ..."; `context` names what the request was about.
        """
        worker = self.run_worker(work, name=name, group="request", exit_on_error=False)
        self._contexts[worker] = context or Context(max_text=self.state.max_text)

    async def user_exists(self, nick: str) -> bool:
        """Ask the server whether `nick` is a user (online, or with an account).

        There is no request for that alone: a `history` of the DM answers `no_such_user` for
        nobody, and costs one small frame otherwise. Other failures propagate.
        """
        try:
            await self._client().history(dm_address(nick), limit=1)
        except protocol.RequestFailed as exc:
            if exc.code == "no_such_user":
                return False
            raise
        return True

    def request_mark_read(self, address: str, message_id: int) -> None:
        """Move our read marker of `address` to `message_id` (the newest message shown)."""
        client = self._client()

        async def mark() -> None:
            await client.mark_read(address, message_id)

        self._request(mark(), f"mark {address} read", Context())

    def request_send(self, to: str, text: str) -> None:
        client = self._client()
        if to.startswith("@") and self.state.is_gone(to[1:]) and not self.state.knows(to[1:]):
            # Not `no_such_user`: say what happened to them.
            text_gone = self.state.gone_sentence(to[1:])
            if self.main is not None and self.main.pane_for(to) is not None:
                self.main.add_notice(to, f"Not sent: {text_gone}")
            else:
                self.notify(f"Not sent: {text_gone}", severity="warning", markup=False)
            return

        async def send() -> None:
            await client.send_message(to, text)  # the echo arrives through events()

        context = Context(
            nick=to[1:] if to.startswith("@") else None,
            room=to[1:] if to.startswith("#") else None,
            max_text=self.state.max_text,
        )
        self._request(send(), f"send to {to}", context)

    def request_create(self, room: str, invite: Sequence[str] = (), public: bool = False) -> None:
        client = self._client()

        async def create() -> None:
            joined = await client.create_room(room, public=public, invite=tuple(invite))
            self.post_message(RoomJoined.of(joined))
            for nick in invite:
                self.state.note_invited(joined.room, nick)
            if self.main is not None:  # the invited show as pending in the member list
                self.main.members_changed(joined.room)
            self.post_message(ConversationWanted(room_address(joined.room)))

        self._request(create(), f"create #{room}", Context(room=room))

    def request_invite(self, room: str, nick: str) -> None:
        client = self._client()

        async def invite() -> None:
            await client.invite(room, nick)
            self.state.note_invited(room, nick)
            if self.main is not None:
                self.main.members_changed(room)
            self.notify(f"Invited {nick} to #{room}.", markup=False)

        self._request(invite(), f"invite {nick}", Context(nick=nick, room=room))

    def request_join(self, room: str) -> None:
        client = self._client()

        async def join() -> None:
            joined = await client.join(room)
            self.post_message(RoomJoined.of(joined))
            self.post_message(ConversationWanted(room_address(joined.room)))

        self._request(join(), f"join #{room}", Context(room=room))

    def request_leave(self, room: str) -> None:
        client = self._client()

        async def leave() -> None:
            left = await client.leave(room)
            self.post_message(RoomLeft(left.room))

        self._request(leave(), f"leave #{room}", Context(room=room))

    # --- files --------------------------------------------------------------------------------

    async def fetch_file(self, meta: protocol.FileMeta) -> Path:
        """A local, verified copy of a file (downloaded once, then from the cache)."""
        return await self.file_cache.fetch(self._client(), meta)

    @property
    def uploading(self) -> bool:
        return self._upload is not None and self._upload.is_running

    def request_upload(self, address: str, path: Path, text: str = "") -> None:
        """Send the file at `path` to `address`: checked, uploaded with progress, then sent.

        Failures are said in the conversation's pane, in words (too large, unreadable, not an
        image, interrupted, cancelled).
        """
        if self.uploading:
            self.notify(
                "A file is being sent already: wait for it, or cancel it.",
                severity="warning",
                markup=False,
            )
            return
        self._upload = self.run_worker(
            self._send_file(address, path, text),
            name=f"send {path.name}",
            group="upload",
            exit_on_error=False,
        )

    def cancel_upload(self) -> None:
        if self._upload is not None:
            self._upload.cancel()

    async def _send_file(self, address: str, path: Path, text: str) -> None:
        client = self._client()
        limit = self.limits.max_upload if self.limits is not None else None
        bar = self.main.upload_bar if self.main is not None else None
        try:
            size = await asyncio.to_thread(attachments.check_readable, path, limit)
        except (OSError, protocol.RequestFailed) as exc:
            self._file_problem(
                address, f"Not sent: {attachments.upload_failure(exc, path.name, limit)}."
            )
            return
        if bar is not None:
            bar.start(path.name, size, address)
        try:
            meta = await client.upload_file(path, progress=bar.advance if bar else None)
            with contextlib.suppress(OSError, ValueError):
                await self.file_cache.adopt(path, meta)
            await client.send_message(address, text, file=meta.id)
        except asyncio.CancelledError:
            self._file_problem(address, f"Sending {path.name} was cancelled: nothing was sent.")
            raise
        except Exception as exc:
            text = attachments.upload_failure(exc, path.name, limit)
            self._file_problem(address, f"Not sent: {text}. /file or ctrl+u to try again.")
        finally:
            if bar is not None:
                bar.finish()

    def _file_problem(self, address: str, text: str) -> None:
        """Say it in the pane of the conversation (and as a toast if that pane is not open)."""
        pane = self.main.pane_for(address) if self.main is not None else None
        if pane is not None and self.main is not None:
            self.main.add_notice(address, text)
        else:
            self.notify(text, severity="warning", markup=False)

    def request_topic(self, room: str, topic: str) -> None:
        client = self._client()

        async def set_topic() -> None:
            await client.set_topic(room, topic)  # the topic event arrives through events()

        self._request(set_topic(), f"topic of #{room}")

    def request_kick(self, room: str, nick: str, reason: str | None) -> None:
        client = self._client()

        async def kick() -> None:
            await client.kick(room, nick, reason)
            self.notify(f"Removed {nick} from #{room}.", markup=False)

        self._request(kick(), f"kick {nick}")

    def request_edit(self, message_id: int, text: str) -> None:
        client = self._client()

        async def edit() -> None:
            await client.edit(message_id, text)  # the entry arrives through events()

        self._request(edit(), "edit")

    def request_delete(self, message_id: int) -> None:
        client = self._client()

        async def delete() -> None:
            await client.delete(message_id)

        self._request(delete(), "delete")

    def request_typing(self, to: str) -> None:
        client = self._client()

        async def typing() -> None:
            with contextlib.suppress(protocol.ConnectionClosed):
                await client.typing(to)

        self._request(typing(), f"typing to {to}")

    async def search_messages(self, query: str, with_: str | None) -> protocol.SearchResult:
        """For the search screen (it shows failures itself)."""
        return await self._client().search(query, with_=with_, limit=50)

    def request_history(self, address: str, before: int | None, purpose: str = "older") -> None:
        """Load a page of `address` older than `before`; `purpose` goes back with the answer
        (see `HistoryLoaded`)."""
        client = self._client()

        async def load() -> None:
            try:
                history = await client.history(address, before=before)
            except BaseException:
                self.post_message(
                    HistoryLoaded(address, (), True, failed=True, before=before, purpose=purpose)
                )
                raise
            self.post_message(
                HistoryLoaded(
                    address, history.messages, history.more, before=before, purpose=purpose
                )
            )

        context = Context(
            nick=address[1:] if address.startswith("@") else None,
            room=address[1:] if address.startswith("#") else None,
        )
        self._request(load(), f"load the history of {address}", context)


def alt_digits_as_alt() -> None:
    """Let alt+1..9 reach the app as `alt+N` from terminals that send ESC + digit.

    Textual 8.2 maps ESC 1 .. ESC 0 to the characters macOS types with Option (`¡`, `™`, `£`...),
    so `alt+1` bindings never fire in xterm, tmux, gnome-terminal or over SSH. Without those
    entries the parser reads ESC + digit as alt + digit, as it does for letters. This touches
    a private table of Textual's; it is checked by tests/tui/test_units.py on upgrades.
    """
    from textual import _ansi_sequences

    table = cast("dict[str, object]", _ansi_sequences.ANSI_SEQUENCES_KEYS)  # a dict, typed Mapping
    for digit in "0123456789":
        table.pop(f"\x1b{digit}", None)


def guest_aware_client(
    params: ConnectParams, *, tokens: GuestTokens | None = None, **options: Any
) -> ChatClient:
    """A ChatClient for the connect screen's parameters. A guest (no password) sends the resume
    token kept on disk for this server and nick, and keeps each new one there (0600), so that
    restarting the TUI within the guest hold is the same guest again, with its groups. With
    several addresses, the token is kept under the first: the chat's name, whatever node."""
    guest = not params.password
    store = (tokens or GuestTokens()) if guest else None

    def keep(token: str) -> None:
        if store is not None:
            with contextlib.suppress(OSError):
                store.save(params.host, params.port, params.nick, token)

    resume = store.load(params.host, params.port, params.nick) if store is not None else None
    return ChatClient(
        params.host,
        params.port,
        params.nick,
        password=params.password,
        last_seen=params.last_seen,
        resume=resume,
        on_resume=keep,
        other_servers=params.other_servers,
        **options,
    )


def run_tui(
    *,
    servers: Sequence[Server] | None,
    nick: str | None,
    cafile: Path | None = None,
    password: str | None = None,
    settings: ClientSettings | None = None,
) -> int:
    """`tlschat tui`: run the app against a real server; the exit code for the shell.

    What the command line leaves out comes from the config file (`settings`): with neither,
    the connect screen asks.
    """
    from tlschat.client import Trust

    settings = settings or ClientSettings()
    servers = list(servers or settings.servers)
    host, port = servers[0] if servers else (None, None)
    others = servers[1:]
    nick = nick or settings.nick
    cafile = cafile or settings.cafile

    def factory(params: ConnectParams, ask: AskTrust) -> ChatClientLike:
        return guest_aware_client(params, trust=Trust(cafile=cafile, ask=ask))

    # textual-image asks the terminal what it can draw; only possible before Textual starts.
    terminal = images.detect()
    alt_digits_as_alt()
    app = ChatApp(
        client_factory=factory,
        host=host,
        port=port,
        nick=nick,
        password=password,
        other_servers=others,
        image_terminal=terminal,
        theme=settings.theme,
        settings=settings,
    )
    app.run()
    return app.return_code or 0
