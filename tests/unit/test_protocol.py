"""PROTOCOL.md "Frames", "Requests and replies", "Names" and "Messages" rules on the sans-I/O core.

No sockets: the decoder is fed bytes in every split, frames are round-tripped through
`encode` / `decode_*`, and each bad-frame class is checked for its exact `error.code`.
"""

from __future__ import annotations

import json
import re
import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlschat import protocol as p
from tlschat.protocol import (
    HEADER,
    ErrorCode,
    FrameDecoder,
    FrameTooLarge,
    InvalidFrame,
    decode_client_frame,
    decode_payload,
    decode_server_frame,
    encode,
    encode_payload,
    has_forbidden_controls,
    is_valid_name,
    name_key,
)

# --- independent oracles (written from PROTOCOL.md, not from protocol.py) -------------------

FORBIDDEN_CODEPOINTS = [
    *range(0x00, 0x09),  # C0 before tab
    *range(0x0B, 0x20),  # C0 after newline
    0x7F,  # DEL
    *range(0x80, 0xA0),  # C1
]
FORBIDDEN_CHARS = "".join(chr(c) for c in FORBIDDEN_CODEPOINTS)
NAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,31}"
NAME_FIRST = string.ascii_letters + string.digits + "_"
NAME_REST = NAME_FIRST + ".-"

PROTOCOL_ERROR_CODES = {
    "bad_frame", "frame_too_large", "bad_request", "unknown_type", "not_logged_in",
    "version_unsupported", "nick_invalid", "nick_taken", "auth_required", "auth_failed",
    "no_such_user", "no_such_room", "room_exists", "room_invalid", "not_member", "already_member",
    "no_invite", "text_too_long", "too_large", "bad_file", "hash_mismatch", "no_such_file",
    "no_such_message", "forbidden", "banned", "registration_closed", "unavailable", "rate_limited",
    "internal",
}  # fmt: skip

CLIENT_TYPES = {
    "hello", "ping", "pong", "send", "history", "create", "invite", "accept", "decline", "join",
    "leave", "rooms", "users", "upload", "chunk", "download", "conversations", "read",
    "topic", "kick", "ban", "unban", "register", "edit", "delete", "typing", "search",
}  # fmt: skip
SERVER_TYPES = {
    "welcome", "error", "ok", "ping", "pong", "presence", "message", "history", "joined",
    "invited", "members", "declined", "room", "left", "rooms", "users", "upload_ready",
    "uploaded", "file_data", "bye", "conversations", "read", "topic", "search", "typing",
}  # fmt: skip


