"""ChatClient: the asyncio client library that the TUI and the headless commands share."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import logging
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Literal, Self, TypeAlias, TypeVar

from tlschat import __version__, tls
from tlschat.client.backoff import Backoff
from tlschat.client.known_hosts import KnownHosts
from tlschat.protocol import (
    ALPN,
    PROTOCOL_VERSION,
    Accept,
    Bye,
    Chunk,
    ConnectionClosed,
    Create,
    Decline,
    Declined,
    Download,
    Error,
    FileData,
    FileMeta,
    FrameDecoder,
    FrameTooLarge,
    Hello,
    History,
    HistoryRequest,
    InvalidFrame,
    Invite,
    Invited,
    Join,
    Joined,
    Leave,
    Left,
    Members,
    Message,
    Ok,
    Ping,
    Pong,
    Presence,
    ProtocolError,
    Request,
    RequestFailed,
    RoomEvent,
    Rooms,
    RoomsRequest,
    Send,
    ServerFrame,
    ServerPing,
    ServerPong,
    TlsChatError,
    Upload,
    Uploaded,
    UploadReady,
    Users,
    UsersRequest,
    Welcome,
    decode_server_frame,
    encode,
)

log = logging.getLogger(__name__)

CLIENT_MAX_FRAME = 16 * 1024 * 1024
"""Largest frame the client accepts from a server (the server's own `max_frame` is far lower)."""

READ_SIZE = 64 * 1024

RETRYABLE_HELLO_ERRORS = frozenset({"rate_limited", "internal"})
"""Hello errors on reconnect that are worth another attempt; the rest end the client."""

NICK_TAKEN_RETRIES = 5
"""A guest that reconnects fast may find its old session still there: retry `nick_taken`."""


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

_PUSHED = (Message, Presence, Invited, Joined, Members, Declined, RoomEvent, Left, Bye)
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
    ) -> None:
        self.host = host
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
        self._pinned: str | None = None
        """The fingerprint pinned for this server, once a connection was trusted that way."""
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

    # --- public API ------------------------------------------------------------------------------

    @property
    def last_seen(self) -> int:
        """The highest message id seen (0: none yet)."""
        return self._max_seen or 0

    @property
    def known_hosts(self) -> KnownHosts:
        return KnownHosts(self._trust.known_hosts)

    async def connect(self) -> Welcome:
        """Open the TLS connection, check ALPN, log in; return the `welcome`.

        Raise RequestFailed for a refused `hello` (`nick_taken`, `auth_failed`, ...), TrustError
        for an untrusted certificate, OSError / ConnectionClosed / TimeoutError for the network.
        After a failure the state is DISCONNECTED and `connect()` may be called again. After
        success, iterate `events()`; reconnection is automatic.
        """
        if self.state is ConnectionState.CLOSED or self._closing:
            raise ConnectionClosed("the client is closed")
        if self.state is not ConnectionState.DISCONNECTED:
            raise RuntimeError(f"connect() called while {self.state}")
        self._set_state(ConnectionState.CONNECTING, f"{self.host}:{self.port}")
        try:
            welcome = await self._open()
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
        Members, Declined, RoomEvent, Left, Bye, a fresh Welcome after each reconnect, and
        StateChanged. Pure replies (ok, error, pong, history, rooms, users, uploads and
        downloads) go only to the request that awaits them. Meant for one consumer.
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

    async def leave(self, room: str) -> Left:
        return _expect(await self.request(Leave(room=room)), Left)

    async def users(self) -> Users:
        return _expect(await self.request(UsersRequest()), Users)

    async def rooms(self) -> Rooms:
        return _expect(await self.request(RoomsRequest()), Rooms)

    async def ping(self) -> None:
        _expect(await self.request(Ping()), ServerPong)

    async def upload(self, name: str, data: bytes) -> FileMeta:
        """Upload a file (then `send_message(to, text, file=meta.id)`); return its metadata."""
        link = self._ready_link()
        digest = hashlib.sha256(data).hexdigest()
        ref = self._next_ref()
        ready = await self._exchange(link, Upload(name=name, size=len(data), sha256=digest), ref)
        ready = _expect(_raise_error(ready), UploadReady)
        chunk = max(1, ready.chunk)
        # The chunks carry the upload's ref, so that whichever frame the server answers
        # (an error for a chunk, or the final `uploaded`) comes back to this future.
        future = self._register(link, ref)
        try:
            for seq, start in enumerate(range(0, len(data), chunk)):
                piece = base64.b64encode(data[start : start + chunk]).decode("ascii")
                self._write(link, Chunk(ref=ref, upload=ready.upload, seq=seq, data=piece))
                await self._drain(link)
                if future.done():
                    break  # refused half-way
            async with asyncio.timeout(self._request_timeout):
                reply = await future
        finally:
            link.pending.pop(ref, None)
        return _expect(_raise_error(reply), Uploaded).file

    async def download(self, file_id: str) -> bytes:
        """The bytes of a file (one that you sent or received)."""
        link = self._ready_link()
        ref = self._next_ref()
        stream: asyncio.Queue[ServerFrame | None] = asyncio.Queue()
        link.streams[ref] = stream
        parts: list[bytes] = []
        try:
            self._write(link, Download(ref=ref, file=file_id))
            await self._drain(link)
            while True:
                async with asyncio.timeout(self._request_timeout):
                    frame = await stream.get()
                if frame is None:
                    raise ConnectionClosed(link.reason)
                data = _expect(_raise_error(frame), FileData)
                parts.append(base64.b64decode(data.data, validate=True))
                if data.last:
                    return b"".join(parts)
        finally:
            link.streams.pop(ref, None)

    # --- connecting ------------------------------------------------------------------------------

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
        if self._pinned is not None:
            reader, writer, fingerprint = await self._dial(unverified)
            if fingerprint == self._pinned:
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
            self._pinned = fingerprint
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
        self._pinned = fingerprint
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
        """Try until connected (True) or until a refusal that retrying cannot fix (False)."""
        nick_taken = 0
        at_least = 0.0
        while not self._closing:
            delay = max(self._backoff.next(), at_least)
            at_least = 0.0
            self._set_state(ConnectionState.RECONNECTING, reason, retry_in=delay)
            await asyncio.sleep(delay)
            try:
                await self._open()
            except RequestFailed as exc:
                if exc.code == "nick_taken" and nick_taken < NICK_TAKEN_RETRIES:
                    nick_taken += 1
                elif exc.code not in RETRYABLE_HELLO_ERRORS:
                    self._finish(f"{exc.code}: {exc.message}")
                    return False
                reason = f"{exc.code}: {exc.message}"
                if exc.retry_after_ms:
                    at_least = exc.retry_after_ms / 1000
            except (TrustError, tls.TlsConfigError) as exc:
                self._finish(str(exc))
                return False
            except (OSError, TlsChatError) as exc:  # TimeoutError is an OSError
                reason = describe(exc)
            else:
                self._backoff.reset()
                return True
        return False

    async def _read_loop(self, link: _Link) -> None:
        """Decode frames and dispatch them until the connection ends; record why it ended."""
        decoder = FrameDecoder(CLIENT_MAX_FRAME)
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
                for payload in decoder.payloads(data):
                    try:
                        frame = decode_server_frame(payload)
                    except InvalidFrame as exc:
                        # Likely a newer server's frame type: skip it, the stream is still in sync.
                        log.warning("ignoring a frame from the server: %s", exc)
                        continue
                    self._dispatch(link, frame)
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
        if isinstance(frame, ServerPing):
            with contextlib.suppress(ConnectionClosed):
                self._write(link, Pong(ref=frame.ref))
            return
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
        if self._welcomed:
            self._emit(welcome)
        self._welcomed = True
        self._set_state(ConnectionState.CONNECTED, f"{self.host}:{self.port}")

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
