"""Garbage collection of stored files (server/files.py `collect_garbage`), over real TLS."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.integration.helpers_rules import Dialer, assert_error, drain_all
from tests.integration.test_files import PASSWORD, download, noise, stored_files, uploaded
from tests.wire import Wire

TTL = 0.1
"""`unsent_file_ttl` of these tests: each sleeps past it before collecting."""


def blob_path(server: Any, sha256: str) -> Path:
    return Path(server.data_dir) / "files" / sha256[:2] / sha256[2:]


async def past_ttl() -> None:
    await asyncio.sleep(TTL * 3)


async def collect(server: Any) -> tuple[int, int]:
    result: tuple[int, int] = await server.files.collect_garbage()
    return result


async def assert_gone(wire: Wire, file_id: str) -> None:
    reply = await download(wire, file_id)
    assert isinstance(reply, dict), "the file downloaded"
    assert_error(reply, "no_such_file")


async def send_file(wire: Wire, to: str, file_id: str) -> None:
    echo = await wire.request({"type": "send", "to": to, "text": "here", "file": file_id})
    assert echo["type"] == "message", echo


async def test_unsent_upload_is_removed_after_the_ttl(start_server: Any, dial: Dialer) -> None:
    server = await start_server(unsent_file_ttl=TTL)
    alice = await dial.open(server, "alice", PASSWORD)
    data = noise(5000, seed=1)
    meta = await uploaded(alice, data)
    assert blob_path(server, meta["sha256"]).is_file()

    await past_ttl()
    assert await collect(server) == (1, 1)

    await assert_gone(alice, meta["id"])
    assert not blob_path(server, meta["sha256"]).exists()
    assert stored_files(server) == []
    # The same bytes can be uploaded again, and are stored again.
    again = await uploaded(alice, data)
    assert await download(alice, again["id"]) == data


async def test_unsent_upload_is_kept_within_the_ttl(start_server: Any, dial: Dialer) -> None:
    server = await start_server()  # the default grace period: a day
    alice = await dial.open(server, "alice", PASSWORD)
    data = noise(3000, seed=2)
    meta = await uploaded(alice, data)

    assert await collect(server) == (0, 0)

    assert await download(alice, meta["id"]) == data


async def test_sent_file_survives(start_server: Any, dial: Dialer) -> None:
    server = await start_server(unsent_file_ttl=TTL)
    alice = await dial.open(server, "alice", PASSWORD)
    bob = await dial.open(server, "bob", PASSWORD)
    data = noise(4000, seed=3)
    meta = await uploaded(alice, data)
    await send_file(alice, "@bob", meta["id"])
    await drain_all(alice, bob)

    await past_ttl()
    assert await collect(server) == (0, 0)

    assert await download(bob, meta["id"]) == data
    assert await download(alice, meta["id"]) == data
    assert blob_path(server, meta["sha256"]).is_file()


async def test_shared_blob_stays_while_a_sent_upload_names_it(
    start_server: Any, dial: Dialer
) -> None:
    server = await start_server(unsent_file_ttl=TTL)
    alice = await dial.open(server, "alice", PASSWORD)
    bob = await dial.open(server, "bob", PASSWORD)
    data = noise(6000, seed=4)
    sent = await uploaded(alice, data, "sent.bin")
    unsent = await uploaded(alice, data, "unsent.bin")
    assert sent["id"] != unsent["id"]
    assert sent["sha256"] == unsent["sha256"]
    await send_file(alice, "@bob", sent["id"])
    await drain_all(alice, bob)

    await past_ttl()
    assert await collect(server) == (1, 0)

    assert blob_path(server, sent["sha256"]).is_file()
    await assert_gone(alice, unsent["id"])
    assert await download(alice, sent["id"]) == data
    assert await download(bob, sent["id"]) == data


async def test_file_of_a_deleted_room_is_removed(start_server: Any, dial: Dialer) -> None:
    server = await start_server(unsent_file_ttl=TTL)
    alice = await dial.open(server, "alice", PASSWORD)
    bob = await dial.open(server, "bob", PASSWORD)
    only_room = noise(2000, seed=5)
    also_dm = noise(2500, seed=6)
    await alice.request({"type": "create", "room": "crew"})
    room_meta = await uploaded(alice, only_room, "room.bin")
    dm_meta = await uploaded(alice, also_dm, "dm.bin")
    await send_file(alice, "#crew", room_meta["id"])
    await send_file(alice, "#crew", dm_meta["id"])
    await send_file(alice, "@bob", dm_meta["id"])
    left = await alice.request({"type": "leave", "room": "crew"})
    assert left["type"] == "left", left
    # Frames of one connection are served in order: once this is answered the room is gone.
    await alice.request({"type": "rooms"})
    await drain_all(alice, bob)

    await past_ttl()
    assert await collect(server) == (1, 1)

    await assert_gone(alice, room_meta["id"])
    assert not blob_path(server, room_meta["sha256"]).exists()
    # A DM still carries the other file: it stays, for both.
    assert await download(alice, dm_meta["id"]) == also_dm
    assert await download(bob, dm_meta["id"]) == also_dm
    assert stored_files(server) == [blob_path(server, dm_meta["sha256"])]


async def test_file_being_sent_is_not_collected(start_server: Any, dial: Dialer) -> None:
    """The rules check a file (`meta_for_send`), then store the message, then call
    `send_done`: a collection in between must not take the file from under the send."""
    server = await start_server(unsent_file_ttl=TTL)
    alice = await dial.open(server, "alice", PASSWORD)
    meta = await uploaded(alice, noise(1000, seed=7))
    files = server.files
    user = server.hub.online("alice")
    await past_ttl()

    await files.meta_for_send(user, meta["id"])  # a send has begun
    assert await collect(server) == (0, 0)
    files.send_done(meta["id"])  # ... and failed to store its message: the file is unsent
    assert await collect(server) == (1, 1)


async def test_collection_runs_at_start(start_server: Any, dial: Dialer) -> None:
    server = await start_server(unsent_file_ttl=TTL)
    alice = await dial.open(server, "alice", PASSWORD)
    await uploaded(alice, noise(1000, seed=8))
    await server.close()
    await past_ttl()
    assert stored_files(server) != []

    server = await start_server(unsent_file_ttl=TTL)
    for _ in range(100):  # the start-up collection runs in the background: wait for it
        if not stored_files(server):
            break
        await asyncio.sleep(0.05)
    assert stored_files(server) == []
