"""The PROTOCOL.md contract: frames, their pydantic models, the decoder and the session table; no I/O."""

from __future__ import annotations

import json
import re
import struct
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

PROTOCOL_VERSION = 1
ALPN = "tlschat/1"
"""The only ALPN protocol a tlschat server accepts."""

HEADER = struct.Struct(">I")
"""A frame's length prefix: uint32, big endian."""

DEFAULT_MAX_FRAME = 64 * 1024
MAX_REF = 64
HISTORY_DEFAULT_LIMIT = 50
HISTORY_MAX_LIMIT = 200
REPLAY_MAX = 1000
SEARCH_DEFAULT_LIMIT = 20
SEARCH_MAX_LIMIT = 50
SEARCH_MAX_QUERY = 200


class ErrorCode(StrEnum):
    """Every `error.code` PROTOCOL.md defines."""

    BAD_FRAME = "bad_frame"
    FRAME_TOO_LARGE = "frame_too_large"
    BAD_REQUEST = "bad_request"
    UNKNOWN_TYPE = "unknown_type"
    NOT_LOGGED_IN = "not_logged_in"
    VERSION_UNSUPPORTED = "version_unsupported"
    NICK_INVALID = "nick_invalid"
    NICK_TAKEN = "nick_taken"
    AUTH_REQUIRED = "auth_required"
    AUTH_FAILED = "auth_failed"
    NO_SUCH_USER = "no_such_user"
    NO_SUCH_ROOM = "no_such_room"
    ROOM_EXISTS = "room_exists"
    ROOM_INVALID = "room_invalid"
    NOT_MEMBER = "not_member"
    ALREADY_MEMBER = "already_member"
    NO_INVITE = "no_invite"
    TEXT_TOO_LONG = "text_too_long"
    TOO_LARGE = "too_large"
    BAD_FILE = "bad_file"
    HASH_MISMATCH = "hash_mismatch"
    NO_SUCH_FILE = "no_such_file"
    NO_SUCH_MESSAGE = "no_such_message"
    FORBIDDEN = "forbidden"
    BANNED = "banned"
    REGISTRATION_CLOSED = "registration_closed"
    UNAVAILABLE = "unavailable"
    RATE_LIMITED = "rate_limited"
    INTERNAL = "internal"


# --- errors -------------------------------------------------------------------------------------


class TlsChatError(Exception):
    """Base of every error tlschat raises on purpose."""


