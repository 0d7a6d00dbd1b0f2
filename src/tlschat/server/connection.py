"""One client connection: a reader task with deadlines, a writer task fed by a bounded outbox."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from tlschat.protocol import (
    Error,
    ErrorCode,
    Frame,
    FrameDecoder,
    FrameTooLarge,
    InvalidFrame,
    ProtocolError,
    Reply,
    ServerPing,
    SessionState,
    check_allowed,
    decode_client_frame,
    encode,
    ref_of,
)
from tlschat.server.outbox import Outbox
from tlschat.server.ratelimit import TokenBucket

if TYPE_CHECKING:
    from tlschat.config import ServerConfig
    from tlschat.server.registry import User
    from tlschat.server.router import Router

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
FLUSH_ON_CLOSE = 2.0
"""Seconds a closing connection gets to flush its last frames (an error, `bye`)."""


class RequestError(ProtocolError):
    """A request the router refuses; the session answers `error` with the request's `ref`."""

    def __init__(self, code: ErrorCode, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(message, code)
        self.retry_after_ms = retry_after_ms


class Session:
    """The server's side of one TLS connection. Created after the handshake; `run()` until it ends."""

    def __init__(
        self,
        router: Router,
        config: ServerConfig,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        peer_ip: str,
        peer_cn: str | None = None,
        accepted_at: float,
        on_login: Callable[[], None] | None = None,
    ) -> None:
        self.router = router
        self.config = config
        self.reader = reader
        self.writer = writer
        self.peer_ip = peer_ip
        self.peer_cn = peer_cn
        """The client certificate's common name under mutual TLS: the only nick allowed."""
        self.accepted_at = accepted_at
        self._on_login = on_login
        self.state = SessionState.AWAIT_HELLO
        self.user: User | None = None
        self.outbox = Outbox(config.max_queue)
        self.decoder = FrameDecoder(config.max_frame)
        self.bucket = TokenBucket(config.rate_per_sec, config.rate_burst)
        self.bad_frames = 0
        self.closing = False
        self.close_reason = ""
        self._loop = asyncio.get_running_loop()
        self.last_heard = self._loop.time()
        self._pinged = False
        self._partial_since: float | None = None
        self._replaying = False
        self._held: list[tuple[bytes, int]] = []
        self._held_size = 0
        self._read_task: asyncio.Task[None] | None = None
        self._write_task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        who = self.user.nick if self.user else "-"
        return f"<Session {who} from {self.peer_ip}>"

    # --- sending: never blocks the caller ------------------------------------------------------

    def deliver(self, data: bytes, msg_id: int = 0) -> None:
        """Queue an encoded frame. On overflow, disconnect this client (`slow_consumer`)."""
        if self.closing:
            return
        if self._replaying and msg_id:
            # Live messages wait until the replay is out, so the client sees ids in order.
            self._held.append((data, msg_id))
            self._held_size += len(data)
            if self._held_size > self.config.max_queue:
                self.abort("slow_consumer")
            return
        if not self.outbox.put(data, msg_id):
            self.abort("slow_consumer")

    def send(self, frame: Frame, msg_id: int = 0) -> None:
        self.deliver(encode(frame), msg_id)

    def send_error(
        self,
        code: ErrorCode | str,
        message: str,
        ref: str | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        self.send(Error(code=str(code), message=message, ref=ref, retry_after_ms=retry_after_ms))

    async def deliver_paced(self, data: bytes, msg_id: int = 0, *, high: int | None = None) -> None:
        """Queue without overflowing: waits until the frame fits under `high` (replay, downloads)."""
        await self.outbox.put_paced(data, msg_id, high=high)

    def begin_replay(self) -> None:
        self._replaying = True

    def end_replay(self, last_replayed: int) -> None:
        """Release live messages held during the replay, skipping any the replay already sent."""
        self._replaying = False
        held, self._held, self._held_size = self._held, [], 0
        for data, msg_id in held:
            if msg_id > last_replayed:
                self.deliver(data, msg_id)

    # --- ending --------------------------------------------------------------------------------

    def abort(self, reason: str) -> None:
        """Drop the connection now, without flushing (slow consumer, broken stream)."""
        if not self.closing:
            log.info("%r dropped: %s", self, reason)
        self.closing = True
        self.close_reason = reason
        self.outbox.close()
        self.writer.transport.abort()
        if self._read_task is not None:
            self._read_task.cancel()

    def shutdown(self, frame: Reply | None = None, reason: str = "closing") -> None:
        """Send `frame` (if any) as the last one, then close once it is flushed."""
        if self.closing:
            return
        if frame is not None:
            self.send(frame)
        self.closing = True
        self.close_reason = reason
        self.outbox.close()
        if self._read_task is not None and self._read_task is not asyncio.current_task():
            self._read_task.cancel()

    # --- the tasks -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it ends; clean up whatever way it ends."""
        self._write_task = asyncio.create_task(self._write_loop(), name=f"writer {self.peer_ip}")
        self._read_task = asyncio.create_task(self._read_loop(), name=f"reader {self.peer_ip}")
        try:
            await asyncio.wait({self._read_task})
        finally:
            if not self._read_task.done():
                self._read_task.cancel()
            self.closing = True
            self.outbox.close()
            try:
                await self.router.session_ended(self)
            except Exception:
                log.exception("cleaning up %r", self)
            await self._finish_writing()

    async def _finish_writing(self) -> None:
        assert self._write_task is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._write_task), FLUSH_ON_CLOSE)
        except (TimeoutError, Exception):
            self._write_task.cancel()
            self.writer.transport.abort()
            return
        self.writer.close()
        try:
            # TLS close_notify; a peer that never answers does not hold us up.
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)
        except (TimeoutError, Exception):
            self.writer.transport.abort()

    async def _write_loop(self) -> None:
        """The only place that writes to the socket: batches what is queued, then drains."""
        try:
            while (batch := await self.outbox.take()) is not None:
                self.writer.write(b"".join(data for data, _ in batch))
                await self.writer.drain()
                newest = max(msg_id for _, msg_id in batch)
                if newest and self.user is not None:
                    self.router.mark_delivered(self.user, newest)
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            # The stream is broken mid-write: its framing is unknown now, so abort (STYLE.md).
            log.debug("%r write failed: %s", self, exc)
            self.abort("write failed")

    def _next_deadline(self) -> tuple[float, str]:
        cfg = self.config
        deadlines = []
        if self.state is SessionState.AWAIT_HELLO:
            deadlines.append((self.accepted_at + cfg.login_timeout, "login"))
        if self._partial_since is not None:
            deadlines.append((self._partial_since + cfg.frame_timeout, "frame"))
        if self._pinged:
            deadlines.append((self.last_heard + cfg.idle_timeout, "idle"))
        else:
            deadlines.append((self.last_heard + cfg.idle_timeout / 3, "ping"))
        return min(deadlines)

    async def _read_loop(self) -> None:
        try:
            while not self.closing:
                when, why = self._next_deadline()
                try:
                    async with asyncio.timeout_at(when):
                        data = await self.reader.read(READ_SIZE)
                except TimeoutError:
                    if self._on_deadline(why):
                        continue
                    return
                if not data:
                    return
                self.last_heard = self._loop.time()
                self._pinged = False
                await self._receive(data)
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            log.debug("%r read failed: %s", self, exc)

    def _on_deadline(self, why: str) -> bool:
        """Act on a passed deadline; True to keep reading."""
        if why == "ping":
            self._pinged = True
            self.send(ServerPing())
            return True
        if why == "login":
            self.shutdown(
                Error(code=ErrorCode.NOT_LOGGED_IN, message="no hello in time"), "login timeout"
            )
        elif why == "frame":
            self.shutdown(
                Error(code=ErrorCode.BAD_FRAME, message="frame body did not arrive in time"),
                "frame timeout",
            )
        else:
            self.shutdown(None, "idle timeout")
        return False

    async def _receive(self, data: bytes) -> None:
        try:
            self.decoder.feed(data)
            while not self.closing and (payload := self.decoder.next_payload()) is not None:
                await self._handle_payload(payload)
        except FrameTooLarge as exc:
            # The stream can no longer be trusted: answer and close (PROTOCOL.md "Frames").
            self.shutdown(Error(code=exc.code, message=exc.message), "bad length")
            return
        if self.decoder.pending_body():
            if self._partial_since is None:
                self._partial_since = self._loop.time()
        else:
            self._partial_since = None

    async def _handle_payload(self, payload: bytes) -> None:
        try:
            _, frame = decode_client_frame(payload)
        except InvalidFrame as exc:
            self.bad_frames += 1
            self.send_error(exc.code, exc.message, ref_of(exc.raw) if exc.raw else None)
            if self.bad_frames >= self.config.max_bad_frames:
                self.shutdown(
                    Error(code=ErrorCode.BAD_FRAME, message="too many bad frames"), "bad frames"
                )
            return
        self.bad_frames = 0
        if frame.type == "pong":
            return
        if frame.type != "chunk":  # upload chunks are billed by bytes, per user, instead
            wait = self.bucket.take()
            if wait:
                retry = max(1, int(wait * 1000 + 0.999))
                self.send_error(
                    ErrorCode.RATE_LIMITED, "slow down", frame.ref, retry_after_ms=retry
                )
                return
        try:
            check_allowed(self.state, frame.type)
            await self.router.handle(self, frame)
        except RequestError as exc:
            self.send_error(exc.code, exc.message, frame.ref, exc.retry_after_ms)
        except ProtocolError as exc:
            self.send_error(exc.code, exc.message, frame.ref)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%r: internal error handling %s", self, frame.type)
            self.send_error(ErrorCode.INTERNAL, "internal server error", frame.ref)

    def logged_in(self, user: User) -> None:
        self.user = user
        self.state = SessionState.ACTIVE
        if self._on_login is not None:
            self._on_login()
