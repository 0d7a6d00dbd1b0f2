"""The asyncio client library shared by the TUI and the headless commands; no textual."""

from tlschat.client.backoff import Backoff
from tlschat.client.connection import (
    ChatClient,
    ConnectionState,
    Event,
    StateChanged,
    Trust,
    TrustError,
)
from tlschat.client.known_hosts import KnownHosts

__all__ = [
    "Backoff",
    "ChatClient",
    "ConnectionState",
    "Event",
    "KnownHosts",
    "StateChanged",
    "Trust",
    "TrustError",
]