class ProtocolError(TlsChatError):
    """The peer broke PROTOCOL.md. `code` is the `error.code` to answer with."""

    code: ErrorCode = ErrorCode.BAD_FRAME

    def __init__(self, message: str, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class FrameTooLarge(ProtocolError):
    """A length prefix of 0 or above `max_frame`: the stream can no longer be trusted; answer and close."""

    code = ErrorCode.FRAME_TOO_LARGE


class InvalidFrame(ProtocolError):
    """A frame the peer got wrong (`bad_frame`, `bad_request`, `unknown_type`): answer and stay open."""

    raw: dict[str, Any] | None = None
    """The decoded object, when it got that far (so the error reply can echo its `ref`)."""


class RequestError(ProtocolError):
    """A well-formed request the rules refuse (`no_such_room`, `rate_limited`...): the server
    answers `error` with the request's `ref` and the connection stays open."""

    def __init__(self, code: ErrorCode, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(message, code)
        self.retry_after_ms = retry_after_ms


class ConnectionClosed(TlsChatError):
    """The connection ended, cleanly or not."""


class RequestFailed(TlsChatError):
    """The server answered a request with `error`; `code` is the protocol's code."""

    def __init__(self, code: str, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms


# --- names and addresses ------------------------------------------------------------------------

NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,31}")


def is_valid_name(name: str) -> bool:
    """A nick or room name: 1-32 of `A-Z a-z 0-9 _ - .`, first a letter, digit or `_`."""
    return NAME_RE.fullmatch(name) is not None


def name_key(name: str) -> str:
    """The case-insensitive identity of a nick or room (`Alice` and `alice` are one user)."""
    return name.lower()


def parse_address(address: str) -> tuple[Literal["@", "#"], str]:
    """Split `@nick` / `#room` into its kind and name; raise ValueError if it is neither."""
    if len(address) >= 2 and address[0] in "@#":
        kind: Literal["@", "#"] = "@" if address[0] == "@" else "#"
        name = address[1:]
        if is_valid_name(name):
            return kind, name
    raise ValueError(f"not an address: {address!r} (use @nick or #room)")


# Control characters PROTOCOL.md refuses in text: C0 other than newline and tab, DEL, C1.
_FORBIDDEN_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def has_forbidden_controls(text: str) -> bool:
    return _FORBIDDEN_CONTROLS.search(text) is not None


_second_prefix: tuple[int, str] = (-1, "")
"""The last whole second formatted, and its `YYYY-MM-DDTHH:MM:SS.` (one strftime a second)."""


def _no_controls(text: str) -> str:
    if has_forbidden_controls(text):
        raise ValueError("holds control characters")
    return text


PlainText = Annotated[str, AfterValidator(_no_controls)]
"""Text a user wrote (`send`, `edit`, a topic): PROTOCOL.md refuses C0 controls other than
newline and tab, DEL and C1 (`bad_request`)."""


def utc_timestamp(moment: datetime | None = None) -> str:
    """UTC, ISO 8601 with milliseconds: `2026-11-26T12:00:00.123Z`."""
    global _second_prefix
    if moment is not None:
        moment = moment.astimezone(UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    now = time.time()
    second = int(now)
    if _second_prefix[0] != second:
        _second_prefix = (second, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second)))
    return f"{_second_prefix[1]}{int((now - second) * 1000):03d}Z"


# --- frame models -------------------------------------------------------------------------------

Ref = Annotated[str, Field(max_length=MAX_REF)]
PositiveId = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
MAX_ID = 2**53 - 1
"""PROTOCOL.md "Names and addresses": ids fit a double, so every JSON library reads them exactly."""
RequestId = Annotated[int, Field(ge=0, le=MAX_ID)]
"""An id a client names (`last_seen`, `before`...): 0 means none; anything else is bad_request."""


class Frame(BaseModel):
    """A frame: one JSON object with a string `type`. Unknown members are ignored."""

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        strict=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


class Request(Frame):
    """A client frame; any may carry `ref`, echoed in the server's direct reply."""

    ref: Ref | None = None


# client -> server


class Hello(Request):
    type: Literal["hello"] = "hello"
    v: int
    nick: str
    password: str | None = None
    resume: Annotated[str, Field(max_length=64)] | None = None
    """A guest's latest `welcome.resume` token: the same guest again, within its hold."""
    client: str | None = None
    last_seen: RequestId | None = None


class Ping(Request):
    type: Literal["ping"] = "ping"


class Pong(Request):
    type: Literal["pong"] = "pong"


class Send(Request):
    type: Literal["send"] = "send"
    to: str
    text: PlainText
    file: str | None = None


class HistoryRequest(Request):
    type: Literal["history"] = "history"
    with_: str = Field(alias="with")
    before: RequestId | None = None
    """0 finds nothing (PROTOCOL.md)."""
    limit: Annotated[int, Field(ge=1, le=HISTORY_MAX_LIMIT)] = HISTORY_DEFAULT_LIMIT


class Edit(Request):
    type: Literal["edit"] = "edit"
    id: RequestId
    text: PlainText


class Delete(Request):
    type: Literal["delete"] = "delete"
    id: RequestId


class Typing(Request):
    type: Literal["typing"] = "typing"
    to: str


class SearchRequest(Request):
    type: Literal["search"] = "search"
    query: Annotated[str, Field(min_length=1, max_length=SEARCH_MAX_QUERY)]
    with_: str | None = Field(default=None, alias="with")
    before: RequestId | None = None
    limit: Annotated[int, Field(ge=1, le=SEARCH_MAX_LIMIT)] = SEARCH_DEFAULT_LIMIT


class Create(Request):
    type: Literal["create"] = "create"
    room: str
    public: bool = False
    topic: PlainText = ""
    invite: tuple[str, ...] = ()


class Invite(Request):
    type: Literal["invite"] = "invite"
    room: str
    nick: str


class Accept(Request):
    type: Literal["accept"] = "accept"
    room: str


class Decline(Request):
    type: Literal["decline"] = "decline"
    room: str


class Join(Request):
    type: Literal["join"] = "join"
    room: str


class Leave(Request):
    type: Literal["leave"] = "leave"
    room: str


class RoomsRequest(Request):
    type: Literal["rooms"] = "rooms"


class TopicRequest(Request):
    type: Literal["topic"] = "topic"
    room: str
    topic: PlainText


class Kick(Request):
    type: Literal["kick"] = "kick"
    room: str
    nick: str
    reason: str | None = None


class Ban(Request):
    type: Literal["ban"] = "ban"
    nick: str
    reason: str | None = None


class Unban(Request):
    type: Literal["unban"] = "unban"
    nick: str


class Register(Request):
    type: Literal["register"] = "register"
    nick: str
    password: str


class UsersRequest(Request):
    type: Literal["users"] = "users"


class Upload(Request):
    type: Literal["upload"] = "upload"
    name: Annotated[str, Field(min_length=1, max_length=255)]
    size: NonNegative
    sha256: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]


