"""The addresses of one chat's nodes, in the order to try them, and the one in use; no I/O."""

from __future__ import annotations

from collections.abc import Sequence

from tlschat.address import Server, format_hostport


class ServerList:
    """Where a client may connect: every node of one chat, the first of them naming the chat.

    `connect()` walks them from the first; after a lost connection the client moves on to the
    next one (wrapping round), since the node it lost is the likeliest to be down still.
    """

    def __init__(self, servers: Sequence[Server]) -> None:
        unique: list[Server] = []
        seen: set[Server] = set()
        for host, port in servers:
            if (host.lower(), port) not in seen:  # host names are case-insensitive
                seen.add((host.lower(), port))
                unique.append((host, port))
        if not unique:
            raise ValueError("a client needs at least one server address")
        self.servers: tuple[Server, ...] = tuple(unique)
        self._index = 0

    def __len__(self) -> int:
        return len(self.servers)

    @property
    def first(self) -> Server:
        """The chat's name: guest tokens and the like are kept under it, whatever node serves."""
        return self.servers[0]

    @property
    def current(self) -> Server:
        """The address in use now (or tried last)."""
        return self.servers[self._index]

    def restart(self) -> Server:
        """Back to the first address (a fresh `connect()`); return it."""
        self._index = 0
        return self.current

    def advance(self) -> Server:
        """Move on to the next address, after the last one the first again; return it."""
        self._index = (self._index + 1) % len(self.servers)
        return self.current


class NoServerAnswered(OSError):
    """None of several addresses could be reached: each one's reason, in the order tried.

    An OSError, like the failure of a single address, so callers handle both alike.
    """

    def __init__(self, failures: Sequence[tuple[Server, str]]) -> None:
        self.failures = tuple(failures)
        reasons = "; ".join(f"{format_hostport(*server)}: {why}" for server, why in failures)
        super().__init__(None, f"no address answered ({reasons})")

    def __str__(self) -> str:
        return self.strerror or ""  # not OSError's "[Errno None] ..."
