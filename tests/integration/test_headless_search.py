"""`tlschat search` and `tlschat tail` with edits and deletions, as subprocesses over real TLS."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.test_headless import (
    HOST,
    Tail,
    assert_one_clean_line,
    chat,
    env,
    tails,
    tlschat,
)

__all__ = ["chat", "env", "tails"]  # fixtures, used by name


async def test_search_prints_matches_newest_first(
    server: Any, cert_files: Any, chat: Any, env: dict[str, str]
) -> None:
    alice, _ = await chat("alice", password="pw-alice-123")
    await chat("bob")
    first = await alice.send_message("@bob", "deploy at noon")
    second = await alice.send_message("@alice", "deploy notes")
    await alice.edit(second.id, "deployment notes")
    await alice.send_message("@bob", "unrelated")
    await alice.close()
    env = {**env, "PW": "pw-alice-123"}
    address = f"{HOST}:{server.port}"
    ca = ("--cafile", str(cert_files.ca), "--password-env", "PW")
    code, out, err = await tlschat("search", address, "alice", "DEPLO", *ca, "--json", env=env)
    assert (code, err) == (0, "")
    frames = [json.loads(line) for line in out.splitlines()]
    assert [f["id"] for f in frames] == [second.id, first.id]
    assert frames[0]["text"] == "deployment notes"
    assert "edited" in frames[0]
    code, out, err = await tlschat("search", address, "alice", "deploy", "at", *ca, env=env)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("alice -> @bob: deploy at noon")
    code, out, _ = await tlschat(
        "search", address, "alice", "deploy", "--with", "@alice", *ca, env=env
    )
    assert code == 0
    assert out.splitlines()[0].endswith("alice -> @alice: deployment notes (edited)")
    code, out, err = await tlschat("search", address, "alice", "!!!", *ca, env=env)
    assert code == 6  # refused by the server (PRODUCT.md "Command line")
    assert out == ""
    assert "bad_request" in assert_one_clean_line(err)


async def test_tail_shows_edits_and_deletions(
    server: Any, cert_files: Any, chat: Any, env: dict[str, str], tails: list[Tail]
) -> None:
    bob, bob_events = await chat("bob")
    address = f"{HOST}:{server.port}"
    text_tail = await Tail.start(address, "alice", "--cafile", str(cert_files.ca), env=env)
    tails.append(text_tail)
    await bob_events.online("alice")
    json_tail = await Tail.start(
        address, "carol", "--json", "--cafile", str(cert_files.ca), env=env
    )
    tails.append(json_tail)
    await bob_events.online("carol")
    sent = await bob.send_message("@alice", "helo")
    edited = await bob.edit(sent.id, "hello")
    gone = await bob.delete(sent.id)
    assert (await text_tail.line()).endswith("bob -> @alice: helo")
    assert (await text_tail.line()).endswith(f"bob -> @alice: [edit of {sent.id}] hello")
    assert (await text_tail.line()).endswith(f"bob -> @alice: [deleted message {sent.id}]")
    to_carol = await bob.send_message("@carol", "hi carol")
    carol_edit = await bob.edit(to_carol.id, "hi Carol")
    await bob.delete(to_carol.id)
    frames = [json.loads(await json_tail.line()) for _ in range(3)]
    assert frames[1] == {
        "type": "message", "id": carol_edit.id, "ts": carol_edit.ts, "from": "bob",
        "to": "@carol", "text": "hi Carol", "edit_of": to_carol.id,
    }  # fmt: skip
    assert frames[2]["delete_of"] == to_carol.id
    assert frames[2]["text"] == ""
    assert edited.edit_of == gone.delete_of == sent.id