class Chunk(Request):
    type: Literal["chunk"] = "chunk"
    upload: str
    seq: NonNegative
    data: str


class Download(Request):
    type: Literal["download"] = "download"
    file: str


class ConversationsRequest(Request):
    type: Literal["conversations"] = "conversations"


class ReadRequest(Request):
    """Move the user's read marker of a conversation (PROTOCOL.md "Conversations and read
    markers"); it never moves back."""

    type: Literal["read"] = "read"
    with_: str = Field(alias="with")
    id: RequestId


ClientFrame: TypeAlias = Annotated[
    Hello
    | Ping
    | Pong
    | Send
    | HistoryRequest
    | Edit
    | Delete
    | Typing
    | SearchRequest
    | Create
    | Invite
    | Accept
    | Decline
    | Join
    | Leave
    | RoomsRequest
    | UsersRequest
    | Upload
    | Chunk
    | Download
    | ConversationsRequest
    | ReadRequest
    | TopicRequest
    | Kick
    | Ban
    | Unban
    | Register,
    Field(discriminator="type"),
]

# server -> client


class Reply(Frame):
    """A server frame; `ref` is set on the direct reply to a request that carried one."""

    ref: Ref | None = None


class Limits(Frame):
    max_frame: int
    max_text: int
    max_upload: int
    chunk: int
    guest_hold: int | None = None
    """Seconds a guest's nick, groups and messages are kept after its last session
    (docs/protocol.md: an addition; None from a server that does not say)."""


class UserInfo(Frame):
    nick: str
    online: bool


class RoomInfo(Frame):
    room: str
    members: tuple[str, ...]
    public: bool = False
    owner: str | None = None
    topic: str = ""


class PublicRoomInfo(Frame):
    room: str
    members: int
    topic: str = ""


class InviteInfo(Frame):
    room: str
    by: str


class FileMeta(Frame):
    id: str
    name: str
    size: int
    mime: str
    sha256: str
    width: int | None = None
    height: int | None = None


class ConversationInfo(Frame):
    with_: str = Field(alias="with")
    last_id: NonNegative
    read: NonNegative
    unread: NonNegative


class Conversations(Reply):
    type: Literal["conversations"] = "conversations"
    conversations: tuple[ConversationInfo, ...] = ()


class Read(Reply):
    """Another session of the same user moved a read marker."""

    type: Literal["read"] = "read"
    with_: str = Field(alias="with")
    id: NonNegative


