"""Cutting replies to max_frame: what gives way first, and never a frame over the bound."""

from __future__ import annotations

from tlschat.protocol import (
    History,
    InviteInfo,
    Limits,
    Message,
    PublicRoomInfo,
    RoomInfo,
    Rooms,
    UserInfo,
    Users,
    Welcome,
    encode_payload,
)
from tlschat.server.fit import cut_list, fit_history, fit_rooms, fit_users, fit_welcome

LIMITS = Limits(max_frame=1024, max_text=4000, max_upload=1, chunk=1)


def size(frame: object) -> int:
    return len(encode_payload(frame))  # type: ignore[arg-type]


def messages(n: int, text: str = "x" * 50) -> tuple[Message, ...]:
    return tuple(
        Message(id=i, ts="2026-11-26T12:00:00.000Z", from_="a", to="@b", text=text)
        for i in range(1, n + 1)
    )


def test_a_frame_that_fits_is_untouched() -> None:
    reply = History(with_="@b", messages=messages(3))
    assert fit_history(reply, 64 * 1024) is reply


def test_history_keeps_the_newest_and_says_more() -> None:
    reply = History(with_="@b", messages=messages(100))
    cut = fit_history(reply, 2048)
    assert size(cut) <= 2048
    assert cut.more is True
    assert 0 < len(cut.messages) < 100
    assert cut.messages[-1].id == 100
    ids = [m.id for m in cut.messages]
    assert ids == list(range(101 - len(ids), 101))
    # As many as fit: one more would not.
    one_more = cut.model_copy(update={"messages": reply.messages[-len(ids) - 1 :]})
    assert size(one_more) > 2048


def test_cut_list_can_empty_a_list() -> None:
    reply = History(with_="@b", messages=messages(2, "y" * 3000))
    cut = cut_list(reply, "messages", 200)
    assert cut.messages == ()


def test_users_keep_the_relevant_ones_first() -> None:
    others = [UserInfo(nick=f"stranger{i:03d}", online=True) for i in range(200)]
    friends = [UserInfo(nick="Zed", online=False), UserInfo(nick="amy", online=True)]
    reply = Users(users=tuple(others + friends))
    cut = fit_users(reply, 1024, {"zed", "amy"})
    assert size(cut) <= 1024
    nicks = [u.nick for u in cut.users]
    assert nicks[:2] == ["amy", "Zed"]
    assert len(nicks) > 2


def test_rooms_give_up_the_public_listing_first() -> None:
    mine = tuple(RoomInfo(room=f"r{i}", members=("a", "b")) for i in range(5))
    public = tuple(PublicRoomInfo(room=f"pub{i:03d}", members=i) for i in range(300))
    cut = fit_rooms(Rooms(rooms=mine, public_rooms=public), 1024)
    assert size(cut) <= 1024
    assert cut.rooms == mine
    assert len(cut.public_rooms) < 300


def test_welcome_fits_and_keeps_rooms_and_relevant_users() -> None:
    users = tuple(UserInfo(nick=f"u{i:04d}", online=True) for i in range(500))
    welcome = Welcome(
        nick="me",
        server="tlschat/0",
        limits=LIMITS,
        users=(*users, UserInfo(nick="me", online=True), UserInfo(nick="pal", online=False)),
        rooms=(RoomInfo(room="team", members=("me", "pal")),),
        public_rooms=tuple(PublicRoomInfo(room=f"p{i}", members=1) for i in range(50)),
        invites=(InviteInfo(room="x", by="pal"),),
        ref="r1",
    )
    cut = fit_welcome(welcome, 2048, {"me", "pal"})
    assert size(cut) <= 2048
    assert cut.rooms == welcome.rooms
    assert cut.invites == welcome.invites
    assert cut.ref == "r1"
    assert {u.nick for u in cut.users[:2]} == {"me", "pal"}
