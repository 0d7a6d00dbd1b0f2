"""PROTOCOL.md "Session": until `welcome` only `hello` is served; after it, `hello` is refused."""

from __future__ import annotations

import pytest

from tlschat.protocol import (
    CLIENT_TYPES,
    ErrorCode,
    ProtocolError,
    SessionState,
    check_allowed,
)

KEEPALIVE = {"ping", "pong"}
"""Keep-alive frames: PROTOCOL.md lets either side ping; the table may serve them before login."""

REQUESTS_NEEDING_LOGIN = sorted(CLIENT_TYPES - {"hello"} - KEEPALIVE)


def test_hello_is_served_before_login() -> None:
    check_allowed(SessionState.AWAIT_HELLO, "hello")


@pytest.mark.parametrize("kind", REQUESTS_NEEDING_LOGIN)
def test_other_requests_before_login_are_not_logged_in(kind: str) -> None:
    with pytest.raises(ProtocolError) as info:
        check_allowed(SessionState.AWAIT_HELLO, kind)
    assert info.value.code == ErrorCode.NOT_LOGGED_IN


def test_the_table_covers_every_request() -> None:
    needing_login = {
        "send", "history", "create", "invite", "accept", "decline", "join", "leave",
        "rooms", "users", "upload", "chunk", "download",
    }  # fmt: skip
    assert needing_login <= set(REQUESTS_NEEDING_LOGIN)


def test_hello_after_login_is_refused() -> None:
    with pytest.raises(ProtocolError) as info:
        check_allowed(SessionState.ACTIVE, "hello")
    assert info.value.code == ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("kind", sorted(CLIENT_TYPES - {"hello"}))
def test_everything_else_is_served_after_login(kind: str) -> None:
    check_allowed(SessionState.ACTIVE, kind)
