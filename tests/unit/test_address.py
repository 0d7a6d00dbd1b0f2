"""Server addresses (tlschat.address): what `tui`, `send`, `tail`, the connect screen and the
client config file accept."""

from __future__ import annotations

import pytest

from tlschat.address import (
    AddressError,
    format_hostport,
    format_servers,
    parse_hostport,
    parse_servers,
)


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


# --- lists of addresses (several nodes of one chat) ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a.example:7700", [("a.example", 7700)]),
        ("a.example:7700,b.example:7701", [("a.example", 7700), ("b.example", 7701)]),
        (" a , [::1]:7801 ,b:1 ", [("a", 7700), ("::1", 7801), ("b", 1)]),
        # Duplicates are dropped (the first kept, host names compared without case).
        ("a:1,b:2,A:1,a:1", [("a", 1), ("b", 2)]),
        ("a,a:7700", [("a", 7700)]),
    ],
)
def test_good_lists_keep_their_order(text: str, expected: list[tuple[str, int]]) -> None:
    assert parse_servers(text) == expected
    assert parse_servers(format_servers(expected)) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "no server address"),
        ("  ", "no server address"),
        ("a:1,,b:2", "number 2 of the list is empty"),
        ("a:1,", "number 2 of the list is empty"),
        (",a:1", "number 1 of the list is empty"),
        ("a:1,b:0", "1 to 65535"),
        ("a:1,::1:7700", "IPv6"),
    ],
)
def test_bad_lists_say_why(text: str, says: str) -> None:
    with pytest.raises(AddressError, match=says):
        parse_servers(text)


def test_a_single_address_is_not_a_list() -> None:
    # `trust` and `forget` pin one certificate: a list there would be mistaken for IPv6.
    with pytest.raises(AddressError, match="one address only"):
        parse_hostport("a:1,b:2")
