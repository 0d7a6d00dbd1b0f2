"""Trust on first use: the fingerprint question, and the loud refusal when a fingerprint changed."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Static


def format_fingerprint(fingerprint: str, per_line: int = 16) -> str:
    """`AB:CD:…` split into lines of `per_line` bytes, so it fits an 80-column terminal."""
    pairs = fingerprint.upper().split(":")
    return "\n".join(":".join(pairs[i : i + per_line]) for i in range(0, len(pairs), per_line))


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class TrustDialog(ModalScreen[bool]):
    """The server's certificate is not vouched for by a CA: show its SHA-256 fingerprint and ask."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "answer(False)", "Don't trust")]

    def __init__(self, host: str, port: int, fingerprint: str) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self.fingerprint = fingerprint

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="trust-dialog"):
            yield Static(
                Content(f"Unknown server {host_port(self.host, self.port)}"), classes="dialog-title"
            )
            yield Static(
                Content(
                    "Its certificate is not signed by a CA you trust. Check this SHA-256 "
                    "fingerprint with the server's operator (tlschat serve prints it):"
                ),
                classes="dialog-hint",
            )
            yield Static(Content(format_fingerprint(self.fingerprint)), id="trust-fingerprint")
            yield Static(
                Content("Trust it and remember it for this server?"), classes="dialog-hint"
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Trust", id="trust-yes", variant="warning")
                yield Button("Don't trust", id="trust-no")

    def on_mount(self) -> None:
        self.query_one("#trust-no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "trust-yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class HostChangedScreen(Screen[None]):
    """A pinned fingerprint no longer matches: refuse, loudly, as SSH does. Nothing is sent."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,enter", "quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        host: str,
        port: int,
        presented: str,
        known: str | None,
        known_hosts: Path | None = None,
    ) -> None:
        super().__init__()
        self.known_hosts = known_hosts
        self.host = host
        self.port = port
        self.presented = presented
        self.known = known

    def compose(self) -> ComposeResult:
        where = host_port(self.host, self.port)
        known_hosts = str(self.known_hosts) if self.known_hosts else "your tlschat known_hosts file"
        with VerticalScroll(id="changed-box"):
            yield Static(
                Content("@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@"),
                id="changed-banner",
            )
            yield Static(
                Content(
                    "IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n"
                    "Someone could be eavesdropping on you right now (man-in-the-middle "
                    f"attack), or the certificate of {where} was replaced. "
                    "tlschat did not connect and sent nothing."
                ),
                classes="changed-text",
            )
            yield Static(Content("Pinned SHA-256 fingerprint:"), classes="changed-label")
            yield Static(
                Content(format_fingerprint(self.known or "(unknown)")),
                classes="changed-fingerprint",
            )
            yield Static(Content("The server presents now:"), classes="changed-label")
            yield Static(Content(format_fingerprint(self.presented)), classes="changed-fingerprint")
            yield Static(
                Content(
                    f"If the change is legitimate (ask the operator), remove the line for "
                    f"{where} from {known_hosts} and connect again."
                ),
                classes="changed-text",
            )
            yield Button("Quit", id="changed-quit", variant="error", compact=True)

    def on_mount(self) -> None:
        self.query_one("#changed-quit", Button).focus()

    @on(Button.Pressed, "#changed-quit")
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_quit()

    def action_quit(self) -> None:
        self.app.exit(return_code=1)
