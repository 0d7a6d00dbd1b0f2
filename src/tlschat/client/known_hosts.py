"""The known-hosts file: pinned SHA-256 certificate fingerprints (trust on first use, as SSH)."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

import platformdirs

_FINGERPRINT = re.compile(r"[0-9A-F]{2}(:[0-9A-F]{2}){31}")
"""A SHA-256 fingerprint as tls.fingerprint() writes it: 32 uppercase hex pairs joined by ':'."""

_PREFIX = "SHA256:"


def default_path() -> Path:
    """`known_hosts` under the user's config directory (not created until something is stored)."""
    return platformdirs.user_config_path("tlschat") / "known_hosts"


def host_key(host: str, port: int) -> str:
    """The entry's key: `host:port`, host lower-cased, IPv6 addresses in brackets."""
    host = host.strip().lower()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def normalize_fingerprint(text: str) -> str | None:
    """`AB:CD:...` (optionally written `SHA256:ab:cd:...`), upper-cased; None if it is not one."""
    value = text.strip().upper()
    if value.startswith(_PREFIX):
        value = value[len(_PREFIX) :]
    return value if _FINGERPRINT.fullmatch(value) else None


class KnownHosts:
    """One known-hosts file. Each line is `host:port SHA256:AB:CD:...`; `#` starts a comment.

    Reads go to the disk every time (another client may have added an entry meanwhile). `add()`
    rewrites the whole file atomically (temporary file, fsync, rename), keeping comments and
    other entries, and creates the parent directories. Lines it cannot parse are kept as they
    are and otherwise ignored.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else default_path()

    def _lines(self) -> list[str]:
        try:
            return self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []

    @staticmethod
    def _parse(line: str) -> tuple[str, str] | None:
        text = line.strip()
        if not text or text.startswith("#"):
            return None
        parts = text.split()
        if len(parts) < 2:
            return None
        fingerprint = normalize_fingerprint(parts[1])
        if fingerprint is None:
            return None
        return parts[0].lower(), fingerprint

    def lookup(self, host: str, port: int) -> str | None:
        """The pinned fingerprint of `host:port`, or None if there is none.

        Raise OSError if the file exists but cannot be read.
        """
        key = host_key(host, port)
        for line in self._lines():
            entry = self._parse(line)
            if entry is not None and entry[0] == key:
                return entry[1]
        return None

    def add(self, host: str, port: int, fingerprint: str) -> None:
        """Pin `fingerprint` for `host:port`, replacing any old entry. Raise OSError, ValueError."""
        value = normalize_fingerprint(fingerprint)
        if value is None:
            raise ValueError(f"not a SHA-256 fingerprint: {fingerprint!r}")
        key = host_key(host, port)
        kept = [line for line in self._lines() if (self._parse(line) or ("", ""))[0] != key]
        kept.append(f"{key} {_PREFIX}{value}")
        self._write(kept)

    def remove(self, host: str, port: int) -> bool:
        """Forget `host:port`; True if there was an entry. Raise OSError."""
        key = host_key(host, port)
        lines = self._lines()
        kept = [line for line in lines if (self._parse(line) or ("", ""))[0] != key]
        if len(kept) == len(lines):
            return False
        self._write(kept)
        return True

    def _write(self, lines: list[str]) -> None:
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temp = tempfile.mkstemp(prefix=".known_hosts.", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write("".join(f"{line}\n" for line in lines))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
