"""Error codes in words (tlschat.client.errors_text): every code has a sentence, none shows a code."""

from __future__ import annotations

import pytest

from tlschat.client.errors_text import Context, explain, explain_detail, explain_failure
from tlschat.protocol import ConnectionClosed, ErrorCode, RequestFailed


@pytest.mark.parametrize("code", [c.value for c in ErrorCode])
def test_every_protocol_code_reads_as_a_sentence(code: str) -> None:
    text = explain(code, Context(nick="bob", room="team", max_text=4000), message="x")
    assert code not in text
    assert text.endswith(".")
    assert text[0].isupper() or text.startswith("bob")


def test_sentences_name_what_the_request_was_about() -> None:
    assert explain("no_such_user", Context(nick="nobody")) == (
        "nobody is not online and has no account."
    )
    assert "#team" in explain("room_exists", Context(room="team"))
    assert "4000" in explain("text_too_long", Context(max_text=4000))
    assert explain("rate_limited", retry_after_ms=2500) == (
        "Too fast: the server asks you to wait 2 seconds."
    )
    assert explain("bad_request", message="'to' is missing") == (
        "The server refused the request: 'to' is missing."
    )
    assert explain("some_future_code", message="Try later.") == "The server refused: Try later."


def test_failures_other_than_server_errors() -> None:
    assert explain_failure(RequestFailed("auth_failed", "no")) == "Wrong password for this nick."
    assert explain_failure(TimeoutError()) == "The server did not answer in time."
    assert "Not connected" in explain_failure(ConnectionClosed("gone"))
    assert explain_failure(ConnectionRefusedError(111, "Connection refused")) == (
        "Connection refused"
    )


def test_connection_details_in_words() -> None:
    assert explain_detail("nick_taken: nick in use") == (
        "That nick is in use right now. Pick another one."
    )
    assert explain_detail("connection lost: reset") == "connection lost: reset"
    assert explain_detail("127.0.0.1:7700") == "127.0.0.1:7700"
