"""The connect screen: server, nick and password; `hello` errors are shown in place, with a retry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Center, Vertical
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Static

from tlschat.address import AddressError, Server, format_servers, parse_servers
from tlschat.protocol import is_valid_name

GUEST_HINT = "No password: a guest; your nick is kept after you leave (10 minutes by default)."
"""What a guest is (PROTOCOL.md "Session" -> Guests: the hold, 600 s by default)."""


@dataclass(frozen=True)
class ConnectParams:
    """Where to connect and as whom."""

    host: str
    """The first address: the chat's name (guest tokens are kept under it)."""
    port: int
    nick: str
    password: str | None = None
    last_seen: int | None = None
    """Resume after this message id (set when reconnecting after the client closed)."""
    other_servers: tuple[Server, ...] = ()
    """More addresses of the same chat (its other nodes), tried after the first in turn."""

    @property
    def servers(self) -> tuple[Server, ...]:
        return ((self.host, self.port), *self.other_servers)

    @property
    def address(self) -> str:
        """`host:port`, or the comma-separated list when there are several."""
        return format_servers(self.servers)


class ConnectScreen(Screen[None]):
    """Fill in the server and the nick; Enter in the last field (or the button) connects."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "app.quit", "Quit", priority=True),
    ]

    class Submitted(Message):
        """The user asked to connect with these parameters."""

        def __init__(self, params: ConnectParams) -> None:
            super().__init__()
            self.params = params

    def __init__(
        self, *, address: str = "", nick: str = "", password: str = "", error: str = ""
    ) -> None:
        super().__init__()
        self.initial_address = address
        self.initial_nick = nick
        self.initial_password = password
        self.initial_error = error

    def compose(self) -> ComposeResult:
        with Center(), Vertical(id="connect-box"):
            yield Static("tlschat", id="connect-title")
            yield Label("Server (host:port)", classes="connect-label")
            yield Input(
                self.initial_address, placeholder="chat.example.org:7700", id="connect-address"
            )
            yield Label("Nick", classes="connect-label")
            yield Input(
                self.initial_nick, placeholder="your nick", id="connect-nick", max_length=32
            )
            yield Label("Password", classes="connect-label")
            yield Input(self.initial_password, password=True, id="connect-password")
            yield Static(GUEST_HINT, id="connect-guest-hint", classes="connect-label")
            yield Static("", id="connect-error")
            # Compact (one row): with an error shown, everything still fits in 80×24.
            yield Button("Connect", id="connect-button", variant="primary", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        blink = getattr(self.app, "cursor_blink", True)
        for field in self.query(Input):
            field.cursor_blink = blink
        self.show_error(self.initial_error)
        empty = next(
            (f for f in self.query(Input) if not f.value and f.id != "connect-password"), None
        )
        (empty or self.query_one("#connect-password", Input)).focus()

    # --- what the App tells us -----------------------------------------------------------------

    def show_error(self, text: str) -> None:
        """Show why connecting failed (empty: clear it) and let the user try again."""
        error = self.query_one("#connect-error", Static)
        error.update(Content(text))
        error.set_class(bool(text), "-visible")
        self.set_busy(False)

    def set_busy(self, busy: bool, address: str = "") -> None:
        """While connecting: say so and block a second attempt."""
        button = self.query_one("#connect-button", Button)
        button.disabled = busy
        button.label = Content(f"Connecting to {address}…" if busy and address else "Connect")

    # --- input ---------------------------------------------------------------------------------

    @on(Input.Submitted)
    def _next_field(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "connect-address":
            self.query_one("#connect-nick", Input).focus()
        elif (
            event.input.id == "connect-nick"
            and not self.query_one("#connect-password", Input).value
        ):
            self.submit()
        else:
            self.submit()

    @on(Button.Pressed, "#connect-button")
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.submit()

    def submit(self) -> None:
        """Check the fields and post `Submitted`, or show what is wrong."""
        address = self.query_one("#connect-address", Input).value.strip()
        nick = self.query_one("#connect-nick", Input).value.strip()
        password = self.query_one("#connect-password", Input).value
        if not address:
            self._invalid("Enter the server as host:port.", "#connect-address")
            return
        try:
            (host, port), *others = parse_servers(address)
        except AddressError as exc:
            self._invalid(str(exc), "#connect-address")
            return
        if not is_valid_name(nick):
            self._invalid(
                "A nick is 1-32 of A-Z a-z 0-9 _ - . and starts with a letter, digit or _.",
                "#connect-nick",
            )
            return
        params = ConnectParams(host, port, nick, password or None, other_servers=tuple(others))
        self.show_error("")
        self.set_busy(True, params.address)
        self.post_message(self.Submitted(params))

    def _invalid(self, text: str, field: str) -> None:
        self.show_error(text)
        self.query_one(field, Input).focus()
