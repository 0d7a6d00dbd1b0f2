"""One client connection's I/O: a reader task around the sans-I/O `ServerConnection`, and
frames queued by fan-out written with one TLS write per loop turn."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from tlschat.protocol import Error, ErrorCode, Frame, ProtocolError, Reply, encode
from tlschat.sansio import ServerConnection
from tlschat.server import metrics

if TYPE_CHECKING:
    from tlschat.config import ServerConfig
    from tlschat.server.hub import Hub
    from tlschat.server.registry import User
    from tlschat.server.rules import Rules

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
CLOSE_TIMEOUT = 3.0
"""Seconds a closing connection gets to flush its last frames (an error, `bye`) and say
close_notify; a peer that never reads does not hold the server up longer."""
PACING_HIGH_WATER = 64 * 1024
"""Bytes buffered in the TLS transport above which `deliver_paced` waits (replay, downloads)."""


LIMIT_LOG_INTERVAL = 60.0


class _LimitLog:
    """`rate_limited` refusals, logged as one line a minute with a count (PRODUCT.md: limits
    hit are aggregated, never one line per attacker's request)."""

    def __init__(self) -> None:
        self.count = 0
        self.logged_at = float("-inf")

    def hit(self, ip: str, now: float) -> None:
        self.count += 1
        if now - self.logged_at >= LIMIT_LOG_INTERVAL:
            log.info(
                "rate limit: %d request(s) refused since the last report, latest from %s",
                self.count,
                ip,
            )
            self.count = 0
            self.logged_at = now


_limits = _LimitLog()


class Session:
    """The server's side of one TLS connection, created after the handshake; `run()` until it
    ends. This is the `Peer` the rules and the hub queue frames on."""

    def __init__(
        self,
        rules: Rules,
        hub: Hub,
        config: ServerConfig,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        peer_ip: str,
        peer_cn: str | None = None,
        accepted_at: float,
        on_login: Callable[[], None] | None = None,
    ) -> None:
        self.rules = rules
        self.hub = hub
        self.reader = reader
        self.writer = writer
        self.transport = writer.transport
        self.peer_ip = peer_ip
        self.peer_cn = peer_cn
        self.queue_limit = config.max_queue
        self._on_login = on_login
        self._loop = asyncio.get_running_loop()
        self.conn = ServerConnection(
            max_frame=config.max_frame,
            max_bad_frames=config.max_bad_frames,
            rate_per_sec=config.rate_per_sec,
            rate_burst=config.rate_burst,
            login_timeout=config.login_timeout,
            frame_timeout=config.frame_timeout,
            idle_timeout=config.idle_timeout,
            now=accepted_at,
            clock=self._loop.time,
            on_error=self._error_sent,
        )
        self.user: User | None = None
        self.closing = False
        self.close_reason = ""
        self._queued: list[bytes] = []
        self._queued_size = 0
        self._queued_newest = 0
        """The newest message id among the queued frames (the delivery mark after a flush)."""
        self._backlog = 0
        """Bytes the TLS transport still held after the last flush (counted against the queue
        bound; read once per flush, not once per frame)."""
        self._broadcast_cursor = (0, 0)
        self._flush_wanted = False
        self._replaying = False
        self._newest_sent = 0
        """The newest message id queued on this session. Ids only grow on a session, so a message
        at or below it was sent already: with several nodes, a message the replay read from the
        store can still be released live afterwards by this node's stream order."""
        self._held: list[tuple[bytes, int]] = []
        self._held_size = 0
        self._read_task: asyncio.Task[None] | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self.transport.set_write_buffer_limits(high=min(PACING_HIGH_WATER, self.queue_limit // 4))

    def _error_sent(self, code: str) -> None:
        metrics.error_sent(code)
        if code == "rate_limited":
            _limits.hit(self.peer_ip, self._loop.time())

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
            if self._held_size > self.queue_limit:
                self.abort("slow_consumer")
            return
        self._enqueue(data, msg_id)

    def _enqueue(self, data: bytes, msg_id: int) -> None:
        if msg_id:
            if msg_id <= self._newest_sent:
                metrics.STALE_MESSAGES.inc()
                return
            self._newest_sent = msg_id
        if self.user is not None:
            self.catch_up()  # broadcasts queued before this frame go before it
        pending = self._queued_size + self._backlog
        if pending and pending + len(data) > self.queue_limit:
            self.abort("slow_consumer")
            return
        self._queued.append(data)
        self._queued_size += len(data)
        if msg_id > self._queued_newest:
            self._queued_newest = msg_id
        if not self._flush_wanted:
            self._flush_wanted = True
            self.hub.want_flush(self)

    def catch_up(self) -> None:
        self._broadcast_cursor, frames = self.hub.broadcasts_after(self._broadcast_cursor)
        for data in frames:
            self._queued.append(data)
            self._queued_size += len(data)
        if frames and self._queued_size + self._backlog > self.queue_limit:
            self.abort("slow_consumer")

    def flush(self) -> None:
        """Write everything queued in one TLS write (the hub calls this once per loop turn)."""
        self._flush_wanted = False
        if not self._queued or self.transport.is_closing():
            return
        data = b"".join(self._queued) if len(self._queued) > 1 else self._queued[0]
        newest = self._queued_newest
        self._queued.clear()
        self._queued_size = 0
        self._queued_newest = 0
        try:
            self.transport.write(data)
            metrics.BYTES_OUT.inc(len(data))
        except (ConnectionError, ssl.SSLError, OSError, RuntimeError) as exc:
            # The stream is broken mid-write: its framing is unknown now, so abort (STYLE.md).
            log.debug("%r write failed: %s", self, exc)
            self.abort("write failed")
            return
        self._backlog = self.transport.get_write_buffer_size()
        if self._backlog > self.queue_limit:
            self.abort("slow_consumer")
            return
        if newest:
            self.rules.mark_delivered(self, newest)

    def send(self, frame: Frame, msg_id: int = 0) -> None:
        self.deliver(encode(frame), msg_id)

    def send_error(
        self,
        code: ErrorCode | str,
        message: str,
        ref: str | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        self._error_sent(str(code))
        self.send(Error(code=str(code), message=message, ref=ref, retry_after_ms=retry_after_ms))

    async def deliver_paced(self, data: bytes, msg_id: int = 0, *, high: int | None = None) -> None:
        """Queue without overflowing: waits until the frame fits under `high` bytes (default the
        whole bound). Replay and downloads use this; live fan-out never waits."""
        bound = self.queue_limit if high is None else min(high, self.queue_limit)
        while not self.closing:
            pending = self._queued_size + self.transport.get_write_buffer_size()
            if not pending or pending + len(data) <= bound:
                break
            self.flush()
            try:
                await self.writer.drain()  # waits while the transport is above its high water
            except (ConnectionError, ssl.SSLError, OSError):
                return
            if self._queued_size + self.transport.get_write_buffer_size() + len(data) > bound:
                await asyncio.sleep(0.01)
        if not self.closing:
            self._enqueue(data, msg_id)

    def begin_replay(self) -> None:
        self._replaying = True

    def end_replay(self, last_replayed: int) -> None:
        """Release live messages held during the replay, skipping any the replay already sent.
        `last_replayed` may also be the client's `last_seen`: nothing at or below it is sent."""
        self._replaying = False
        self._newest_sent = max(self._newest_sent, last_replayed)
        held, self._held, self._held_size = self._held, [], 0
        for data, msg_id in held:
            if msg_id > last_replayed:
                self.deliver(data, msg_id)

    def logged_in(self, user: User) -> None:
        self._broadcast_cursor = self.hub.broadcast_cursor()
        self.user = user
        self.conn.logged_in()
        if self._on_login is not None:
            self._on_login()

    # --- ending --------------------------------------------------------------------------------

    def abort(self, reason: str) -> None:
        """Drop the connection now, without flushing (slow consumer, broken stream)."""
        if not self.closing:
            log.info("%r dropped: %s", self, reason)
            if reason == "slow_consumer":
                metrics.SLOW_CONSUMERS.inc()
        self.closing = True
        self.close_reason = reason
        self._queued.clear()
        self._queued_size = 0
        self.transport.abort()
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
        self.flush()
        if self._read_task is not None and self._read_task is not asyncio.current_task():
            self._read_task.cancel()

    # --- the reader task -----------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it ends; clean up whatever way it ends."""
        self._read_task = asyncio.create_task(self._read_loop(), name=f"reader {self.peer_ip}")
        try:
            await asyncio.wait({self._read_task})
        finally:
            if not self._read_task.done():
                self._read_task.cancel()
            self.closing = True
            try:
                await self.rules.session_ended(self)
            except Exception:
                log.exception("cleaning up %r", self)
            await self._close()

    async def _close(self) -> None:
        if self.transport.is_closing():
            self.transport.abort()  # aborted already, or closing: make sure the socket goes
            return
        data = b"".join(self._queued)
        self._queued.clear()
        if data:
            self.transport.write(data)
        self.writer.close()
        try:
            # TLS close_notify after the last frames; a peer that never reads does not hold us up.
            await asyncio.wait_for(self.writer.wait_closed(), CLOSE_TIMEOUT)
        except (TimeoutError, Exception):
            self.transport.abort()

    async def _read_loop(self) -> None:
        self._arm_deadline()
        try:
            while not self.closing:
                data = await self.reader.read(READ_SIZE)
                if not data:
                    return
                metrics.BYTES_IN.inc(len(data))
                await self._receive(data)
                if self.conn.decoder.pending_body():
                    self._rearm_if_sooner()
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            log.debug("%r read failed: %s", self, exc)
        finally:
            if self._deadline is not None:
                self._deadline.cancel()

    def _arm_deadline(self) -> None:
        """One timer per connection, set for the sans-I/O layer's next deadline. It is not moved
        on every read: when it fires early (the peer spoke meanwhile) it is set again."""
        when, _ = self.conn.next_deadline()
        self._deadline = self._loop.call_at(when, self._deadline_due)

    def _rearm_if_sooner(self) -> None:
        """A frame's body is due sooner than the armed deadline (PROTOCOL.md: 10 s)."""
        deadline = self._deadline
        if deadline is not None and self.conn.next_deadline()[0] < deadline.when():
            deadline.cancel()
            self._arm_deadline()

    def _deadline_due(self) -> None:
        self._deadline = None
        if self.closing:
            return
        self.conn.deadline_passed(self._loop.time())
        self._take_output()
        if self.conn.closing:
            self.shutdown(None, self.conn.close_reason)
            return
        self._arm_deadline()

    async def _receive(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data, self._loop.time())
        while not self.closing:
            frame = conn.next_request(self._loop.time())
            self._take_output()
            if frame is None:
                break
            try:
                await self.rules.handle(self, frame)
            except ProtocolError as exc:
                conn.fail(frame, exc)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%r: internal error handling %s", self, frame.type)
                conn.send_error(ErrorCode.INTERNAL, "internal server error", frame.ref)
            self._take_output()
        if conn.closing:
            self.shutdown(None, conn.close_reason)

    def _take_output(self) -> None:
        for data in self.conn.data_to_send():
            self.deliver(data)
