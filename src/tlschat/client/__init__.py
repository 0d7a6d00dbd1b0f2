"""The asyncio client library shared by the TUI and the headless commands; no textual."""

from tlschat.client.backoff import Backoff
from tlschat.client.connection import (
    ChatClient,
    ConnectionState,
    Event,
    StateChanged,
    Trust,
    TrustError,
    UnverifiableDownload,
)
from tlschat.client.known_hosts import KnownHosts
from tlschat.client.server_list import NoServerAnswered

__all__ = [
    "Backoff",
    "ChatClient",
    "ConnectionState",
    "Event",
    "KnownHosts",
    "NoServerAnswered",
    "StateChanged",
    "Trust",
    "TrustError",
    "UnverifiableDownload",
]