def frame(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def client_error(payload: bytes) -> InvalidFrame:
    with pytest.raises(InvalidFrame) as info:
        decode_client_frame(payload)
    return info.value


# --- strategies -------------------------------------------------------------------------------

CHARS = st.characters(exclude_categories=("Cs",), exclude_characters=FORBIDDEN_CHARS)
TEXT = st.text(CHARS, max_size=60)
NAMES = st.from_regex(NAME_PATTERN, fullmatch=True)
NICK_ADDR = NAMES.map(lambda n: "@" + n)
ROOM_ADDR = NAMES.map(lambda n: "#" + n)
ADDRESS = NICK_ADDR | ROOM_ADDR
REF = st.none() | st.text(CHARS, max_size=64)
INT = st.integers(min_value=-(2**53), max_value=2**53)
NONNEG = st.integers(min_value=0, max_value=2**53)
REQUEST_ID = st.integers(min_value=0, max_value=2**53 - 1)
POS = st.integers(min_value=1, max_value=2**53)
ID = st.integers(min_value=0, max_value=2**53 - 1)
HEX64 = st.text("0123456789abcdefABCDEF", min_size=64, max_size=64)
NAMES_TUPLE = st.lists(NAMES, max_size=5).map(tuple)


def opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


CLIENT_FRAMES: dict[str, st.SearchStrategy[Any]] = {
    "hello": st.builds(
        p.Hello, ref=REF, v=INT, nick=TEXT, password=opt(TEXT),
        client=opt(st.text(CHARS, max_size=200)), last_seen=opt(REQUEST_ID),
        resume=opt(st.text(CHARS, max_size=64)),
    ),
    "ping": st.builds(p.Ping, ref=REF),
    "pong": st.builds(p.Pong, ref=REF),
    "send": st.builds(p.Send, ref=REF, to=ADDRESS, text=TEXT, file=opt(TEXT)),
    "history": st.builds(
        p.HistoryRequest, ref=REF, with_=ADDRESS, before=opt(REQUEST_ID),
        limit=st.integers(min_value=1, max_value=200),
    ),
    "create": st.builds(
        p.Create, ref=REF, room=NAMES, public=st.booleans(), topic=TEXT, invite=NAMES_TUPLE
    ),
    "invite": st.builds(p.Invite, ref=REF, room=NAMES, nick=NAMES),
    "accept": st.builds(p.Accept, ref=REF, room=NAMES),
    "decline": st.builds(p.Decline, ref=REF, room=NAMES),
    "join": st.builds(p.Join, ref=REF, room=NAMES),
    "leave": st.builds(p.Leave, ref=REF, room=NAMES),
    "rooms": st.builds(p.RoomsRequest, ref=REF),
    "users": st.builds(p.UsersRequest, ref=REF),
    "upload": st.builds(
        p.Upload, ref=REF, name=st.text(CHARS, min_size=1, max_size=255), size=NONNEG, sha256=HEX64
    ),
    "chunk": st.builds(p.Chunk, ref=REF, upload=TEXT, seq=NONNEG, data=TEXT),
    "download": st.builds(p.Download, ref=REF, file=TEXT),
    "conversations": st.builds(p.ConversationsRequest, ref=REF),
    "read": st.builds(p.ReadRequest, ref=REF, with_=ADDRESS, id=REQUEST_ID),
    "topic": st.builds(p.TopicRequest, ref=REF, room=NAMES, topic=TEXT),
    "kick": st.builds(p.Kick, ref=REF, room=NAMES, nick=NAMES, reason=opt(TEXT)),
    "ban": st.builds(p.Ban, ref=REF, nick=NAMES, reason=opt(TEXT)),
    "unban": st.builds(p.Unban, ref=REF, nick=NAMES),
    "register": st.builds(p.Register, ref=REF, nick=NAMES, password=TEXT),
    "edit": st.builds(p.Edit, ref=REF, id=ID, text=TEXT),
    "delete": st.builds(p.Delete, ref=REF, id=ID),
    "typing": st.builds(p.Typing, ref=REF, to=ADDRESS),
    "search": st.builds(
        p.SearchRequest, ref=REF, query=st.text(CHARS, min_size=1, max_size=200),
        with_=opt(ADDRESS), before=opt(ID), limit=st.integers(min_value=1, max_value=50),
    ),
}  # fmt: skip

FILE_META = st.builds(
    p.FileMeta, id=TEXT, name=TEXT, size=NONNEG, mime=TEXT, sha256=HEX64,
    width=opt(NONNEG), height=opt(NONNEG),
)  # fmt: skip
USER_INFO = st.builds(p.UserInfo, nick=NAMES, online=st.booleans())
CONVERSATION_INFO = st.builds(
    p.ConversationInfo, with_=ADDRESS, last_id=NONNEG, read=NONNEG, unread=NONNEG
)
ROOM_INFO = st.builds(
    p.RoomInfo, room=NAMES, members=NAMES_TUPLE, public=st.booleans(), owner=opt(NAMES),
    topic=TEXT,
)  # fmt: skip
PUBLIC_ROOM_INFO = st.builds(p.PublicRoomInfo, room=NAMES, members=NONNEG, topic=TEXT)
INVITE_INFO = st.builds(p.InviteInfo, room=NAMES, by=NAMES)
MESSAGE = st.builds(
    p.Message, ref=REF, id=POS, ts=st.just("2026-11-26T12:00:00.123Z") | TEXT,
    from_=NAMES, to=ADDRESS, text=TEXT, file=opt(FILE_META), edit_of=opt(POS),
    delete_of=opt(POS), edited=opt(TEXT), deleted=opt(st.booleans()),
)  # fmt: skip


def tuples(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.lists(strategy, max_size=4).map(tuple)


SERVER_FRAMES: dict[str, st.SearchStrategy[Any]] = {
    "welcome": st.builds(
        p.Welcome, ref=REF, v=INT, nick=NAMES, server=TEXT,
        limits=st.builds(
            p.Limits, max_frame=NONNEG, max_text=NONNEG, max_upload=NONNEG, chunk=NONNEG
        ),
        users=tuples(USER_INFO), rooms=tuples(ROOM_INFO), public_rooms=tuples(PUBLIC_ROOM_INFO),
        invites=tuples(INVITE_INFO), conversations=tuples(CONVERSATION_INFO), last_id=NONNEG,
        resume=opt(st.text(CHARS, min_size=1, max_size=64)), admin=st.booleans(),
    ),
    "error": st.builds(
        p.Error, ref=REF, code=st.sampled_from(sorted(PROTOCOL_ERROR_CODES)), message=TEXT,
        retry_after_ms=opt(NONNEG),
    ),
    "ok": st.builds(p.Ok, ref=REF),
    "ping": st.builds(p.ServerPing, ref=REF),
    "pong": st.builds(p.ServerPong, ref=REF),
    "presence": st.builds(
        p.Presence, ref=REF, nick=NAMES, online=st.booleans(), gone=opt(st.booleans())
    ),
    "message": MESSAGE,
    "history": st.builds(
        p.History, ref=REF, with_=ADDRESS, messages=tuples(MESSAGE), more=st.booleans()
    ),
    "joined": st.builds(
        p.Joined, ref=REF, room=NAMES, members=NAMES_TUPLE, public=st.booleans(),
        owner=opt(NAMES), topic=TEXT,
    ),
    "invited": st.builds(p.Invited, ref=REF, room=NAMES, by=NAMES, members=NAMES_TUPLE),
    "members": st.builds(p.Members, ref=REF, room=NAMES, members=NAMES_TUPLE, owner=opt(NAMES)),
    "declined": st.builds(p.Declined, ref=REF, room=NAMES, nick=NAMES),
    "room": st.builds(
        p.RoomEvent, ref=REF, room=NAMES, public=st.booleans(), members=NONNEG, topic=TEXT
    ),
    "left": st.builds(p.Left, ref=REF, room=NAMES, by=opt(NAMES), reason=opt(TEXT)),
    "topic": st.builds(p.TopicEvent, ref=REF, room=NAMES, topic=TEXT, by=NAMES),
    "rooms": st.builds(
        p.Rooms, ref=REF, rooms=tuples(ROOM_INFO), public_rooms=tuples(PUBLIC_ROOM_INFO)
    ),
    "users": st.builds(p.Users, ref=REF, users=tuples(USER_INFO)),
    "upload_ready": st.builds(p.UploadReady, ref=REF, upload=TEXT, chunk=NONNEG),
    "uploaded": st.builds(p.Uploaded, ref=REF, file=FILE_META),
    "file_data": st.builds(
        p.FileData, ref=REF, file=TEXT, seq=NONNEG, data=TEXT, last=st.booleans(),
        meta=st.none() | FILE_META,
    ),
    "bye": st.builds(p.Bye, ref=REF, reason=TEXT),
    "conversations": st.builds(p.Conversations, ref=REF, conversations=tuples(CONVERSATION_INFO)),
    "read": st.builds(p.Read, ref=REF, with_=ADDRESS, id=NONNEG),
    "search": st.builds(
        p.SearchResult, ref=REF, query=TEXT, messages=tuples(MESSAGE), more=st.booleans()
    ),
    "typing": st.builds(p.TypingEvent, ref=REF, from_=NAMES, to=ADDRESS),
}  # fmt: skip


# --- error codes and frame types --------------------------------------------------------------


def test_error_codes_are_exactly_the_protocols() -> None:
    assert {code.value for code in ErrorCode} == PROTOCOL_ERROR_CODES


def test_every_frame_type_has_a_strategy() -> None:
    assert set(p.CLIENT_TYPES) == CLIENT_TYPES == set(CLIENT_FRAMES)
    assert set(p.SERVER_TYPES) == SERVER_TYPES == set(SERVER_FRAMES)


# --- encoding ---------------------------------------------------------------------------------


def test_encode_prefixes_a_big_endian_uint32_length() -> None:
    data = encode(p.Ping(ref="x"))
    body = data[4:]
    assert data[:4] == len(body).to_bytes(4, "big")
    assert json.loads(body) == {"type": "ping", "ref": "x"}


def test_encode_uses_wire_names_and_leaves_out_absent_optionals() -> None:
    msg = p.Message(id=7, ts="2026-11-26T12:00:00.123Z", from_="alice", to="@bob", text="hé")
    assert json.loads(encode_payload(msg)) == {
        "type": "message", "id": 7, "ts": "2026-11-26T12:00:00.123Z", "from": "alice",
        "to": "@bob", "text": "hé",
    }  # fmt: skip
    hist = p.HistoryRequest(with_="#room")
    assert json.loads(encode_payload(hist))["with"] == "#room"
    encode_payload(msg).decode("utf-8")  # the payload is UTF-8


# --- the decoder: any split, same payloads ----------------------------------------------------

PAYLOADS = st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=8)


def stream_of(payloads: list[bytes]) -> bytes:
    return b"".join(HEADER.pack(len(x)) + x for x in payloads)


@given(payloads=PAYLOADS)
def test_decoder_one_byte_at_a_time(payloads: list[bytes]) -> None:
    decoder = FrameDecoder(max_frame=1024)
    out: list[bytes] = []
    for byte in stream_of(payloads):
        out.extend(decoder.payloads(bytes([byte])))
    assert out == payloads
    assert not decoder.pending_body()


@given(payloads=PAYLOADS, data=st.data())
def test_decoder_random_splits(payloads: list[bytes], data: st.DataObject) -> None:
    stream = stream_of(payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    decoder = FrameDecoder(max_frame=1024)
    out: list[bytes] = []
    for piece in pieces:
        out.extend(decoder.payloads(piece))
    assert out == payloads


def test_decoder_all_at_once_then_nothing_pending() -> None:
    decoder = FrameDecoder()
    assert list(decoder.payloads(stream_of([b"a", b"bc", b"def"]))) == [b"a", b"bc", b"def"]
    assert decoder.next_payload() is None
    assert not decoder.pending_body()


def test_decoder_pending_body_while_a_body_is_missing() -> None:
    decoder = FrameDecoder()
    assert list(decoder.payloads(HEADER.pack(5) + b"ab")) == []
    assert decoder.pending_body()
    assert list(decoder.payloads(b"cde")) == [b"abcde"]
    assert not decoder.pending_body()


@pytest.mark.parametrize("length", [1025, 2**16, 2**32 - 1])
def test_oversize_length_refused_from_the_length_bytes_alone(length: int) -> None:
    decoder = FrameDecoder(max_frame=1024)
    header = HEADER.pack(length)
    for byte in header[:3]:
        decoder.feed(bytes([byte]))
        assert decoder.next_payload() is None
    decoder.feed(header[3:])  # the fourth length byte, and no body at all
    with pytest.raises(FrameTooLarge) as info:
        decoder.next_payload()
    assert info.value.code == ErrorCode.FRAME_TOO_LARGE


def test_length_equal_to_max_frame_is_accepted() -> None:
    decoder = FrameDecoder(max_frame=1024)
    body = b"x" * 1024
    assert list(decoder.payloads(HEADER.pack(1024))) == []
    assert list(decoder.payloads(body)) == [body]


def test_length_zero_is_bad_frame_and_untrusted() -> None:
    decoder = FrameDecoder(max_frame=1024)
    decoder.feed(HEADER.pack(0))
    with pytest.raises(FrameTooLarge) as info:  # FrameTooLarge: the stream cannot be trusted
        decoder.next_payload()
    assert info.value.code == ErrorCode.BAD_FRAME


def test_oversize_after_good_frames_still_yields_the_good_ones_first() -> None:
    decoder = FrameDecoder(max_frame=1024)
    decoder.feed(stream_of([b"ok"]) + HEADER.pack(5000))
    assert decoder.next_payload() == b"ok"
    with pytest.raises(FrameTooLarge):
        decoder.next_payload()


# --- round trip: decode(encode(f)) == f for every frame type ----------------------------------


def _payload_via_decoder(data: bytes) -> bytes:
    decoder = FrameDecoder(max_frame=len(data) + 16)
    (payload,) = list(decoder.payloads(data))
    return payload


@pytest.mark.parametrize("kind", sorted(CLIENT_TYPES))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_client_frame_round_trip(kind: str, data: st.DataObject) -> None:
    original = data.draw(CLIENT_FRAMES[kind])
    obj, decoded = decode_client_frame(_payload_via_decoder(encode(original)))
    assert decoded == original
    assert type(decoded) is type(original)
    assert obj["type"] == kind


@pytest.mark.parametrize("kind", sorted(SERVER_TYPES))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_server_frame_round_trip(kind: str, data: st.DataObject) -> None:
    original = data.draw(SERVER_FRAMES[kind])
    decoded = decode_server_frame(_payload_via_decoder(encode(original)))
    assert decoded == original
    assert type(decoded) is type(original)


# --- bad frames: bad_frame -------------------------------------------------------------------

BAD_FRAMES = {
    "not utf-8": b'{"type":"ping","x":"\xff"}',
    "lone surrogate bytes": b'{"type":"ping","x":"\xed\xa0\x80"}',
    "not json": b'{"type":"ping"',
    "garbage": b"hello",
    "array": b'[{"type":"ping"}]',
    "string": b'"ping"',
    "number": b"1",
    "null": b"null",
    "repeated member": b'{"type":"ping","type":"ping"}',
    "repeated ref": b'{"type":"ping","ref":"a","ref":"b"}',
    "repeated nested member": b'{"type":"ping","x":{"a":1,"a":2}}',
    "repeated member in array": b'{"type":"ping","x":[{"a":1,"a":1}]}',
    "NaN": b'{"type":"ping","x":NaN}',
    "Infinity": b'{"type":"ping","x":Infinity}',
    "-Infinity": b'{"type":"ping","x":-Infinity}',
    "nested NaN": b'{"type":"ping","x":[1,{"y":NaN}]}',
    "no type": b'{"ref":"a"}',
    "empty object": b"{}",
    "type number": b'{"type":1}',
    "type null": b'{"type":null}',
    "type array": b'{"type":["ping"]}',
    "type object": b'{"type":{"ping":1}}',
}


@pytest.mark.parametrize("payload", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_bad_frame(payload: bytes) -> None:
    with pytest.raises(InvalidFrame) as info:
        decode_payload(payload)
    assert info.value.code == ErrorCode.BAD_FRAME
    assert client_error(payload).code == ErrorCode.BAD_FRAME
    with pytest.raises(InvalidFrame) as info:
        decode_server_frame(payload)
    assert info.value.code == ErrorCode.BAD_FRAME


def test_deeply_nested_json_is_bad_frame_not_a_crash() -> None:
    payload = b'{"type":"ping","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert client_error(payload).code in {ErrorCode.BAD_FRAME}


def test_same_name_in_different_objects_is_not_a_repeat() -> None:
    obj, _ = decode_client_frame(b'{"type":"ping","x":{"a":1},"y":{"a":2}}')
    assert obj["x"] == {"a": 1}


# --- unknown type ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["nope", "", "PING", "welcome", "message"])
def test_unknown_client_type(kind: str) -> None:
    err = client_error(frame({"type": kind, "ref": "r1"}))
    assert err.code == ErrorCode.UNKNOWN_TYPE
    assert err.raw is not None
    assert p.ref_of(err.raw) == "r1"  # the error reply can carry the ref


def test_unknown_server_type() -> None:
    with pytest.raises(InvalidFrame) as info:
        decode_server_frame(frame({"type": "send", "to": "@a", "text": "x"}))
    assert info.value.code == ErrorCode.UNKNOWN_TYPE


# --- bad_request: naming the member ----------------------------------------------------------

BAD_REQUESTS: list[tuple[str, dict[str, Any], str]] = [
    ("missing text", {"type": "send", "to": "@bob"}, "text"),
    ("missing to", {"type": "send", "text": "hi"}, "to"),
    ("missing nick", {"type": "hello", "v": 1}, "nick"),
    ("missing v", {"type": "hello", "nick": "alice"}, "v"),
    ("missing room", {"type": "join"}, "room"),
    ("missing with", {"type": "history"}, "with"),
    ("to is int", {"type": "send", "to": 1, "text": "hi"}, "to"),
    ("text is null", {"type": "send", "to": "@bob", "text": None}, "text"),
    ("text is list", {"type": "send", "to": "@bob", "text": ["hi"]}, "text"),
    ("v is string", {"type": "hello", "v": "1", "nick": "alice"}, "v"),
    ("v is float", {"type": "hello", "v": 1.5, "nick": "alice"}, "v"),
    ("v is 1.0", {"type": "hello", "v": 1.0, "nick": "alice"}, "v"),
    ("v is true", {"type": "hello", "v": True, "nick": "alice"}, "v"),
    ("last_seen is string", {"type": "hello", "v": 1, "nick": "a", "last_seen": "3"}, "last_seen"),
    ("last_seen negative", {"type": "hello", "v": 1, "nick": "a", "last_seen": -1}, "last_seen"),
    ("limit 0", {"type": "history", "with": "@a", "limit": 0}, "limit"),
    ("limit 201", {"type": "history", "with": "@a", "limit": 201}, "limit"),
    ("limit string", {"type": "history", "with": "@a", "limit": "10"}, "limit"),
    ("limit true", {"type": "history", "with": "@a", "limit": True}, "limit"),
    ("limit 1.5", {"type": "history", "with": "@a", "limit": 1.5}, "limit"),
    ("before string", {"type": "history", "with": "@a", "before": "9"}, "before"),
    ("public is string", {"type": "create", "room": "r", "public": "yes"}, "public"),
    ("public is 1", {"type": "create", "room": "r", "public": 1}, "public"),
    ("invite is string", {"type": "create", "room": "r", "invite": "bob"}, "invite"),
    ("invite holds int", {"type": "create", "room": "r", "invite": ["bob", 3]}, "invite"),
    ("nick is int", {"type": "invite", "room": "r", "nick": 5}, "nick"),
    ("ref is int", {"type": "ping", "ref": 5}, "ref"),
    ("ref 65 chars", {"type": "ping", "ref": "x" * 65}, "ref"),
    ("ref 65 chars on send", {"type": "send", "to": "@a", "text": "x", "ref": "é" * 65}, "ref"),
    ("password is int", {"type": "hello", "v": 1, "nick": "a", "password": 1}, "password"),
    ("size is string", {"type": "upload", "name": "f", "size": "1", "sha256": "0" * 64}, "size"),
]


@pytest.mark.parametrize(
    ("obj", "member"), [(o, m) for _, o, m in BAD_REQUESTS], ids=[i for i, _, _ in BAD_REQUESTS]
)
def test_bad_request_names_the_member(obj: dict[str, Any], member: str) -> None:
    err = client_error(frame(obj))
    assert err.code == ErrorCode.BAD_REQUEST
    assert member in err.message
    assert len(err.message) < 500  # a human message, not a validation dump


def test_bad_request_keeps_the_raw_object_for_the_ref() -> None:
    err = client_error(frame({"type": "send", "to": "@bob", "ref": "abc"}))
    assert err.raw is not None
    assert p.ref_of(err.raw) == "abc"


def test_ref_of_ignores_unusable_refs() -> None:
    assert p.ref_of({"type": "ping", "ref": "x" * 65}) is None
    assert p.ref_of({"type": "ping", "ref": 3}) is None
    assert p.ref_of({"type": "ping"}) is None
    assert p.ref_of({"type": "ping", "ref": "x" * 64}) == "x" * 64


def test_ref_of_64_chars_is_accepted() -> None:
    _, decoded = decode_client_frame(frame({"type": "ping", "ref": "é" * 64}))
    assert decoded.ref == "é" * 64


@pytest.mark.parametrize("limit", [1, 50, 200])
def test_history_limit_in_range(limit: int) -> None:
    _, decoded = decode_client_frame(frame({"type": "history", "with": "@a", "limit": limit}))
    assert decoded.limit == limit


def test_history_limit_default_is_50() -> None:
    _, decoded = decode_client_frame(frame({"type": "history", "with": "#r"}))
    assert decoded.limit == 50
    assert decoded.before is None


def test_create_defaults_private_with_no_invites() -> None:
    _, decoded = decode_client_frame(frame({"type": "create", "room": "r"}))
    assert decoded.public is False
    assert tuple(decoded.invite) == ()


# --- extra members ignored -------------------------------------------------------------------


@pytest.mark.parametrize(
    "obj",
    [
        {"type": "ping", "future": 1},
        {"type": "send", "to": "@bob", "text": "hi", "color": "red", "nested": {"a": [1, 2]}},
        {"type": "hello", "v": 1, "nick": "alice", "x": None},
        {"type": "history", "with": "@a", "limit": 5, "zzz": True},
    ],
)
def test_extra_members_ignored(obj: dict[str, Any]) -> None:
    _, decoded = decode_client_frame(frame(obj))
    assert decoded.type == obj["type"]


def test_extra_members_ignored_on_server_frames() -> None:
    decoded = decode_server_frame(frame({"type": "bye", "reason": "x", "later": [1]}))
    assert decoded == p.Bye(reason="x")


# --- control characters in send.text ---------------------------------------------------------


@pytest.mark.parametrize(
    "cp", FORBIDDEN_CODEPOINTS, ids=[f"U+{c:04X}" for c in FORBIDDEN_CODEPOINTS]
)
def test_send_text_refuses_control_character(cp: int) -> None:
    err = client_error(frame({"type": "send", "to": "@bob", "text": f"a{chr(cp)}b"}))
    assert err.code == ErrorCode.BAD_REQUEST
    assert "text" in err.message
    assert has_forbidden_controls(chr(cp))


@pytest.mark.parametrize("text", ["a\nb", "\tindented", "line1\n\tline2\n", "", " ~\xa0é\u2028😀"])
def test_send_text_allows_newline_tab_and_printables(text: str) -> None:
    _, decoded = decode_client_frame(frame({"type": "send", "to": "@bob", "text": text}))
    assert decoded.text == text
    assert not has_forbidden_controls(text)


@given(text=st.text(st.characters(exclude_categories=("Cs",))))
def test_forbidden_controls_matches_the_rule(text: str) -> None:
    assert has_forbidden_controls(text) == any(ord(c) in FORBIDDEN_CODEPOINTS for c in text)


# --- names -----------------------------------------------------------------------------------

VALID_NAMES = [
    "a", "Z", "0", "_", "_a", "9lives", "alice", "Alice", "a.b", "a-b", "a_b", "a.", "a-",
    "x" * 32, "_" * 32, "A1-._z",
]  # fmt: skip
INVALID_NAMES = [
    "", "x" * 33, ".a", "-a", ".", "-", "a b", " a", "a ", "a@b", "@a", "#a", "a#", "é", "aé",
    "a\n", "\na", "a/b", "a:b", "a+b", "١", "ａ", "a\x00", "İ",
]  # fmt: skip


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_name(name: str) -> None:
    assert is_valid_name(name)


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_name(name: str) -> None:
    assert not is_valid_name(name)


def test_name_length_bounds() -> None:
    assert is_valid_name("a" * 32)
    assert not is_valid_name("a" * 33)
    assert is_valid_name("a")
    assert not is_valid_name("")


@pytest.mark.parametrize("first", [*NAME_FIRST])
def test_name_first_character_allowed(first: str) -> None:
    assert is_valid_name(first + "-.")


@pytest.mark.parametrize("first", [".", "-"])
def test_name_first_character_refused(first: str) -> None:
    assert not is_valid_name(first + "abc")


@given(name=st.text(st.characters(max_codepoint=0x2FF, exclude_categories=("Cs",)), max_size=40))
def test_is_valid_name_matches_the_rule(name: str) -> None:
    expected = (
        1 <= len(name) <= 32 and name[0] in NAME_FIRST and all(c in NAME_REST for c in name[1:])
    )
    assert is_valid_name(name) == expected


@given(name=NAMES)
def test_names_from_the_rule_are_valid(name: str) -> None:
    assert re.fullmatch(NAME_PATTERN, name)
    assert is_valid_name(name)


def test_name_key_case_insensitive() -> None:
    assert name_key("Alice") == name_key("alice") == name_key("ALICE") == name_key("aLiCe")
    assert name_key("alice") != name_key("alice_")
    assert name_key("a.b") != name_key("a-b")


@given(name=NAMES, data=st.data())
def test_name_key_ignores_case_only(name: str, data: st.DataObject) -> None:
    flips = data.draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    other = "".join(c.swapcase() if f else c for c, f in zip(name, flips, strict=True))
    assert name_key(other) == name_key(name)


@given(a=NAMES, b=NAMES)
def test_name_key_distinguishes_different_names(a: str, b: str) -> None:
    assert (name_key(a) == name_key(b)) == (a.lower() == b.lower())


@pytest.mark.parametrize(
    ("address", "expected"),
    [("@bob", ("@", "bob")), ("#Room.1", ("#", "Room.1")), ("@_", ("@", "_"))],
)
def test_parse_address(address: str, expected: tuple[str, str]) -> None:
    assert p.parse_address(address) == expected


@pytest.mark.parametrize("address", ["bob", "@", "#", "", "!bob", "@.bob", "#a b", "@" + "x" * 33])
def test_parse_address_refuses(address: str) -> None:
    with pytest.raises(ValueError, match="address"):
        p.parse_address(address)


# --- timestamps ------------------------------------------------------------------------------


def test_utc_timestamp_format() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    moment = datetime(2026, 11, 26, 13, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert p.utc_timestamp(moment) == "2026-11-26T12:00:00.123Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", p.utc_timestamp())
    assert p.utc_timestamp(datetime(2026, 1, 2, 3, 4, 5, 999, tzinfo=UTC)) == (
        "2026-01-02T03:04:05.000Z"
    )


# --- defaults from PROTOCOL.md ("Limits and abuse", "Session", "Frames") ---------------------


def test_server_defaults_match_the_protocol() -> None:
    from tlschat.config import ServerConfig

    config = ServerConfig()
    assert p.DEFAULT_MAX_FRAME == config.max_frame == 64 * 1024
    assert config.max_text == 4000
    assert config.max_upload == 10 * 1024 * 1024
    assert config.chunk == 32 * 1024
    assert (config.rate_burst, config.rate_per_sec) == (20, 5.0)
    assert config.upload_rate == 4 * 1024 * 1024
    assert config.max_queue == 256 * 1024
    assert (config.max_conns, config.max_per_ip, config.max_unauth) == (1024, 16, 256)
    assert config.max_unauth_per_ip == 8
    assert (config.max_login_failures, config.login_failure_window) == (3, 60.0)
    assert (config.max_nick_failures, config.max_registrations) == (20, 10)
    assert (config.max_pending_uploads, config.upload_idle_timeout) == (2, 60.0)
    assert (config.max_members, config.max_rooms_per_user) == (256, 100)
    assert config.invite_ttl == 7 * 24 * 3600
    assert config.handshake_timeout == 10.0
    assert config.login_timeout == 10.0
    assert config.frame_timeout == 10.0
    assert config.idle_timeout == 90.0
    assert config.tls_min == "1.3"
    assert config.require_password is False
    assert (p.HISTORY_DEFAULT_LIMIT, p.HISTORY_MAX_LIMIT, p.REPLAY_MAX, p.MAX_REF) == (
        50, 200, 1000, 64,
    )  # fmt: skip
    assert p.ALPN == "tlschat/1"
    assert p.PROTOCOL_VERSION == 1


@pytest.mark.parametrize("kind", ["edit", "delete"])
@pytest.mark.parametrize("bad", [-1, 2**53, 1.5, "7", True, None])
def test_edit_and_delete_ids_outside_0_to_2_53_are_bad_request(kind: str, bad: Any) -> None:
    obj: dict[str, Any] = {"type": kind, "id": bad, "text": "x"}
    assert client_error(frame(obj)).code == ErrorCode.BAD_REQUEST


def test_edit_id_bounds_are_inclusive() -> None:
    for good in (0, 2**53 - 1):
        _, f = decode_client_frame(frame({"type": "edit", "id": good, "text": "x"}))
        assert f.id == good  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "obj",
    [
        {"query": ""},
        {"query": "x" * 201},
        {"query": "x", "limit": 0},
        {"query": "x", "limit": 51},
        {"query": "x", "before": -1},
        {"query": "x", "before": 2**53},
        {"query": "x", "with": 5},
        {"query": 3},
    ],
)
def test_search_members_out_of_range_are_bad_request(obj: dict[str, Any]) -> None:
    assert client_error(frame({"type": "search", **obj})).code == ErrorCode.BAD_REQUEST


def test_search_defaults() -> None:
    _, f = decode_client_frame(frame({"type": "search", "query": "x" * 200}))
    assert isinstance(f, p.SearchRequest)
    assert (f.limit, f.before, f.with_) == (20, None, None)


def test_edit_text_with_control_characters_is_bad_request() -> None:
    assert client_error(frame({"type": "edit", "id": 1, "text": "a\x07"})).code == (
        ErrorCode.BAD_REQUEST
    )
