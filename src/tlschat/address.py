"""Server addresses as people write them: `host:port`, `[::1]:port` or `host`, or a
comma-separated list of them (several nodes of one chat); no I/O, no click."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeAlias

DEFAULT_PORT = 7700

Server: TypeAlias = tuple[str, int]
"""One address: (host, port)."""


class AddressError(ValueError):
    """An address the user got wrong; the message says how (shown as it is)."""


def parse_hostport(value: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """`host:port`, `[::1]:port` or `host` (default port); raise AddressError otherwise."""
    text = value.strip()
    if "," in text:
        raise AddressError(f"{value!r}: one address only here, not a list")
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise AddressError(f"{value!r}: missing ']' in IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise AddressError(f"{value!r}: expected HOST:PORT")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        raise AddressError(f"{value!r}: write IPv6 addresses as [ADDR]:PORT")
    if not host:
        raise AddressError(f"{value!r}: missing host")
    if port_text == "":
        if text.endswith(":"):
            raise AddressError(f"{value!r}: missing port after ':'")
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise AddressError(f"{value!r}: port must be a number from 1 to 65535")
    return host, int(port_text)


def format_hostport(host: str, port: int) -> str:
    """The inverse: `[::1]:7700` for IPv6 hosts, `host:port` otherwise."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_servers(value: str, default_port: int = DEFAULT_PORT) -> list[Server]:
    """A comma-separated list of `parse_hostport` addresses, in the order given, the first of
    each duplicate kept; raise AddressError for an empty list, an empty entry or a bad address.

    The order matters: a client tries the addresses in turn, and the first one names the chat
    (guest tokens are kept under it).
    """
    entries = value.split(",")
    if not value.strip():
        raise AddressError("no server address given")
    servers: list[Server] = []
    seen: set[Server] = set()
    for number, entry in enumerate(entries, 1):
        if not entry.strip():
            raise AddressError(f"{value!r}: address number {number} of the list is empty")
        host, port = parse_hostport(entry, default_port)
        key = (host.lower(), port)  # host names are case-insensitive
        if key not in seen:
            seen.add(key)
            servers.append((host, port))
    return servers


def format_servers(servers: Iterable[Server]) -> str:
    """The inverse of `parse_servers`: `a:7700,b:7700`."""
    return ",".join(format_hostport(host, port) for host, port in servers)