class Welcome(Reply):
    type: Literal["welcome"] = "welcome"
    v: int = PROTOCOL_VERSION
    nick: str
    server: str
    limits: Limits
    users: tuple[UserInfo, ...] = ()
    rooms: tuple[RoomInfo, ...] = ()
    public_rooms: tuple[PublicRoomInfo, ...] = ()
    invites: tuple[InviteInfo, ...] = ()
    conversations: tuple[ConversationInfo, ...] = ()
    last_id: NonNegative = 0
    admin: bool = False
    resume: str | None = None
    """Guests only: the token that makes a later `hello` the same guest, within its hold."""


class Error(Reply):
    type: Literal["error"] = "error"
    code: str
    message: str
    retry_after_ms: int | None = None


class Ok(Reply):
    type: Literal["ok"] = "ok"


class ServerPing(Reply):
    type: Literal["ping"] = "ping"


class ServerPong(Reply):
    type: Literal["pong"] = "pong"


class Presence(Reply):
    type: Literal["presence"] = "presence"
    nick: str
    online: bool
    gone: bool | None = None
    """True once: a guest's hold ended and clients drop it from their lists."""


class Message(Reply):
    type: Literal["message"] = "message"
    id: PositiveId
    ts: str
    from_: str = Field(alias="from")
    to: str
    text: str
    file: FileMeta | None = None
    edit_of: PositiveId | None = None
    """This entry replaces the text of message `edit_of` (PROTOCOL.md "Edit and delete")."""
    delete_of: PositiveId | None = None
    """This entry removes message `delete_of`."""
    edited: str | None = None
    """`history`/`search`/replay: the time of the message's latest edit."""
    deleted: bool | None = None
    """`history`/`search`/replay: the message was deleted (`text` is empty, no `file`)."""


class History(Reply):
    type: Literal["history"] = "history"
    with_: str = Field(alias="with")
    messages: tuple[Message, ...] = ()
    more: bool = False


class SearchResult(Reply):
    type: Literal["search"] = "search"
    query: str
    messages: tuple[Message, ...] = ()
    more: bool = False


class TypingEvent(Reply):
    type: Literal["typing"] = "typing"
    from_: str = Field(alias="from")
    to: str


class Joined(Reply):
    type: Literal["joined"] = "joined"
    room: str
    members: tuple[str, ...]
    public: bool = False
    owner: str | None = None
    topic: str = ""


class Invited(Reply):
    type: Literal["invited"] = "invited"
    room: str
    by: str
    members: tuple[str, ...] = ()


class Members(Reply):
    type: Literal["members"] = "members"
    room: str
    members: tuple[str, ...]
    owner: str | None = None


class Declined(Reply):
    type: Literal["declined"] = "declined"
    room: str
    nick: str


class RoomEvent(Reply):
    """A public room appeared or changed size (`members` 0: it is gone)."""

    type: Literal["room"] = "room"
    room: str
    public: bool = True
    members: int
    topic: str = ""


class Left(Reply):
    type: Literal["left"] = "left"
    room: str
    by: str | None = None
    """Set when the user was kicked: who removed it."""
    reason: str | None = None


class TopicEvent(Reply):
    type: Literal["topic"] = "topic"
    room: str
    topic: str
    by: str


class Rooms(Reply):
    type: Literal["rooms"] = "rooms"
    rooms: tuple[RoomInfo, ...] = ()
    public_rooms: tuple[PublicRoomInfo, ...] = ()


class Users(Reply):
    type: Literal["users"] = "users"
    users: tuple[UserInfo, ...] = ()


class UploadReady(Reply):
    type: Literal["upload_ready"] = "upload_ready"
    upload: str
    chunk: int


class Uploaded(Reply):
    type: Literal["uploaded"] = "uploaded"
    file: FileMeta


class FileData(Reply):
    type: Literal["file_data"] = "file_data"
    file: str
    seq: NonNegative
    data: str
    last: bool
    meta: FileMeta | None = None
    """Our extension (docs/protocol.md "Files"): the first frame (`seq` 0) carries the file's
    metadata, so a download can be verified without the message that carried the file."""


