"""File problems in words: file-specific wording from attachments, the rest from errors_text."""

from __future__ import annotations

from tlschat.client.attachments import download_failure, upload_failure
from tlschat.client.errors_text import explain
from tlschat.protocol import ConnectionClosed, RequestFailed


def test_file_specific_codes_name_the_file() -> None:
    assert "cat.png" in upload_failure(RequestFailed("bad_file", "x"), "cat.png")
    assert "1.0 KiB" in upload_failure(RequestFailed("too_large", "x"), "cat.png", 1024)
    assert "may not download cat.png" in download_failure(
        RequestFailed("no_such_file", "x"), "cat.png"
    )
    lost = ConnectionClosed("gone")
    assert "interrupted" in upload_failure(lost, "cat.png")
    assert "interrupted" in download_failure(lost, "cat.png")


def test_other_codes_read_as_errors_text_says_never_the_bare_code() -> None:
    for code in ("forbidden", "unavailable", "internal", "not_member"):
        text = upload_failure(RequestFailed(code, "x"), "cat.png")
        assert code not in text
        shared = explain(code).rstrip(".")
        assert text == f"cat.png: {shared[0].lower()}{shared[1:]}"
    assert "forbidden" not in download_failure(RequestFailed("forbidden", "x"), "cat.png")
