"""Guests' resume tokens kept on disk, per server and nick, so that a guest who restarts its
client (the TUI, a `tail` bot) within its hold is the same guest again (PROTOCOL.md "Session"
→ Guests). The file is the user's alone (0600): a token is as good as the guest's identity."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import platformdirs

from tlschat.protocol import name_key


def default_path() -> Path:
    return platformdirs.user_state_path("tlschat") / "guest_tokens.json"


class GuestTokens:
    """`load()` / `save()` the latest token of (host, port, nick). Blocking file I/O: small and
    rare (once per login); callers on an event loop may run it in a thread."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()

    @staticmethod
    def _key(host: str, port: int, nick: str) -> str:
        return f"{host.lower()}:{port} {name_key(nick)}"

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def load(self, host: str, port: int, nick: str) -> str | None:
        return self._read().get(self._key(host, port, nick))

    def save(self, host: str, port: int, nick: str, token: str) -> None:
        tokens = self._read()
        tokens[self._key(host, port, nick)] = token
        self._write(tokens)

    def forget(self, host: str, port: int, nick: str) -> None:
        tokens = self._read()
        if tokens.pop(self._key(host, port, nick), None) is not None:
            with contextlib.suppress(OSError):
                self._write(tokens)

    def _write(self, tokens: dict[str, str]) -> None:
        """Atomically, created 0600 (never readable by others, not even for a moment)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp = self.path.with_suffix(".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(tokens, fh, indent=1, sort_keys=True)
        os.replace(temp, self.path)