class Bye(Reply):
    type: Literal["bye"] = "bye"
    reason: str = ""


ServerFrame: TypeAlias = Annotated[
    Welcome
    | Error
    | Ok
    | ServerPing
    | ServerPong
    | Presence
    | Message
    | History
    | SearchResult
    | TypingEvent
    | Joined
    | Invited
    | Members
    | Declined
    | RoomEvent
    | Left
    | TopicEvent
    | Rooms
    | Users
    | UploadReady
    | Uploaded
    | FileData
    | Bye
    | Conversations
    | Read,
    Field(discriminator="type"),
]

_CLIENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(ClientFrame)
_SERVER_ADAPTER: TypeAdapter[Any] = TypeAdapter(ServerFrame)


def _frame_types(union: Any) -> frozenset[str]:
    members = union.__args__[0].__args__  # Annotated[Union[...], Field] -> the union's members
    return frozenset(m.model_fields["type"].default for m in members)


CLIENT_TYPES = _frame_types(ClientFrame)
SERVER_TYPES = _frame_types(ServerFrame)


# --- encoding and decoding ----------------------------------------------------------------------


def encode_payload(frame: Frame) -> bytes:
    """The JSON body of a frame: compact, aliases (`from`, `with`), absent optionals left out."""
    return frame.model_dump_json(exclude_none=True).encode()


def encode(frame: Frame) -> bytes:
    """A whole frame, length prefix included, ready to write."""
    return frame_bytes(encode_payload(frame))


def frame_bytes(payload: bytes) -> bytes:
    """A payload with its length prefix."""
    return HEADER.pack(len(payload)) + payload


def with_ref(data: bytes, ref: str | None) -> bytes:
    """An encoded frame with `"ref":REF` added, without encoding the frame again (the echo of a
    message to its sender is the same frame plus the request's `ref`)."""
    if ref is None:
        return data
    body = data[HEADER.size : -1] + b',"ref":' + json.dumps(ref, ensure_ascii=False).encode() + b"}"
    return HEADER.pack(len(body)) + body


def encode_raw(obj: dict[str, Any]) -> bytes:
    """A frame from a plain dict (tests, tools that speak the wire directly)."""
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    return HEADER.pack(len(body)) + body


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidFrame(f"member {key!r} is repeated", ErrorCode.BAD_FRAME)
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise InvalidFrame(f"{name} is not JSON", ErrorCode.BAD_FRAME)


