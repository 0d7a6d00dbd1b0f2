"""Server addresses (tlschat.address): what `tui`, `send`, `tail`, the connect screen and the
client config file accept."""

from __future__ import annotations

import pytest

from tlschat.address import AddressError, format_hostport, parse_hostport


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("chat.example.org:7800", ("chat.example.org", 7800)),
        ("chat.example.org", ("chat.example.org", 7700)),
        ("[::1]:7801", ("::1", 7801)),
        ("[::1]", ("::1", 7700)),
        (" 127.0.0.1:1 ", ("127.0.0.1", 1)),
    ],
)
def test_good_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(text) == expected
    host, port = expected
    assert parse_hostport(format_hostport(host, port)) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("host:", "missing port"),
        (":7700", "missing host"),
        ("::1:7700", "IPv6"),
        ("[::1", "missing ']'"),
        ("[::1]x", "HOST:PORT"),
        ("host:0", "1 to 65535"),
        ("host:http", "1 to 65535"),
    ],
)
def test_bad_addresses_say_why(text: str, says: str) -> None:
    with pytest.raises(AddressError, match=says):
        parse_hostport(text)
