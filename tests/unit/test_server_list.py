"""ServerList (tlschat.client.server_list): the order a client tries a chat's addresses in."""

from __future__ import annotations

import pytest

from tlschat.client.server_list import NoServerAnswered, ServerList


def test_advance_wraps_round_and_restart_goes_back_to_the_first() -> None:
    servers = ServerList([("a", 1), ("b", 2), ("c", 3)])
    assert servers.current == servers.first == ("a", 1)
    assert [servers.advance() for _ in range(4)] == [("b", 2), ("c", 3), ("a", 1), ("b", 2)]
    assert servers.first == ("a", 1)
    assert servers.restart() == ("a", 1)


def test_one_address_stays_itself() -> None:
    servers = ServerList([("a", 1)])
    assert servers.advance() == servers.current == ("a", 1)
    assert len(servers) == 1


def test_duplicates_are_dropped_and_an_empty_list_refused() -> None:
    assert ServerList([("a", 1), ("A", 1), ("a", 2)]).servers == (("a", 1), ("a", 2))
    with pytest.raises(ValueError, match="at least one"):
        ServerList([])


def test_no_server_answered_names_each_address() -> None:
    error = NoServerAnswered([(("a", 1), "Connection refused"), (("::1", 2), "timed out")])
    assert isinstance(error, OSError)
    assert str(error) == "no address answered (a:1: Connection refused; [::1]:2: timed out)"
