"""PROTOCOL.md error codes in words a person understands: the one place, shared by every client.

The TUI shows these sentences; the headless commands print them after the code (programs read
the code, people read the sentence). No textual, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tlschat.protocol import ConnectionClosed, ErrorCode, RequestFailed

_CODE_DETAIL = re.compile(r"([a-z_]+): (.*)", re.S)
_CODES = frozenset(code.value for code in ErrorCode)


@dataclass(frozen=True)
class Context:
    """What the failed request was about, so that the sentence can name it."""

    nick: str | None = None
    """The user concerned (`/msg bob`, `/invite bob`)."""
    room: str | None = None
    """The group concerned, without `#`."""
    max_text: int | None = None
    """The server's `limits.max_text`, when known."""


def _who(context: Context) -> str:
    return context.nick if context.nick else "that user"


def _room(context: Context) -> str:
    return f"#{context.room}" if context.room else "that group"


def _seconds(ms: int | None) -> str:
    if not ms or ms <= 0:
        return "a moment"
    seconds = max(1, round(ms / 1000))
    return "1 second" if seconds == 1 else f"{seconds} seconds"


def explain(
    code: str,
    context: Context | None = None,
    *,
    message: str = "",
    retry_after_ms: int | None = None,
) -> str:
    """One sentence for an `error` code (PROTOCOL.md "Requests and replies"), never the bare code.

    `message` is the server's own text, used only for codes whose meaning depends on it
    (`bad_request` names the member) or that this module does not know yet.
    """
    c = context or Context()
    limit = f" (at most {c.max_text} characters)" if c.max_text else ""
    sentences: dict[str, str] = {
        # sessions and logging in
        "nick_invalid": "A nick is 1-32 of A-Z a-z 0-9 _ - . and starts with a letter, digit or _.",
        "nick_taken": "That nick is in use right now. Pick another one.",
        "auth_required": "This nick is registered (or the server admits no guests): "
        "enter its password.",
        "auth_failed": "Wrong password for this nick.",
        "banned": "An administrator has barred this nick from the server.",
        "registration_closed": "The server does not take new accounts: ask an administrator "
        "for one.",
        "version_unsupported": "The server does not speak this version of the protocol.",
        "not_logged_in": "Not logged in yet: wait for the connection to finish.",
        # people and groups
        "no_such_user": f"{_who(c)} is not online and has no account.",
        "no_such_room": f"There is no group {_room(c)}, or it is private and you are not invited.",
        "room_exists": f"The name {_room(c)} is taken: pick another one.",
        "room_invalid": "A group name is 1-32 of A-Z a-z 0-9 _ - . and starts with a letter, "
        "digit or _.",
        "not_member": (
            f"{c.nick} is not a member of {_room(c)}."
            if c.nick
            else f"You are not a member of {_room(c)}."
        ),
        "already_member": f"{_who(c)} is already a member of {_room(c)}.",
        "no_invite": f"There is no pending invitation to {_room(c)} (it may have expired).",
        "forbidden": "You are not allowed to do that.",
        # messages and files
        "text_too_long": f"The text is too long{limit}: shorten it or split it in several.",
        "no_such_message": "That message no longer exists.",
        "too_large": "The file is larger than the server accepts.",
        "bad_file": "The file is not what its type says (a damaged image?).",
        "hash_mismatch": "The file changed or was damaged on the way: try again.",
        "no_such_file": "That file is not available to you.",
        # the link and the server
        "rate_limited": f"Too fast: the server asks you to wait {_seconds(retry_after_ms)}.",
        "unavailable": "The server cannot store anything right now; nothing was sent. "
        "Try again in a moment.",
        "internal": "Something went wrong in the server, not in what you did. Try again later.",
        "frame_too_large": "That was too large for the server to accept.",
        "bad_frame": "The server could not read what this client sent (a bug in the client).",
        "unknown_type": "The server does not know this request (it may be older than this client).",
    }
    if code == "bad_request":
        detail = message.strip().rstrip(".")
        return (
            f"The server refused the request: {detail}."
            if detail
            else ("The server refused the request as malformed.")
        )
    sentence = sentences.get(code)
    if sentence is not None:
        return sentence  # a nick keeps its case, even first in the sentence
    detail = message.strip().rstrip(".")
    return f"The server refused: {detail}." if detail else "The server refused the request."


def explain_failure(exc: BaseException, context: Context | None = None) -> str:
    """One sentence for any failure of a request: a server error, a timeout, a lost link."""
    if isinstance(exc, RequestFailed):
        return explain(exc.code, context, message=exc.message, retry_after_ms=exc.retry_after_ms)
    if isinstance(exc, TimeoutError):
        return "The server did not answer in time."
    if isinstance(exc, ConnectionClosed):
        return "Not connected to the server right now: try again once it reconnects."
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    text = str(exc)
    return text[:1].upper() + text[1:] if text else type(exc).__name__


def explain_detail(detail: str) -> str:
    """A connection state's detail (`"nick_taken: nick in use"`, as the client library reports
    a refused `hello`) in words; other details (`connection lost`) are returned as they are."""
    match = _CODE_DETAIL.fullmatch(detail.strip())
    if match is None or match.group(1) not in _CODES:
        return detail
    return explain(match.group(1), message=match.group(2))
