"""The client library's edit, delete, typing and search against a real server over TLS."""

from __future__ import annotations

import pytest
from tests.integration.test_client import ClientFactory, connected, make_client

from tlschat.protocol import Message, RequestFailed, SearchResult, TypingEvent

__all__ = ["make_client"]  # the fixture, used by name


async def test_edit_and_delete_return_their_entries_and_reach_events(
    make_client: ClientFactory,
) -> None:
    alice, alice_events = await connected(make_client, "alice")
    _bob, bob_events = await connected(make_client, "bob")
    sent = await alice.send_message("@bob", "helo")
    edited = await alice.edit(sent.id, "hello")
    assert (edited.edit_of, edited.text, edited.to) == (sent.id, "hello", "@bob")
    got = await bob_events.wait_message("hello")
    assert got.edit_of == sent.id
    gone = await alice.delete(sent.id)
    assert gone.delete_of == sent.id
    index = await bob_events.index(lambda e: isinstance(e, Message) and e.delete_of == sent.id)
    assert bob_events.items[index] == gone.model_copy(update={"ref": None})
    # the asking client sees each entry once in events() too
    await alice_events.index(lambda e: isinstance(e, Message) and e.delete_of == sent.id)
    assert [m.id for m in alice_events.messages()] == [sent.id, edited.id, gone.id]
    with pytest.raises(RequestFailed) as info:
        await alice.edit(sent.id, "again")
    assert info.value.code == "no_such_message"


async def test_typing_reaches_the_other_party_as_an_event(make_client: ClientFactory) -> None:
    alice, _ = await connected(make_client, "alice")
    _bob, bob_events = await connected(make_client, "bob")
    await alice.typing("@bob")
    index = await bob_events.index(lambda e: isinstance(e, TypingEvent))
    event = bob_events.items[index]
    assert isinstance(event, TypingEvent)
    assert (event.from_, event.to) == ("alice", "@bob")


async def test_search(make_client: ClientFactory) -> None:
    alice, _ = await connected(make_client, "alice")
    await connected(make_client, "bob")
    first = await alice.send_message("@bob", "deploy at noon")
    await alice.send_message("@alice", "deploy notes")
    result = await alice.search("DEPLO")
    assert isinstance(result, SearchResult)
    assert [m.text for m in result.messages] == ["deploy notes", "deploy at noon"]
    only = await alice.search("deploy", with_="@bob", limit=1)
    assert [m.id for m in only.messages] == [first.id]
    assert only.more is False
    with pytest.raises(RequestFailed) as info:
        await alice.search("!!!")
    assert info.value.code == "bad_request"
