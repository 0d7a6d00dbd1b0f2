"""Server addresses as people write them: `host:port`, `[::1]:port` or `host`; no I/O, no click."""

from __future__ import annotations

DEFAULT_PORT = 7700


class AddressError(ValueError):
    """An address the user got wrong; the message says how (shown as it is)."""


def parse_hostport(value: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """`host:port`, `[::1]:port` or `host` (default port); raise AddressError otherwise."""
    text = value.strip()
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
