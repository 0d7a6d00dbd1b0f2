"""Both ends of a tlschat connection without I/O: bytes in, frames out, bytes to send.

`ServerConnection` holds everything PROTOCOL.md says about one connection that is not a rule
about users, rooms or messages: framing, bad frames and their count, the rate limit, the
session state table (ping/pong included) and the deadlines. The server's I/O layer feeds it
bytes with `receive_data()`, asks `next_request()` for the next frame the rules must handle,
and writes `data_to_send()`. `ClientConnection` is the same for the client library. Neither
reads a clock of its own or touches a socket (python-websockets' `protocol.py`, h11).
"""

from __future__ import annotations

from collections.abc import Callable

from tlschat.protocol import (
    ClientFrame,
    Error,
    ErrorCode,
    Frame,
    FrameDecoder,
    FrameTooLarge,
    InvalidFrame,
    Pong,
    ProtocolError,
    ServerFrame,
    ServerPing,
    ServerPong,
    SessionState,
    check_allowed,
    decode_client_frame,
    decode_server_frame,
    encode,
    ref_of,
)
from tlschat.ratelimit import FailureWindow, TokenBucket

BAD_FRAME_WINDOW = 60.0
"""PROTOCOL.md: more than `max_bad_frames` bad frames within a minute closes the connection."""


