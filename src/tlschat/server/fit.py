"""Cut replies down to `max_frame`: PROTOCOL.md bounds the server's frames too. No I/O."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from tlschat.protocol import (
    Frame,
    History,
    Rooms,
    SearchResult,
    UserInfo,
    Users,
    Welcome,
    encode_payload,
)

F = TypeVar("F", bound=Frame)


def fits(frame: Frame, max_frame: int) -> bool:
    return len(encode_payload(frame)) <= max_frame


def cut_list(frame: F, field: str, max_frame: int, *, keep_tail: bool = False) -> F:
    """`frame` with as many items of the tuple `field` as fit (the first ones, or the last).

    One encode of the whole frame and one of each item: the frame shrinks by an item's size
    plus its comma, so no re-encoding while cutting (a history reply can be megabytes).
    """
    size = len(encode_payload(frame))
    if size <= max_frame:
        return frame
    items: tuple[Frame, ...] = getattr(frame, field)
    sizes = [len(encode_payload(item)) + 1 for item in items]
    count = len(items)
    while count and size > max_frame:
        size -= sizes[len(items) - count] if keep_tail else sizes[count - 1]
        count -= 1

    def with_count(n: int) -> F:
        kept = items[len(items) - n :] if keep_tail else items[:n]
        return frame.model_copy(update={field: kept})

    cut = with_count(count)
    while count and not fits(cut, max_frame):  # the last comma is not one item's: check
        count -= 1
        cut = with_count(count)
    return cut


def fit_history(reply: History, max_frame: int) -> History:
    """Fewer messages, the newest kept, with `more: true` (PROTOCOL.md "Frames")."""
    cut = cut_list(reply, "messages", max_frame, keep_tail=True)
    if len(cut.messages) < len(reply.messages):
        cut = cut.model_copy(update={"more": True})
    return cut


def fit_search(reply: SearchResult, max_frame: int) -> SearchResult:
    """Fewer messages, the newest kept (they come first), with `more: true`."""
    cut = cut_list(reply, "messages", max_frame)
    if len(cut.messages) < len(reply.messages):
        cut = cut.model_copy(update={"more": True})
    return cut


def _by_relevance(users: Iterable[UserInfo], relevant: set[str]) -> tuple[UserInfo, ...]:
    """The people you share a conversation with first, then whoever else is online."""
    return tuple(sorted(users, key=lambda u: (u.nick.lower() not in relevant, not u.online)))


def fit_users(reply: Users, max_frame: int, relevant: set[str]) -> Users:
    if fits(reply, max_frame):
        return reply
    ordered = reply.model_copy(update={"users": _by_relevance(reply.users, relevant)})
    return cut_list(ordered, "users", max_frame)


def fit_rooms(reply: Rooms, max_frame: int) -> Rooms:
    """The public listing gives way first: your own rooms are what a client cannot do without."""
    return cut_list(cut_list(reply, "public_rooms", max_frame), "rooms", max_frame)


def fit_welcome(welcome: Welcome, max_frame: int, relevant: set[str]) -> Welcome:
    """Other online users give way first, then the public listing, then the rest of `users`;
    `rooms` and `invites` are cut only if nothing else is left. `users` and `rooms` requests
    fetch the lists again later."""
    if fits(welcome, max_frame):
        return welcome
    ordered = welcome.model_copy(update={"users": _by_relevance(welcome.users, relevant)})
    mine = tuple(u for u in ordered.users if u.nick.lower() in relevant)
    trimmed = ordered.model_copy(update={"users": mine})
    if fits(trimmed, max_frame):
        return cut_list(ordered, "users", max_frame)
    trimmed = cut_list(trimmed, "public_rooms", max_frame)
    trimmed = cut_list(trimmed, "conversations", max_frame)  # `conversations` fetches them all
    trimmed = cut_list(trimmed, "users", max_frame)
    trimmed = cut_list(trimmed, "invites", max_frame)
    return cut_list(trimmed, "rooms", max_frame)


# --- the users everyone online shares, spliced in pre-encoded ---------------------------------

_MORE = UserInfo(nick="\x00more", online=True)
"""Stands where the other online users go; never sent (a nick cannot hold NUL)."""
_MORE_JSON = encode_payload(_MORE)

WithUsers = TypeVar("WithUsers", Welcome, Users)


def encode_with_online(
    frame: WithUsers, fit: Callable[[WithUsers, int], WithUsers], online: Iterable[bytes],
    max_frame: int,
) -> bytes:  # fmt: skip
    """The payload of `frame` (whose `users` are the people that matter to the user) with as
    many of `online` (other online users' `users` entries, already encoded) as fit in
    `max_frame`. `fit` first cuts `frame` itself to leave room for them.

    The online users are encoded once, when they come online (the hub keeps them), so a login
    costs no encoding of everyone online: at most `max_frame` bytes are joined.
    """
    fitted: WithUsers = fit(frame, max_frame - len(_MORE_JSON) - 1)
    body = encode_payload(fitted.model_copy(update={"users": (*fitted.users, _MORE)}))
    marker = (b"," if fitted.users else b"") + _MORE_JSON
    budget = max_frame - (len(body) - len(marker))
    parts: list[bytes] = []
    for entry in online:
        budget -= len(entry) + 1
        if budget < 0:
            break
        parts.append(entry)
    spliced = b",".join(parts)
    if spliced and fitted.users:
        spliced = b"," + spliced
    return body.replace(marker, spliced, 1)
