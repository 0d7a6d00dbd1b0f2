"""ChatClient: the asyncio client library that the TUI and the headless commands share."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import itertools
import logging
import os
import ssl
import stat
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol, Self, TypeAlias, TypeVar

from tlschat import __version__, tls
from tlschat.address import Server, format_hostport
from tlschat.client.backoff import Backoff
from tlschat.client.known_hosts import KnownHosts
from tlschat.client.server_list import NoServerAnswered, ServerList
from tlschat.protocol import (
    ALPN,
    PROTOCOL_VERSION,
    Accept,
    Bye,
    Chunk,
    ConnectionClosed,
    Conversations,
    ConversationsRequest,
    Create,
    Decline,
    Declined,
    Delete,
    Download,
    Edit,
    Error,
    FileData,
    FileMeta,
    FrameTooLarge,
    Hello,
    History,
    HistoryRequest,
    Invite,
    Invited,
    Join,
    Joined,
    Kick,
    Leave,
    Left,
    Members,
    Message,
    Ok,
    Ping,
    Presence,
    ProtocolError,
    Read,
    ReadRequest,
    Request,
    RequestFailed,
    RoomEvent,
    Rooms,
    RoomsRequest,
    SearchRequest,
    SearchResult,
    Send,
    ServerFrame,
    ServerPong,
    TlsChatError,
    TopicEvent,
    TopicRequest,
    Typing,
    TypingEvent,
    Upload,
    Uploaded,
    UploadReady,
    Users,
    UsersRequest,
    Welcome,
    encode,
)
from tlschat.sansio import ClientConnection

log = logging.getLogger(__name__)

CLIENT_MAX_FRAME = 16 * 1024 * 1024
"""Largest frame the client accepts from a server (the server's own `max_frame` is far lower)."""

READ_SIZE = 64 * 1024

NODE_FAILURE_ERRORS = frozenset({"internal", "unavailable"})
"""Hello errors about the node rather than the user (its bug, its database or Redis down):
another node of the chat may well answer, and this one may recover (PROTOCOL.md "Errors")."""

RETRYABLE_HELLO_ERRORS = frozenset({"rate_limited"}) | NODE_FAILURE_ERRORS
"""Hello errors on reconnect that are worth another attempt; the rest end the client."""

NICK_TAKEN_RETRIES = 5
"""A guest that reconnects fast may find its old session still there: retry `nick_taken`."""

HASH_IN_THREAD = 1024 * 1024
"""Bytes to upload above which they are hashed in a worker thread, off the event loop."""

READ_AHEAD = 256 * 1024
"""Bytes `upload_file()` reads at once (several chunks: fewer trips to a worker thread)."""

WRITE_BATCH = 1024 * 1024
"""Bytes `download_to()` gathers before writing them out in a worker thread."""

FILE_META_CACHE = 4096
"""File metadata remembered (from uploads and messages) to verify downloads with."""

DEFAULT_RETRY_MS = 50
"""Wait after a `rate_limited` chunk refusal that lacks `retry_after_ms` (it should not)."""

PACE_MARGIN = 0.98
"""Chunks are spaced for this fraction of the upload byte rate measured from refusals."""


# --- public types -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trust:
    """How the client decides to trust a server certificate."""

    cafile: Path | None = None
    """Verify against this CA bundle instead of the system trust store."""
    known_hosts: Path | None = None
    """Trust-on-first-use file; None: `known_hosts` under the user's config directory."""
    ask: Callable[[str, int, str], Awaitable[bool]] | None = None
    """`(host, port, fingerprint) -> trust it?` for an unknown certificate; None: refuse."""


TrustReason: TypeAlias = Literal["unknown", "changed", "rejected"]


class TrustError(TlsChatError):
    """The server's certificate is not trusted.

    `reason`: "unknown" (not verifiable and not pinned, and nobody to ask), "rejected" (the
    user said no) or "changed" (pinned with another fingerprint: refuse loudly, as SSH does;
    `known` holds the pinned one).
    """

    def __init__(
        self,
        host: str,
        port: int,
        fingerprint: str,
        reason: TrustReason,
        known: str | None = None,
        known_hosts: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.fingerprint = fingerprint
        self.reason = reason
        self.known = known
        self.known_hosts = known_hosts
        where = f"{host}:{port}"
        if reason == "changed":
            message = (
                f"the certificate of {where} has CHANGED: pinned fingerprint {known}, "
                f"now {fingerprint}. Someone may be intercepting the connection. If the server's "
                f"certificate was replaced on purpose, remove its line from {known_hosts}."
            )
        elif reason == "rejected":
            message = f"the certificate of {where} (fingerprint {fingerprint}) was not trusted"
        else:
            message = f"the certificate of {where} is not trusted (fingerprint {fingerprint})"
        super().__init__(message)


class ConnectionState(StrEnum):
    DISCONNECTED = "disconnected"
    """Not connected yet, or the first `connect()` failed (it may be called again)."""
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    """The connection dropped; waiting `retry_in` seconds, then trying again."""
    CLOSED = "closed"
    """For good: `close()` was called, or the connection was lost and cannot come back."""


@dataclass(frozen=True)
class StateChanged:
    """The client's connection state changed (an event of `ChatClient.events()`)."""

    state: ConnectionState
    detail: str = ""
    retry_in: float | None = None
    """With RECONNECTING: seconds until the next attempt."""


Event: TypeAlias = ServerFrame | StateChanged
"""What `ChatClient.events()` yields."""

Progress: TypeAlias = Callable[[int, int], None]
"""`progress(done, total)`: bytes of a transfer so far, called from the event loop."""

TargetChooser: TypeAlias = Callable[[FileMeta | None], Path]
"""Where `download_to()` writes, decided from the file's metadata (None when none is known) once
the first `file_data` frame has come; called in a worker thread before any byte is written, it
may raise to abandon the download (say, OSError for a target that exists)."""


class UnverifiableDownload(ProtocolError):
    """A download that had to be verified, but neither its metadata (given, seen in a message
    or upload, or sent with its first `file_data` frame) nor a SHA-256 to check it by is known:
    a server that predates `file_data.meta`. Raised before any byte is kept."""


_PUSHED = (
    Message, Presence, Invited, Joined, Members, Declined, RoomEvent, Left, Bye, Read, TypingEvent
)  # fmt: skip
"""Frames that go to `events()` (besides a reconnect's Welcome), even when they answer a request."""

_F = TypeVar("_F")


class _End:
    """Marks the end of `events()`."""


_END = _End()


class _Link:
    """One TLS connection: its streams, its reader task and the requests waiting on it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: dict[str, asyncio.Future[ServerFrame]] = {}
        self.streams: dict[str, asyncio.Queue[ServerFrame | None]] = {}
        """Requests answered by several frames (download); None: the connection ended."""
        self.hello_ref: str | None = None
        self.ready = False
        """True between `welcome` and the end of the connection."""
        self.reason = "connection lost"
        self.task: asyncio.Task[None] | None = None
        self.ping_outstanding = False
        self.bye: str | None = None
        """Why the server said it was closing (its `bye`), if it did."""


def _is_node_failure(exc: BaseException) -> bool:
    """A failure of one address that another node of the chat may not share: the network, or
    the node's own trouble. Not a refusal of the user (`auth_failed`...) nor of trust."""
    if isinstance(exc, RequestFailed):
        return exc.code in NODE_FAILURE_ERRORS
    if isinstance(exc, TrustError | tls.TlsConfigError):
        return False
    return isinstance(exc, OSError | TlsChatError)  # TimeoutError is an OSError


def describe(exc: BaseException) -> str:
    """A short human reason for a network failure (no tracebacks, no reprs)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc.__class__.__name__}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionError) and exc.errno:
        # asyncio's own text ("Connect call failed ('127.0.0.1', 1)") hides the reason.
        return os.strerror(exc.errno)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or exc.__class__.__name__
    return str(exc) or exc.__class__.__name__


# --- the client ---------------------------------------------------------------------------------


class ChatClient:
    """A connection to a tlschat server that logs in, routes replies and reconnects.

    `await connect()` (or `async with`), then iterate `events()` in one task while others make
    requests. Replies are matched to requests by `ref`; everything the server pushes, and the
    replies that change state (`joined`, `left`, the echo of a sent message), goes to
    `events()`. When the connection drops it reconnects with backoff and resumes from the last
    message seen, never yielding a message id twice. `close()` ends it all.

    `other_servers`: more addresses of the same chat (its other nodes). `connect()` tries
    `host:port` then each of them in turn until one answers; a lost connection resumes on the
    next one, wrapping round, and the backoff grows only once a whole round has failed.
    """

    def __init__(
        self,
        host: str,
        port: int,
        nick: str,
        *,
        password: str | None = None,
        trust: Trust = Trust(),
        ssl_context: ssl.SSLContext | None = None,
        reconnect: bool = True,
        client_name: str = f"tlschat/{__version__}",
        request_timeout: float = 30.0,
        backoff: Backoff | None = None,
        last_seen: int | None = None,
        connect_timeout: float = 15.0,
        keepalive: float | None = 60.0,
        resume: str | None = None,
        on_resume: Callable[[str], None] | None = None,
        other_servers: Sequence[Server] = (),
    ) -> None:
        self._servers = ServerList([(host, port), *other_servers])
        self.host = host
        """The address in use now (or tried last): one of `servers`."""
        self.port = port
        self.nick = nick
        """The nick: as given until `welcome`, then as the server spells it."""
        self.state = ConnectionState.DISCONNECTED
        self.welcome: Welcome | None = None
        self.tls_version: str | None = None
        self.cipher: str | None = None
        self.server_fingerprint: str | None = None
        self._requested_nick = nick
        self._password = password
        self._trust = trust
        self._ssl_context = ssl_context
        self._reconnect = reconnect
        self._client_name = client_name[:200]
        self._request_timeout = request_timeout
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive
        self._backoff = backoff if backoff is not None else Backoff()
        self._verifying_ctx: ssl.SSLContext | None = None
        self._unverified_ctx: ssl.SSLContext | None = None
        self._pinned: dict[Server, str] = {}
        """The fingerprint pinned for each address, once a connection was trusted that way."""
        self._refs = itertools.count(1)
        self._link: _Link | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[Event | _End] = asyncio.Queue()
        self._closing = False
        self._welcomed = False
        # Message ids already yielded: every id <= _seen_floor, and those in _seen.
        self._seen_floor = last_seen or 0
        self._seen: set[int] = set()
        self._max_seen: int | None = last_seen
        self._file_metas: dict[str, FileMeta] = {}
        """File id -> its metadata, as seen lately: downloads are checked against it."""
        self.resume = resume
        """A guest's latest `welcome.resume` token, sent with every later `hello` so a reconnect
        (or a restart of the client, if the caller keeps it) is the same guest again."""
        self._on_resume = on_resume

    # --- public API ------------------------------------------------------------------------------

    @property
    def last_seen(self) -> int:
        """The highest message id seen (0: none yet)."""
        return self._max_seen or 0

    @property
    def known_hosts(self) -> KnownHosts:
        return KnownHosts(self._trust.known_hosts)

    @property
    def servers(self) -> tuple[Server, ...]:
        """Every address of the chat, in the order they are tried; the first names the chat."""
        return self._servers.servers

    @property
    def address(self) -> str:
        """The address in use now, as `host:port` (`[::1]:port`)."""
        return format_hostport(self.host, self.port)

    async def connect(self) -> Welcome:
        """Open the TLS connection, check ALPN, log in; return the `welcome`.

        With several addresses, try them in order: a network failure (or a node's own trouble,
        `unavailable`/`internal`) moves on to the next at once; anything else stops there.
        Raise RequestFailed for a refused `hello` (`nick_taken`, `auth_failed`, ...), TrustError
        for an untrusted certificate, OSError / ConnectionClosed / TimeoutError for the network
        (NoServerAnswered, an OSError, when none of several addresses could be reached).
        After a failure the state is DISCONNECTED and `connect()` may be called again. After
        success, iterate `events()`; reconnection is automatic.
        """
        if self.state is ConnectionState.CLOSED or self._closing:
            raise ConnectionClosed("the client is closed")
        if self.state is not ConnectionState.DISCONNECTED:
            raise RuntimeError(f"connect() called while {self.state}")
        try:
            welcome = await self._open_first_answering()
            if self._closing:
                raise ConnectionClosed("the client was closed while connecting")
        except BaseException as exc:
            if self._link is not None:
                await self._close_link(self._link)
                self._link = None
            if not self._closing:
                self._set_state(ConnectionState.DISCONNECTED, describe(exc))
            raise
        self._supervisor = asyncio.create_task(
            self._supervise(), name=f"tlschat-client-{self.host}"
        )
        return welcome

    async def close(self) -> None:
        """Close the connection and stop reconnecting; `events()` ends. Idempotent."""
        self._closing = True
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None and supervisor is not asyncio.current_task():
            supervisor.cancel()
            await asyncio.wait([supervisor])
        link, self._link = self._link, None
        if link is not None:
            await self._close_link(link)
        self._finish("closed")

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def events(self) -> AsyncIterator[Event]:
        """Pushed frames, state-changing replies and StateChanged, in order, until closed.

        Yields Message (own echoes included, never an id twice), Presence, Invited, Joined,
        Members, Declined, RoomEvent, Left, Bye, Read (another session of the user moved a read
        marker), a fresh Welcome after each reconnect, and StateChanged. Pure replies (ok, error,
        pong, history, rooms, users, uploads and downloads) go only to the request that awaits
        them. Meant for one consumer.
        """
        while True:
            item = await self._queue.get()
            if isinstance(item, _End):
                self._queue.put_nowait(item)  # later calls end at once too
                return
            yield item

    async def request(self, frame: Request) -> ServerFrame:
        """Send `frame` with a fresh `ref` and return the server's reply with that ref.

        Raise RequestFailed for an `error` reply, ConnectionClosed if not connected or if the
        connection drops first, TimeoutError after `request_timeout` seconds.
        """
        link = self._ready_link()
        reply = await self._exchange(link, frame, self._next_ref())
        if isinstance(reply, Error):
            raise RequestFailed(reply.code, reply.message, reply.retry_after_ms)
        return reply

    async def send_message(self, to: str, text: str, file: str | None = None) -> Message:
        """Send to `@nick` or `#room`; return the server's echo (it also goes to `events()`)."""
        return _expect(await self.request(Send(to=to, text=text, file=file)), Message)

    async def history(self, with_: str, before: int | None = None, limit: int = 50) -> History:
        """Up to `limit` messages of a conversation, oldest first, all with id < `before`."""
        frame = HistoryRequest(with_=with_, before=before, limit=limit)
        return _expect(await self.request(frame), History)

    async def edit(self, message_id: int, text: str) -> Message:
        """Replace the text of your message; return the edit entry (`edit_of`), which also goes
        to `events()` (PROTOCOL.md "Edit and delete")."""
        return _expect(await self.request(Edit(id=message_id, text=text)), Message)

    async def delete(self, message_id: int) -> Message:
        """Delete your message; return the delete entry (`delete_of`), also in `events()`."""
        return _expect(await self.request(Delete(id=message_id)), Message)

    async def typing(self, to: str) -> None:
        """Tell `to` that you are typing. No reply on success, so nothing to wait for (an
        error, if any, is logged); PROTOCOL.md asks clients to send it at most every 3 s."""
        link = self._ready_link()
        self._write(link, Typing(to=to))
        await self._drain(link)

    async def search(
        self, query: str, with_: str | None = None, before: int | None = None, limit: int = 20
    ) -> SearchResult:
        """Messages matching `query`, newest first, with id < `before` (PROTOCOL.md "Search")."""
        frame = SearchRequest(query=query, with_=with_, before=before, limit=limit)
        return _expect(await self.request(frame), SearchResult)

    async def create_room(
        self, room: str, *, public: bool = False, invite: Sequence[str] = ()
    ) -> Joined:
        return _expect(
            await self.request(Create(room=room, public=public, invite=tuple(invite))), Joined
        )

    async def invite(self, room: str, nick: str) -> None:
        _expect(await self.request(Invite(room=room, nick=nick)), Ok)

    async def accept(self, room: str) -> Joined:
        return _expect(await self.request(Accept(room=room)), Joined)

    async def decline(self, room: str) -> None:
        _expect(await self.request(Decline(room=room)), Ok)

    async def join(self, room: str) -> Joined:
        return _expect(await self.request(Join(room=room)), Joined)

    async def set_topic(self, room: str, topic: str) -> TopicEvent:
        """Set a group's topic (any member); the event also reaches the other members."""
        return _expect(await self.request(TopicRequest(room=room, topic=topic)), TopicEvent)

    async def kick(self, room: str, nick: str, reason: str | None = None) -> None:
        """Remove `nick` from a group (its owner, or an administrator)."""
        _expect(await self.request(Kick(room=room, nick=nick, reason=reason)), Ok)

    async def leave(self, room: str) -> Left:
        return _expect(await self.request(Leave(room=room)), Left)

    async def users(self) -> Users:
        return _expect(await self.request(UsersRequest()), Users)

    async def rooms(self) -> Rooms:
        return _expect(await self.request(RoomsRequest()), Rooms)

    async def conversations(self) -> Conversations:
        """The user's conversations, most recent first, with read markers and unread counts."""
        return _expect(await self.request(ConversationsRequest()), Conversations)

    async def mark_read(self, with_: str, message_id: int) -> None:
        """Move the read marker of a conversation to `message_id` (it never moves back); the
        user's other sessions get a `read` event."""
        _expect(await self.request(ReadRequest(with_=with_, id=message_id)), Ok)

    async def ping(self) -> None:
        _expect(await self.request(Ping()), ServerPong)

    async def upload(self, name: str, data: bytes, *, progress: Progress | None = None) -> FileMeta:
        """Upload `data` under the display name `name`; return the file's metadata.

        Then `send_message(to, text, file=meta.id)`. Chunks the server refuses for its byte rate
        (`rate_limited`) are sent again after `retry_after_ms`, and once that has happened the
        rest are spaced out at the rate the server turns out to allow. Raise RequestFailed for a
        refusal (`too_large` before any byte is sent, `hash_mismatch`, `bad_file`, a third
        pending upload's `rate_limited`, ...), ConnectionClosed, TimeoutError.
        """
        self._check_upload_size(len(data))
        view = memoryview(data).cast("B")
        if len(view) > HASH_IN_THREAD:
            digest = await asyncio.to_thread(_sha256, view)
        else:
            digest = _sha256(view)

        async def read(offset: int, count: int) -> memoryview:
            return view[offset : offset + count]

        return await self._upload(name, len(view), digest, read, progress)

    async def upload_file(self, path: Path, *, progress: Progress | None = None) -> FileMeta:
        """Upload the regular file at `path` as `path.name`, reading it in worker threads.

        The file is read twice (to hash it, then chunk by chunk as it is sent), never held whole
        in memory. If it changes in between, the server refuses it (`hash_mismatch`) or OSError
        is raised. Otherwise as `upload()`. `progress(sent, size)` is called as chunks go out
        (`sent` may go back after the server refused a chunk for its byte rate).
        """
        path = Path(path)
        self._check_upload_size(await asyncio.to_thread(_regular_file_size, path))
        size, digest = await asyncio.to_thread(_hash_file, path)
        self._check_upload_size(size)
        return await self._upload(path.name, size, digest, _FileReader(path).read, progress)

    async def download(
        self,
        file_id: str,
        *,
        meta: FileMeta | None = None,
        sha256: str | None = None,
        require_verification: bool = False,
    ) -> bytes:
        """The bytes of a file (one that you sent or received).

        Verified against the file's size and SHA-256 when its metadata is known: `meta`, or what
        this client saw in an upload, a message or a history reply, or else what the server sent
        with the first `file_data` frame (docs/protocol.md "Files"); and against `sha256` when
        given. ProtocolError on a mismatch; UnverifiableDownload when `require_verification`
        and there is nothing to verify against. Chat events keep flowing to `events()`
        meanwhile. Raise RequestFailed (`no_such_file` for a file you may not have),
        ConnectionClosed, TimeoutError.
        """
        sink = _MemorySink()
        await self._download(file_id, meta, sink, sha256, require_verification)
        return b"".join(sink.parts)

    async def download_to(
        self,
        file_id: str,
        path: Path | TargetChooser,
        *,
        meta: FileMeta | None = None,
        sha256: str | None = None,
        require_verification: bool = False,
    ) -> None:
        """Download a file into `path`, streaming it to disk; as `download()` otherwise.

        `path` may be a TargetChooser: the target is then decided once the metadata is known
        (a file's own name, which only the first frame may tell). The bytes go to a temporary
        file beside the target (mode 0600) that replaces it only once the whole file has arrived
        and been verified; on any failure the target is left untouched.
        """
        sink = _DiskSink(path if callable(path) else _fixed_target(Path(path)))
        try:
            await self._download(file_id, meta, sink, sha256, require_verification)
            await sink.commit()
        finally:
            sink.discard()

    # --- files: the machinery --------------------------------------------------------------------

    def _check_upload_size(self, size: int) -> None:
        """`too_large` here and now for a file the server announced it would refuse."""
        welcome = self.welcome
        if welcome is not None and size > welcome.limits.max_upload:
            raise RequestFailed(
                "too_large", f"files are limited to {welcome.limits.max_upload} bytes"
            )

    def _remember_file(self, meta: FileMeta) -> None:
        """Keep `meta` so that a later download of that file can be verified."""
        self._file_metas.pop(meta.id, None)
        self._file_metas[meta.id] = meta
        while len(self._file_metas) > FILE_META_CACHE:
            del self._file_metas[next(iter(self._file_metas))]

    async def _upload(
        self,
        name: str,
        size: int,
        sha256: str,
        read: Callable[[int, int], Awaitable[bytes | memoryview]],
        progress: Progress | None = None,
    ) -> FileMeta:
        """`upload` → `upload_ready` → chunks → `uploaded`, chunks resent after `rate_limited`.

        Every chunk carries a `ref` of its own, so that a refusal names the refused `seq`; the
        server answers nothing for an accepted chunk, and processes a connection's frames in
        order, so a refusal also means every earlier chunk was taken. Chunks sent behind a
        refused one are refused too: they are forgotten (their `ref`s unregistered) and sent
        again under new `ref`s from the refused `seq` on once `retry_after_ms` has passed.
        """
        link = self._ready_link()
        loop = asyncio.get_running_loop()
        replies: asyncio.Queue[ServerFrame | None] = asyncio.Queue()
        # The upload's own ref stays registered throughout: it hears the server's replies to
        # `upload` (for an empty file, `upload_ready` and then `uploaded`), and the None that
        # `_fail_pending` puts in for every registered ref when the connection ends.
        upload_ref = self._next_ref()
        link.streams[upload_ref] = replies
        inflight: dict[str, int] = {}
        """Ref -> seq of the chunks sent since the last refusal (no reply yet)."""
        asked = False
        """True once `upload` is written: the server may then hold an upload for us."""
        ready: UploadReady | None = None
        settled = False
        """True once the server has finished or discarded the upload (nothing to abort)."""
        try:
            self._write(link, Upload(ref=upload_ref, name=name, size=size, sha256=sha256))
            asked = True
            await self._drain(link)
            async with asyncio.timeout(self._request_timeout):
                first = await replies.get()
            settled = not isinstance(first, UploadReady)
            if first is None:
                raise ConnectionClosed(link.reason)
            ready = _expect(_raise_error(first), UploadReady)
            if ready.chunk < 1:
                raise ProtocolError(f"the server offered chunks of {ready.chunk} bytes")
            chunk = ready.chunk
            count = -(-size // chunk)
            next_seq = 0
            pacer = _Pacer()
            while True:
                frame: ServerFrame | _End | None = _END
                if not replies.empty():
                    frame = replies.get_nowait()
                elif next_seq < count:
                    delay = pacer.delay(loop.time())
                    if delay > 0:
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(delay):
                                frame = await replies.get()
                else:
                    async with asyncio.timeout(self._request_timeout):
                        frame = await replies.get()
                if isinstance(frame, _End):  # nothing to read: send the next chunk
                    offset = next_seq * chunk
                    piece = await read(offset, min(chunk, size - offset))
                    chunk_ref = self._next_ref()
                    link.streams[chunk_ref] = replies
                    inflight[chunk_ref] = next_seq
                    data = base64.b64encode(piece).decode("ascii")
                    self._write(
                        link, Chunk(ref=chunk_ref, upload=ready.upload, seq=next_seq, data=data)
                    )
                    pacer.sent(loop.time(), len(piece))
                    next_seq += 1
                    if progress is not None:
                        progress(min(size, next_seq * chunk), size)
                    await self._drain(link)
                    continue
                if frame is None:
                    settled = True
                    raise ConnectionClosed(link.reason)
                if frame.ref == upload_ref and size == 0 and isinstance(frame, Uploaded):
                    settled = True
                    return self._check_uploaded(frame, size, sha256)
                seq = inflight.get(frame.ref) if frame.ref is not None else None
                if seq is None:
                    if frame.ref == upload_ref:
                        settled = isinstance(frame, Error)
                        _raise_error(frame)
                        raise ProtocolError(f"unexpected {frame.type!r} for an upload")
                    continue  # the refusal of a chunk sent behind an earlier refused one
                if isinstance(frame, Uploaded):
                    settled = True
                    return self._check_uploaded(frame, size, sha256)
                if not isinstance(frame, Error):
                    raise ProtocolError(f"the server answered a chunk with {frame.type!r}")
                if frame.code != "rate_limited":
                    settled = True  # any other refusal ends the upload on the server
                    _raise_error(frame)
                # Rewind: the chunks after `seq` will be refused as well; send them again.
                for ref in inflight:
                    link.streams.pop(ref, None)
                inflight.clear()
                wait = (frame.retry_after_ms or DEFAULT_RETRY_MS) / 1000
                pacer.refused(loop.time(), seq * chunk, min(chunk, size - seq * chunk), wait)
                log.debug("upload %s: chunk %d refused, again in %.3f s", ready.upload, seq, wait)
                next_seq = seq
        finally:
            link.streams.pop(upload_ref, None)
            for ref in inflight:
                link.streams.pop(ref, None)
            if ready is not None and not settled:
                self._abort_upload(link, ready.upload)
            elif asked and not settled:
                self._abort_when_ready(link, upload_ref, replies)

    def _abort_upload(self, link: _Link, upload_id: str) -> None:
        """Free the server's pending-upload slot of an upload given up half-way (timeout,
        cancelled, a local error) now rather than after the server's idle timeout.

        There is no `cancel` frame; a chunk out of order (seq 0, no data) always makes the server
        discard the upload. Its error reply has a ref nobody waits for: it is dropped unseen.
        """
        abort = Chunk(ref=self._next_ref(), upload=upload_id, seq=0, data="")
        with contextlib.suppress(ConnectionClosed, OSError, RuntimeError):
            self._write(link, abort)

    def _abort_when_ready(
        self, link: _Link, ref: str, replies: asyncio.Queue[ServerFrame | None]
    ) -> None:
        """Given up before the answer to `upload` was read: abort the upload once it comes."""
        while not replies.empty():
            frame = replies.get_nowait()
            if frame is not None and frame.ref == ref:
                if isinstance(frame, UploadReady):
                    self._abort_upload(link, frame.upload)
                return
        if link.task is None or link.task.done():
            return  # the connection is gone, and the upload with it
        future: asyncio.Future[ServerFrame] = asyncio.get_running_loop().create_future()
        link.pending[ref] = future

        def answered(done: asyncio.Future[ServerFrame]) -> None:
            if link.pending.get(ref) is done:
                del link.pending[ref]
            if done.cancelled() or done.exception() is not None:
                return
            reply = done.result()
            if isinstance(reply, UploadReady):
                self._abort_upload(link, reply.upload)

        future.add_done_callback(answered)

    def _check_uploaded(self, frame: Uploaded, size: int, sha256: str) -> FileMeta:
        meta = frame.file
        if meta.size != size or meta.sha256.lower() != sha256:
            raise ProtocolError("the server stored a file other than the one uploaded")
        self._remember_file(meta)
        return meta

    async def _download(
        self,
        file_id: str,
        meta: FileMeta | None,
        sink: _Sink,
        sha256: str | None,
        require_verification: bool,
    ) -> None:
        """Ask for a file and hand its bytes to `sink` in order; verify them against `meta` (or
        the metadata seen for `file_id`, or that of the first frame) and `sha256` when known."""
        if meta is not None and meta.id != file_id:
            raise ValueError(f"meta is for file {meta.id!r}, not {file_id!r}")
        meta = meta or self._file_metas.get(file_id)
        link = self._ready_link()
        ref = self._next_ref()
        stream: asyncio.Queue[ServerFrame | None] = asyncio.Queue()
        link.streams[ref] = stream
        digest = hashlib.sha256()
        received = 0
        try:
            self._write(link, Download(ref=ref, file=file_id))
            await self._drain(link)
            for seq in itertools.count():
                async with asyncio.timeout(self._request_timeout):
                    frame = await stream.get()
                if frame is None:
                    raise ConnectionClosed(link.reason)
                part = _expect(_raise_error(frame), FileData)
                if part.file != file_id or part.seq != seq:
                    raise ProtocolError(
                        f"file_data {part.file!r} #{part.seq} where {file_id!r} #{seq} was due"
                    )
                if seq == 0:
                    meta = meta or _first_frame_meta(part)
                    if meta is None and sha256 is None and require_verification:
                        raise UnverifiableDownload(
                            f"file {file_id!r}: the server sent no SHA-256 to verify it by"
                        )
                    await sink.open(meta)
                try:
                    data = base64.b64decode(part.data, validate=True)
                except binascii.Error:
                    raise ProtocolError("file_data whose data is not base64") from None
                received += len(data)
                # Not welcome.limits.max_upload: files stored under a higher limit stay
                # downloadable.
                if meta is not None and received > meta.size:
                    raise ProtocolError(f"the server sent more than {meta.size} bytes")
                digest.update(data)
                await sink.write(data)
                if part.last:
                    break
        finally:
            link.streams.pop(ref, None)
        hexdigest = digest.hexdigest()
        if meta is not None and (received != meta.size or hexdigest != meta.sha256.lower()):
            raise ProtocolError(
                f"file {file_id!r}: {received} bytes that do not match its size and SHA-256"
            )
        if sha256 is not None and hexdigest != sha256.lower():
            raise ProtocolError(f"file {file_id!r}: the bytes do not match the SHA-256 expected")

    # --- connecting ------------------------------------------------------------------------------

    def _use(self, server: Server) -> None:
        self.host, self.port = server

    async def _open_first_answering(self) -> Welcome:
        """`_open()` each address from the first until one answers (see `connect()`)."""
        self._use(self._servers.restart())
        failures: list[tuple[Server, str]] = []
        while True:
            self._set_state(ConnectionState.CONNECTING, self.address)
            try:
                return await self._open()
            except Exception as exc:
                last = len(failures) + 1 == len(self._servers)
                if self._closing or not _is_node_failure(exc):
                    raise
                if last:
                    if not failures or isinstance(exc, RequestFailed):
                        raise  # one address, or a node's own answer: as it is
                    raise NoServerAnswered(
                        [*failures, (self._servers.current, describe(exc))]
                    ) from exc
                failures.append((self._servers.current, describe(exc)))
                log.info("%s: %s; trying the next address", self.address, describe(exc))
            self._use(self._servers.advance())

    async def _open(self) -> Welcome:
        """Dial, check ALPN, start the reader and log in. On success `self._link` is live."""
        reader, writer, fingerprint = await self._dial_trusted()
        link = _Link(reader, writer)
        if self._closing:
            await self._close_link(link)
            raise ConnectionClosed("the client was closed while connecting")
        ssl_object = writer.get_extra_info("ssl_object")
        info = tls.tls_info(ssl_object)
        if info.alpn != ALPN:
            await self._close_link(link)
            raise ConnectionClosed(f"the server did not negotiate ALPN {ALPN} (got {info.alpn!r})")
        self.tls_version, self.cipher, self.server_fingerprint = (
            info.version,
            info.cipher,
            fingerprint,
        )
        self._link = link
        link.task = asyncio.create_task(self._read_loop(link), name="tlschat-client-reader")
        hello = Hello(
            v=PROTOCOL_VERSION,
            nick=self._requested_nick,
            password=self._password,
            client=self._client_name,
            last_seen=self._max_seen,
            resume=self.resume if self._password is None else None,
        )
        link.hello_ref = self._next_ref()
        try:
            reply = await self._exchange(link, hello, link.hello_ref)
            if isinstance(reply, Error):
                raise RequestFailed(reply.code, reply.message, reply.retry_after_ms)
            welcome = _expect(reply, Welcome)
        except BaseException:
            await self._close_link(link)
            if self._link is link:
                self._link = None
            raise
        return welcome

    def _contexts(self) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        if self._verifying_ctx is None or self._unverified_ctx is None:
            self._verifying_ctx = tls.client_context(cafile=self._trust.cafile)
            self._unverified_ctx = tls.client_context(verify=False)
        return self._verifying_ctx, self._unverified_ctx

    async def _dial(
        self, ctx: ssl.SSLContext
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
        """A TLS connection with `ctx` and the fingerprint of the server's certificate."""
        async with asyncio.timeout(self._connect_timeout):
            reader, writer = await asyncio.open_connection(
                self.host,
                self.port,
                ssl=ctx,
                server_hostname=self.host,
                ssl_handshake_timeout=self._connect_timeout,
                limit=READ_SIZE,
            )
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            writer.transport.abort()
            raise ConnectionClosed("the server presented no certificate")
        return reader, writer, tls.fingerprint(der)

    async def _dial_trusted(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
        """Dial by the trust policy: given context, else verified chain, else pinned fingerprint."""
        if self._ssl_context is not None:
            return await self._dial(self._ssl_context)
        verifying, unverified = self._contexts()
        pinned = self._pinned.get((self.host, self.port))
        if pinned is not None:
            reader, writer, fingerprint = await self._dial(unverified)
            if fingerprint == pinned:
                return reader, writer, fingerprint
            writer.transport.abort()
            # Fall through: a properly signed new certificate is fine; otherwise "changed".
        try:
            return await self._dial(verifying)
        except ssl.SSLCertVerificationError as exc:
            log.info("%s:%s: %s; trying the known-hosts file", self.host, self.port, describe(exc))
        return await self._dial_pinned(unverified)

    async def _dial_pinned(
        self, ctx: ssl.SSLContext
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
        store = self.known_hosts
        reader, writer, fingerprint = await self._dial(ctx)
        try:
            known = await asyncio.to_thread(store.lookup, self.host, self.port)
        except OSError as exc:
            writer.transport.abort()
            raise OSError(exc.errno, f"cannot read {store.path}: {exc.strerror}") from exc
        if known == fingerprint:
            self._pinned[self.host, self.port] = fingerprint
            return reader, writer, fingerprint
        # Never keep a connection open while a person decides: the login timer is running.
        writer.transport.abort()
        if known is not None:
            raise TrustError(self.host, self.port, fingerprint, "changed", known, store.path)
        ask = self._trust.ask
        if ask is None:
            raise TrustError(self.host, self.port, fingerprint, "unknown", None, store.path)
        if not await ask(self.host, self.port, fingerprint):
            raise TrustError(self.host, self.port, fingerprint, "rejected", None, store.path)
        try:
            await asyncio.to_thread(store.add, self.host, self.port, fingerprint)
        except OSError as exc:
            # Trusted for this session all the same; it will be asked again next time.
            log.warning("cannot write %s: %s", store.path, describe(exc))
        self._pinned[self.host, self.port] = fingerprint
        reader, writer, again = await self._dial(ctx)
        if again != fingerprint:
            writer.transport.abort()
            raise TrustError(self.host, self.port, again, "changed", fingerprint, store.path)
        return reader, writer, again

    # --- the connection's life -------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Watch the live connection; when it drops, reconnect (or end)."""
        while True:
            link = self._link
            if link is None or link.task is None:
                self._finish("connection lost")
                return
            await asyncio.wait([link.task])
            await self._close_link(link)
            if self._closing:
                return
            if not self._reconnect:
                self._finish(f"connection lost: {link.reason}")
                return
            if not await self._reconnect_loop(link.reason):
                return

    async def _reconnect_loop(self, reason: str) -> bool:
        """Try until connected (True) or until a refusal that retrying cannot fix (False).

        Rounds of attempts: each round waits the backoff's next delay, then tries every address
        in turn from the one after the address just lost (with a single address, one attempt
        per round, as ever). Each attempt sends `last_seen` and the guest's `resume` token.
        """
        nick_taken = 0
        at_least = 0.0
        while not self._closing:
            delay = max(self._backoff.next(), at_least)
            at_least = 0.0
            for attempt in range(len(self._servers)):
                self._use(self._servers.advance())
                if attempt == 0:
                    self._set_state(ConnectionState.RECONNECTING, reason, retry_in=delay)
                    await asyncio.sleep(delay)
                else:  # the next address of the round, at once
                    self._set_state(ConnectionState.RECONNECTING, reason, retry_in=0.0)
                if self._closing:
                    return False
                try:
                    await self._open()
                except RequestFailed as exc:
                    # As `code: message`, which the TUI puts into words (explain_detail).
                    reason = f"{exc.code}: {exc.message}"
                    if exc.code in NODE_FAILURE_ERRORS:
                        continue  # this node's trouble: another may answer
                    if exc.code == "nick_taken" and nick_taken < NICK_TAKEN_RETRIES:
                        # Our old session is still held (by the whole chat, not by one node):
                        # wait a round's delay for it to go, as with a single server.
                        nick_taken += 1
                    elif exc.code not in RETRYABLE_HELLO_ERRORS:
                        self._finish(f"{exc.code}: {exc.message}")
                        return False
                    if exc.retry_after_ms:
                        at_least = exc.retry_after_ms / 1000
                    break
                except (TrustError, tls.TlsConfigError) as exc:
                    self._finish(str(exc))
                    return False
                except (OSError, TlsChatError) as exc:  # TimeoutError is an OSError
                    reason = self._failure_reason(describe(exc))
                else:
                    self._backoff.reset()
                    return True
        return False

    def _failure_reason(self, reason: str) -> str:
        """Why an attempt failed; naming the address when there are several to tell apart."""
        return f"{self.address}: {reason}" if len(self._servers) > 1 else reason

    async def _read_loop(self, link: _Link) -> None:
        """Decode frames and dispatch them until the connection ends; record why it ended."""
        conn = ClientConnection(CLIENT_MAX_FRAME)
        reason = "connection lost"
        try:
            while True:
                try:
                    async with asyncio.timeout(self._keepalive):
                        data = await link.reader.read(READ_SIZE)
                except TimeoutError:
                    # Silence: probe once; a second silence means a half-open connection.
                    if link.ping_outstanding:
                        reason = "the server stopped answering"
                        break
                    link.ping_outstanding = True
                    self._write(link, Ping())
                    continue
                if not data:
                    reason = link.bye or "the server closed the connection"
                    break
                link.ping_outstanding = False
                conn.receive_data(data)
                skipped = conn.invalid
                while (frame := conn.next_frame()) is not None:
                    self._dispatch(link, frame)
                if conn.invalid > skipped:
                    # Likely a newer server's frame type: skipped, the stream is still in sync.
                    log.warning("ignored %d frame(s) from the server", conn.invalid - skipped)
                if answers := conn.data_to_send():  # `pong` to the server's `ping`
                    link.writer.write(answers)
        except FrameTooLarge as exc:
            reason = f"bad frame from the server: {exc}"
        except ConnectionClosed as exc:
            reason = str(exc)
        except OSError as exc:
            reason = describe(exc)
        except asyncio.CancelledError:
            reason = "closed"
            raise
        except Exception:
            log.exception("client reader failed")
            reason = "internal error in the client"
        finally:
            link.reason = reason
            link.ready = False
            self._fail_pending(link, reason)

    def _dispatch(self, link: _Link, frame: ServerFrame) -> None:
        if isinstance(frame, Message) and frame.file is not None:
            self._remember_file(frame.file)
        elif isinstance(frame, History | SearchResult):
            for message in frame.messages:
                if message.file is not None:
                    self._remember_file(message.file)
        ref = frame.ref
        if ref is not None:
            if isinstance(frame, Welcome) and ref == link.hello_ref:
                self._on_welcome(link, frame)
            stream = link.streams.get(ref)
            if stream is not None:
                stream.put_nowait(frame)
                return
            future = link.pending.get(ref)
            if future is not None and not future.done():
                future.set_result(frame)
        if isinstance(frame, Message):
            if self._note_message(frame.id):
                self._emit(frame)
        elif isinstance(frame, _PUSHED):
            if isinstance(frame, Bye):
                link.bye = (
                    f"the server is closing: {frame.reason}"
                    if frame.reason
                    else "the server is closing"
                )
            self._emit(frame)
        elif isinstance(frame, Error) and ref is None:
            log.warning("server error: %s: %s", frame.code, frame.message)

    def _on_welcome(self, link: _Link, welcome: Welcome) -> None:
        """Called by the reader before any later frame, so events keep the wire's order."""
        if self._closing:
            return
        link.ready = True
        self.welcome = welcome
        self.nick = welcome.nick
        if welcome.resume is not None and welcome.resume != self.resume:
            self.resume = welcome.resume
            if self._on_resume is not None:
                self._on_resume(welcome.resume)
        if self._welcomed:
            self._emit(welcome)
        self._welcomed = True
        self._set_state(ConnectionState.CONNECTED, self.address)

    def _note_message(self, message_id: int) -> bool:
        """True the first time a message id is seen."""
        if message_id <= self._seen_floor or message_id in self._seen:
            return False
        self._seen.add(message_id)
        if self._max_seen is None or message_id > self._max_seen:
            self._max_seen = message_id
        if len(self._seen) > 4096:
            # Forget the oldest half; ids that old will not be replayed again.
            ordered = sorted(self._seen)
            self._seen_floor = ordered[2047]
            self._seen = set(ordered[2048:])
        return True

    # --- plumbing --------------------------------------------------------------------------------

    def _next_ref(self) -> str:
        return f"c{next(self._refs)}"

    def _ready_link(self) -> _Link:
        link = self._link
        if link is None or not link.ready or self.state is not ConnectionState.CONNECTED:
            raise ConnectionClosed(f"not connected ({self.state})")
        return link

    def _register(self, link: _Link, ref: str) -> asyncio.Future[ServerFrame]:
        if (not link.ready and link.hello_ref != ref) or (
            link.task is not None and link.task.done()
        ):
            raise ConnectionClosed(link.reason)
        future: asyncio.Future[ServerFrame] = asyncio.get_running_loop().create_future()
        link.pending[ref] = future
        return future

    async def _exchange(self, link: _Link, frame: Request, ref: str) -> ServerFrame:
        """Send `frame` under `ref` and await the reply with that ref (an Error included)."""
        future = self._register(link, ref)
        try:
            self._write(link, frame.model_copy(update={"ref": ref}))
            await self._drain(link)
            async with asyncio.timeout(self._request_timeout):
                return await future
        finally:
            link.pending.pop(ref, None)

    def _write(self, link: _Link, frame: Request) -> None:
        if link.writer.is_closing():
            raise ConnectionClosed(link.reason)
        # write() queues the whole frame at once, so concurrent requests never interleave.
        link.writer.write(encode(frame))

    async def _drain(self, link: _Link) -> None:
        try:
            await link.writer.drain()
        except (OSError, RuntimeError) as exc:
            raise ConnectionClosed(describe(exc)) from exc

    def _fail_pending(self, link: _Link, reason: str) -> None:
        for future in link.pending.values():
            if not future.done():
                future.set_exception(ConnectionClosed(reason))
        for stream in link.streams.values():
            stream.put_nowait(None)

    async def _close_link(self, link: _Link) -> None:
        task = link.task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])
        writer = link.writer
        if not writer.is_closing():
            writer.close()
        try:
            async with asyncio.timeout(2.0):
                await writer.wait_closed()
        except (OSError, TimeoutError):
            # TLS close_notify may never be answered by a dead peer: drop the socket.
            writer.transport.abort()

    def _emit(self, event: Event) -> None:
        self._queue.put_nowait(event)

    def _set_state(
        self, state: ConnectionState, detail: str = "", retry_in: float | None = None
    ) -> None:
        if self.state is ConnectionState.CLOSED:
            return
        self.state = state
        self._emit(StateChanged(state, detail, retry_in))

    def _finish(self, detail: str) -> None:
        """The end: CLOSED, and `events()` stops after what is already queued."""
        if self.state is ConnectionState.CLOSED:
            return
        self._set_state(ConnectionState.CLOSED, detail)
        self._closing = True
        self._queue.put_nowait(_END)


# --- files: helpers -----------------------------------------------------------------------------


class _Pacer:
    """When to send the next upload chunk.

    At first as fast as the connection takes them. After the server refuses one for its byte
    rate, the next goes when `retry_after_ms` says, and the rest are spaced out at the rate the
    refusals reveal. At a refusal the server's allowance is short of the refused chunk by exactly
    `retry_after_ms` worth of its rate, so between the resume times of the first and of the
    latest refusal it let through exactly the bytes sent in between: their ratio is the rate
    (the network's delay is the same at both ends and cancels out). Until a second refusal,
    `size / wait` is used: an upper bound of the rate, which a second refusal soon corrects.
    Pacing only saves resending; correctness rests on the rewinds alone.
    """

    def __init__(self) -> None:
        self.rate: float | None = None
        """Bytes per second, once known."""
        self._first: tuple[float, int] | None = None
        """(resume time, offset) of the first refusal."""
        self._next = 0.0

    def delay(self, now: float) -> float:
        return max(0.0, self._next - now)

    def sent(self, now: float, size: int) -> None:
        if self.rate is not None:
            self._next = max(self._next, now) + size / (self.rate * PACE_MARGIN)

    def refused(self, now: float, offset: int, size: int, wait: float) -> None:
        """The chunk of `size` bytes at `offset` was refused; it may go again in `wait` s."""
        resume = now + wait
        self._next = resume
        if self._first is None:
            self._first = (resume, offset)
            self.rate = max(size, 1) / wait
            return
        first_resume, first_offset = self._first
        if offset > first_offset and resume > first_resume:
            self.rate = (offset - first_offset) / (resume - first_resume)


class _FileReader:
    """Reads a file for an upload in a worker thread, `READ_AHEAD` bytes at a time.

    Each read opens the file anew: no handle is shared with a thread that may still be running
    when the upload is cancelled.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._start = 0
        self._block = memoryview(b"")

    async def read(self, offset: int, count: int) -> memoryview:
        end = offset + count
        if not (self._start <= offset and end <= self._start + len(self._block)):
            data = await asyncio.to_thread(_read_at, self._path, offset, max(count, READ_AHEAD))
            self._start, self._block = offset, memoryview(data)
        piece = self._block[offset - self._start : end - self._start]
        if len(piece) != count:
            raise OSError(f"{self._path} shrank while it was being uploaded")
        return piece


class _Sink(Protocol):
    """Where `_download()` hands a file's bytes."""

    async def open(self, meta: FileMeta | None) -> None:
        """The first frame has come: `meta` is what the bytes will be verified against."""

    async def write(self, data: bytes) -> None: ...


class _MemorySink:
    """Where `download()` keeps the bytes."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    async def open(self, meta: FileMeta | None) -> None:
        pass

    async def write(self, data: bytes) -> None:
        self.parts.append(data)


class _DiskSink:
    """Where `download_to()` writes: a temporary file beside the target, batched writes in a
    worker thread."""

    def __init__(self, choose: TargetChooser) -> None:
        self._choose = choose
        self.target: Path | None = None
        self.temp: Path | None = None
        self._pending = bytearray()
        self._committed = False

    async def open(self, meta: FileMeta | None) -> None:
        self.target, self.temp = await asyncio.to_thread(_choose_target, self._choose, meta)

    async def write(self, data: bytes) -> None:
        self._pending += data
        if len(self._pending) >= WRITE_BATCH:
            await self._flush()

    async def _flush(self) -> None:
        data, self._pending = bytes(self._pending), bytearray()
        if data:
            assert self.temp is not None, "open() comes first"
            await asyncio.to_thread(_append_to, self.temp, data)

    async def commit(self) -> None:
        assert self.target is not None, "open() comes first"
        assert self.temp is not None
        await self._flush()
        await asyncio.to_thread(_commit, self.temp, self.target)
        self._committed = True

    def discard(self) -> None:
        """Remove the temporary file unless committed (synchronous: safe when cancelled)."""
        if self.temp is not None and not self._committed:
            try:
                self.temp.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("cannot remove %s: %s", self.temp, describe(exc))


def _first_frame_meta(part: FileData) -> FileMeta | None:
    """The metadata a download's first frame carries (None from a server that sends none)."""
    if part.meta is not None and part.meta.id != part.file:
        raise ProtocolError(f"file_data {part.file!r} with the metadata of {part.meta.id!r}")
    return part.meta


def _sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def _regular_file_size(path: Path) -> int:
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise OSError(f"{path} is not a regular file")
    return info.st_size


def _hash_file(path: Path) -> tuple[int, str]:
    """(size, SHA-256) of the file's bytes as read now."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while block := fh.read(READ_AHEAD):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def _read_at(path: Path, offset: int, count: int) -> bytes:
    with path.open("rb") as fh:
        fh.seek(offset)
        return fh.read(count)


def _fixed_target(path: Path) -> TargetChooser:
    """The chooser of a target known from the start."""
    return lambda _meta: path


def _choose_target(choose: TargetChooser, meta: FileMeta | None) -> tuple[Path, Path]:
    """(the target `choose` picks for `meta`, a new temporary file beside it)."""
    target = choose(meta)
    return target, _temp_beside(target)


def _temp_beside(path: Path) -> Path:
    """A new, empty, private file in `path`'s directory, for a download to `path`."""
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory")
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:64]}.", suffix=".part")
    os.close(fd)
    return Path(name)


def _append_to(temp: Path, data: bytes) -> None:
    # No O_CREAT: a write still running after the download was abandoned (and its file
    # removed) must not bring the file back.
    fd = os.open(temp, os.O_WRONLY | os.O_APPEND)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _commit(temp: Path, path: Path) -> None:
    fd = os.open(temp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)


def _raise_error(frame: ServerFrame) -> ServerFrame:
    if isinstance(frame, Error):
        raise RequestFailed(frame.code, frame.message, frame.retry_after_ms)
    return frame


def _expect(frame: ServerFrame, kind: type[_F]) -> _F:
    """The reply as the frame type the request calls for; ProtocolError for anything else."""
    if not isinstance(frame, kind):
        raise ProtocolError(
            f"the server answered {frame.type!r} where {kind.__name__} was expected"
        )
    return frame