class ServerConnection:
    """The server's end of one connection, after the TLS handshake.

    Feed bytes with `receive_data(data, now)`, then call `next_request(now)` until it returns
    None, handling each request it returns (the rules' work), and send `data_to_send()` after
    each call: it holds the replies this layer makes itself (errors, `pong`, `ping`).
    When `closing` is set, send what is queued and close; `close_reason` says why.
    """

    def __init__(
        self,
        *,
        max_frame: int,
        max_bad_frames: int,
        rate_per_sec: float,
        rate_burst: float,
        login_timeout: float,
        frame_timeout: float,
        idle_timeout: float,
        now: float,
        clock: Callable[[], float],
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.on_error = on_error
        """Called with the code of every `error` this end queues (metrics); no I/O."""
        self.state = SessionState.AWAIT_HELLO
        self.decoder = FrameDecoder(max_frame)
        self.bucket = TokenBucket(rate_per_sec, rate_burst, clock)
        self.bad_frames = FailureWindow(max_bad_frames, BAD_FRAME_WINDOW, clock)
        self.login_timeout = login_timeout
        self.frame_timeout = frame_timeout
        self.idle_timeout = idle_timeout
        self.accepted_at = now
        self.last_heard = now
        self.closing = False
        self.close_reason = ""
        self._pinged = False
        self._partial_since: float | None = None
        self._out: list[bytes] = []

    # --- output --------------------------------------------------------------------------------

    def send(self, frame: Frame) -> None:
        """Queue a frame; after this, send `data_to_send()`."""
        if self.on_error is not None and isinstance(frame, Error):
            self.on_error(frame.code)
        self._out.append(encode(frame))

    def send_error(
        self,
        code: ErrorCode | str,
        message: str,
        ref: str | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        self.send(Error(code=str(code), message=message, ref=ref, retry_after_ms=retry_after_ms))

    def data_to_send(self) -> list[bytes]:
        """The encoded frames queued since the last call, in order."""
        out, self._out = self._out, []
        return out

    def close(self, error: Error | None, reason: str) -> None:
        """Send `error` (if any) as the last frame, then close."""
        if self.closing:
            return
        if error is not None:
            self.send(error)
        self.closing = True
        self.close_reason = reason

    # --- input ---------------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes from the peer; then call `next_request()` until it returns None."""
        self.last_heard = now
        self._pinged = False
        self.decoder.feed(data)

    def next_request(self, now: float) -> ClientFrame | None:
        """The next frame for the rules, or None when no whole one is buffered (or closing).

        Frames this layer answers itself (bad frames, `ping`, `pong`, rate limited, not allowed
        in this state) are answered here and skipped.
        """
        while not self.closing:
            try:
                payload = self.decoder.next_payload()
            except FrameTooLarge as exc:
                # The stream can no longer be trusted: answer and close (PROTOCOL.md "Frames").
                self.close(Error(code=exc.code, message=exc.message), "bad length")
                return None
            if payload is None:
                if self.decoder.pending_body():
                    if self._partial_since is None:
                        self._partial_since = now
                else:
                    self._partial_since = None
                return None
            self._partial_since = None
            frame = self._request(payload)
            if frame is not None:
                return frame
        return None

    def _request(self, payload: bytes) -> ClientFrame | None:
        # Every frame is billed, valid or not (PROTOCOL.md "Limits and abuse"), except upload
        # chunks, which the file service bills by bytes.
        try:
            _, frame = decode_client_frame(payload)
        except InvalidFrame as exc:
            ref = ref_of(exc.raw) if exc.raw else None
            if self._billed(ref):
                self._bad_frame(exc, ref)
            return None
        if frame.type != "chunk" and not self._billed(frame.ref):
            return None
        if frame.type == "pong":
            return None
        try:
            check_allowed(self.state, frame.type)
        except ProtocolError as exc:
            self.send_error(exc.code, exc.message, frame.ref)
            return None
        if frame.type == "ping":
            self.send(ServerPong(ref=frame.ref))
            return None
        return frame

    def _billed(self, ref: str | None) -> bool:
        wait = self.bucket.take()
        if not wait:
            return True
        retry = max(1, int(wait * 1000 + 0.999))
        self.send_error(ErrorCode.RATE_LIMITED, "slow down", ref, retry_after_ms=retry)
        return False

    def _bad_frame(self, exc: InvalidFrame, ref: str | None) -> None:
        self.send_error(exc.code, exc.message, ref)
        if self.bad_frames.blocked_for(""):
            self.close(Error(code=ErrorCode.BAD_FRAME, message="too many bad frames"), "bad frames")
        else:
            self.bad_frames.record("")

    def fail(self, frame: ClientFrame, exc: ProtocolError) -> None:
        """The rules refused `frame`: answer `error` with its `ref`."""
        self.send_error(exc.code, exc.message, frame.ref, getattr(exc, "retry_after_ms", None))

    def logged_in(self) -> None:
        """`hello` succeeded: every other request is served from now on."""
        self.state = SessionState.ACTIVE

    # --- deadlines -----------------------------------------------------------------------------

    def next_deadline(self) -> tuple[float, str]:
        """When this connection next needs attention, and why: call `deadline_passed` then."""
        deadlines = []
        if self.state is SessionState.AWAIT_HELLO:
            deadlines.append((self.accepted_at + self.login_timeout, "login"))
        if self._partial_since is not None:
            deadlines.append((self._partial_since + self.frame_timeout, "frame"))
        if self._pinged:
            deadlines.append((self.last_heard + self.idle_timeout, "idle"))
        else:
            deadlines.append((self.last_heard + self.idle_timeout / 3, "ping"))
        return min(deadlines)

    def deadline_passed(self, now: float) -> None:
        """Act on the deadline if it has passed: ping a quiet peer, or close."""
        when, why = self.next_deadline()
        if now < when:
            return
        if why == "ping":
            self._pinged = True
            self.send(ServerPing())
        elif why == "login":
            self.close(
                Error(code=ErrorCode.NOT_LOGGED_IN, message="no hello in time"), "login timeout"
            )
        elif why == "frame":
            self.close(
                Error(code=ErrorCode.BAD_FRAME, message="frame body did not arrive in time"),
                "frame timeout",
            )
        else:
            self.close(None, "idle timeout")


class ClientConnection:
    """The client's end: frames to bytes, bytes to validated server frames; answers `ping`.

    `receive_data(data)` then `next_frame()` until None; `send(frame)` then `data_to_send()`.
    A server frame that does not validate is skipped and counted in `invalid` (a newer server
    may send what this client does not know: PROTOCOL.md says to ignore it).
    """

    def __init__(self, max_frame: int) -> None:
        self.decoder = FrameDecoder(max_frame)
        self.invalid = 0
        self._out: list[bytes] = []

    def send(self, frame: Frame) -> None:
        self._out.append(encode(frame))

    def data_to_send(self) -> bytes:
        out, self._out = self._out, []
        return b"".join(out)

    def receive_data(self, data: bytes) -> None:
        self.decoder.feed(data)

    def next_frame(self) -> ServerFrame | None:
        """The next server frame; raises FrameTooLarge if the stream cannot be trusted."""
        while (payload := self.decoder.next_payload()) is not None:
            try:
                frame = decode_server_frame(payload)
            except InvalidFrame:
                self.invalid += 1
                continue
            if frame.type == "ping":
                self.send(Pong(ref=frame.ref))
                continue
            return frame
        return None
