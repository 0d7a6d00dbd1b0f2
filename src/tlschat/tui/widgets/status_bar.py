"""The status line: connection state, server, TLS version and cipher, and our nick."""

from __future__ import annotations

import time

from textual.content import Content
from textual.timer import Timer
from textual.widgets import Static


class StatusBar(Static):
    """One line at the top of the main screen. Set it with `show()`; it counts down reconnects."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.state = "connecting"
        """A `ConnectionState` value."""
        self.detail = ""
        self.server = ""
        self.tls = ""
        self.nick = ""
        self.hint = ""
        """What the user can do about the state (`ctrl+r reconnects`), shown after it."""
        self._retry_at: float | None = None
        self._timer: Timer | None = None

    def on_mount(self) -> None:
        self._redraw()

    def show(
        self,
        *,
        state: str | None = None,
        detail: str | None = None,
        retry_in: float | None = None,
        server: str | None = None,
        tls: str | None = None,
        nick: str | None = None,
        hint: str | None = None,
    ) -> None:
        """Update what changed (None leaves a field as it is)."""
        if state is not None:
            self.state = state
            self._retry_at = time.monotonic() + retry_in if retry_in is not None else None
            self.set_class(state == "connected", "-connected")
            self.set_class(state in ("reconnecting", "connecting", "disconnected"), "-degraded")
            self.set_class(state == "closed", "-closed")
        if detail is not None:
            self.detail = detail
        if server is not None:
            self.server = server
        if tls is not None:
            self.tls = tls
        if nick is not None:
            self.nick = nick
        if hint is not None:
            self.hint = hint
        if self._retry_at is not None and self._timer is None and self.is_mounted:
            self._timer = self.set_interval(1.0, self._redraw)
        self._redraw()

    def state_text(self) -> str:
        """`connected`, `reconnecting in 3s`, `closed`..."""
        if self.state == "reconnecting":
            if self._retry_at is None:
                return "reconnecting…"
            left = max(0, round(self._retry_at - time.monotonic()))
            return f"reconnecting in {left}s" if left else "reconnecting…"
        if self.state == "connecting":
            return "connecting…"
        return self.state

    def _redraw(self) -> None:
        if self._retry_at is None and self._timer is not None:
            self._timer.stop()
            self._timer = None
        dot = "●" if self.state == "connected" else "○" if self.state == "closed" else "◌"
        width = self.size.width or 200
        # What does not fit goes, least useful first: the cipher, then the server, then TLS.
        tls_parts = self.tls.split()
        for drop in range(4):
            tls = " ".join(tls_parts[:1]) if drop >= 1 else self.tls
            server = "" if drop >= 2 else self.server
            tls = "" if drop >= 3 else tls
            parts: list[Content | str | tuple[str, str]] = [(f" {dot} {self.state_text()}", "bold")]
            if self.detail and self.state != "connected":
                parts.append((f" ({self.detail})", ""))
            if self.hint:
                parts += [" · ", (self.hint, "bold")]
            if server:
                parts += ["  ", (server, "")]
            if tls:
                parts += ["  ", (tls, "")]
            if self.nick:
                parts += ["  as ", (self.nick, "bold")]
            content = Content.assemble(*parts)
            if content.cell_length <= width:
                break
        self.update(content)

    def on_resize(self) -> None:
        self._redraw()