def _has_lone_surrogate(obj: dict[str, Any]) -> bool:
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def decode_payload(payload: bytes) -> dict[str, Any]:
    """A payload's JSON object. Raise InvalidFrame(`bad_frame`) for anything PROTOCOL.md calls a bad frame."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidFrame("payload is not UTF-8", ErrorCode.BAD_FRAME) from None
    try:
        obj = json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except InvalidFrame:
        raise
    except (ValueError, RecursionError):
        raise InvalidFrame("payload is not JSON", ErrorCode.BAD_FRAME) from None
    if not isinstance(obj, dict):
        raise InvalidFrame("payload is not a JSON object", ErrorCode.BAD_FRAME)
    if "\\u" in text and _has_lone_surrogate(obj):
        # `"\ud800"` is valid JSON but no Unicode text: it could never be sent on as UTF-8.
        raise InvalidFrame("payload has a lone surrogate", ErrorCode.BAD_FRAME)
    if not isinstance(obj.get("type"), str):
        raise InvalidFrame("frame has no string member 'type'", ErrorCode.BAD_FRAME)
    return obj


def _describe(exc: ValidationError) -> str:
    """A short, human message naming the offending member (never pydantic's full dump)."""
    parts = []
    for err in exc.errors()[:3]:
        loc = [str(p) for p in err["loc"][1:]]  # drop the union tag
        member = ".".join(loc) or "frame"
        parts.append(f"member '{member}': {err['msg']}")
    return "; ".join(parts)


def _validate(
    obj: dict[str, Any], text: str, adapter: TypeAdapter[Any], known: frozenset[str]
) -> Any:
    kind = obj["type"]
    if kind not in known:
        raise InvalidFrame(f"unknown frame type {kind[:40]!r}", ErrorCode.UNKNOWN_TYPE)
    # Strict JSON-mode validation: "1" is not an int, 1.5 is not an int, true is not a number.
    try:
        return adapter.validate_json(text)
    except ValidationError as exc:
        raise InvalidFrame(_describe(exc), ErrorCode.BAD_REQUEST) from None


def decode_client_frame(payload: bytes) -> tuple[dict[str, Any], ClientFrame]:
    """Decode and validate one client payload; return the raw object (for `ref`) and the frame.

    Raise InvalidFrame: `bad_frame`, `unknown_type` or `bad_request`. When the error is not
    `bad_frame`, `exc.raw` holds the decoded object so the reply can echo its `ref`.
    """
    obj = decode_payload(payload)
    try:
        return obj, _validate(obj, payload.decode("utf-8"), _CLIENT_ADAPTER, CLIENT_TYPES)
    except InvalidFrame as exc:
        exc.raw = obj
        raise


def decode_server_frame(payload: bytes) -> ServerFrame:
    """Decode and validate one server payload. Raise InvalidFrame."""
    obj = decode_payload(payload)
    frame: ServerFrame = _validate(obj, payload.decode("utf-8"), _SERVER_ADAPTER, SERVER_TYPES)
    return frame


def ref_of(obj: dict[str, Any]) -> str | None:
    """The `ref` to echo on an error reply, if the raw object carried a usable one."""
    ref = obj.get("ref")
    return ref if isinstance(ref, str) and len(ref) <= MAX_REF else None


class FrameDecoder:
    """Cuts a byte stream into frame payloads. Feed it bytes in any split.

    After `feed()`, call `next_payload()` until it returns None. A length of 0 or above
    `max_frame` raises FrameTooLarge from the 4 length bytes alone, before any body is buffered.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._expected: int | None = None

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def pending_body(self) -> bool:
        """True when a length has arrived but its body has not (the body deadline is running)."""
        return self._expected is not None or len(self._buffer) > 0

    def next_payload(self) -> bytes | None:
        if self._expected is None:
            if len(self._buffer) < HEADER.size:
                return None
            (length,) = HEADER.unpack_from(self._buffer)
            if length == 0:
                raise FrameTooLarge("frame length 0", ErrorCode.BAD_FRAME)
            if length > self.max_frame:
                raise FrameTooLarge(f"frame of {length} bytes exceeds max_frame {self.max_frame}")
            del self._buffer[: HEADER.size]
            self._expected = length
        if len(self._buffer) < self._expected:
            return None
        payload = bytes(self._buffer[: self._expected])
        del self._buffer[: self._expected]
        self._expected = None
        return payload

    def payloads(self, data: bytes) -> Iterable[bytes]:
        """Feed `data` and yield every payload now complete."""
        self.feed(data)
        while (payload := self.next_payload()) is not None:
            yield payload


# --- the session state table (server side) ------------------------------------------------------


class SessionState(StrEnum):
    AWAIT_HELLO = "await_hello"
    ACTIVE = "active"


ALLOWED: dict[SessionState, frozenset[str]] = {
    # Until `welcome`, only `hello` (and keep-alive) is served; the rest is `not_logged_in`.
    SessionState.AWAIT_HELLO: frozenset({"hello", "ping", "pong"}),
    SessionState.ACTIVE: CLIENT_TYPES - {"hello"},
}
"""Which client frame types each server-side session state accepts."""


def check_allowed(state: SessionState, frame_type: str) -> None:
    """Raise ProtocolError with the right code if `frame_type` is not served in `state`."""
    if frame_type in ALLOWED[state]:
        return
    if state is SessionState.AWAIT_HELLO:
        raise ProtocolError("log in with hello first", ErrorCode.NOT_LOGGED_IN)
    raise ProtocolError("already logged in", ErrorCode.BAD_REQUEST)
