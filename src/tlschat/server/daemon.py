"""The daemon: TLS listener, connection limits, startup and graceful shutdown."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import ssl
import sys
from asyncio import sslproto
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import platformdirs

from tlschat import tls
from tlschat.config import ConfigError, ServerConfig
from tlschat.protocol import ALPN, Bye, TlsChatError
from tlschat.server.connection import Session
from tlschat.server.datadir import DataDirBusy, DataDirLock, make_private_dir
from tlschat.server.files import FileStore
from tlschat.server.hub import LocalHub
from tlschat.server.registry import Invitation, Registry, Room
from tlschat.server.rules import Context, Rules
from tlschat.server.sqlite_store import SqliteStore
from tlschat.server.store import StoreUnavailable

log = logging.getLogger("tlschat.server")

# asyncio's TLS transport gives every connection a 256 KiB receive buffer (CPython's
# sslproto.SSLProtocol.max_size), most of the daemon's memory per connection. A TLS record is at
# most ~16 KiB, so 16 KiB still takes one per read; measured by benchmarks/run.py (idle).
TLS_READ_BUFFER = 16 * 1024

FLUSH_INTERVAL = 2.0
REFUSAL_LOG_INTERVAL = 10.0
HOUSEKEEPING_INTERVAL = 3600.0


class StartupError(TlsChatError):
    """The daemon cannot start; the message is one line for the user."""


class ChatServer:
    """One tlschat daemon. `await start()`, then `await close()` (idempotent)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.data_dir = config.data_dir or platformdirs.user_data_path("tlschat")
        self.registry = Registry()
        self.hub = LocalHub()
        self.store = SqliteStore(self.data_dir / "tlschat.db")
        self._lock = DataDirLock(self.data_dir)
        self.rules: Rules | None = None
        self.files: FileStore | None = None
        self.ssl_context: ssl.SSLContext | None = None
        self.cert_path: Path | None = None
        self.fingerprint = ""
        self.port = 0
        self._listener: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._sessions: set[Session] = set()
        self._per_ip: Counter[str] = Counter()
        self._waiting: dict[asyncio.Task[None], Callable[[], None]] = {}
        """Connections not logged in yet, oldest first, each with how to drop it."""
        self._waiting_per_ip: Counter[str] = Counter()
        self._evicted = 0
        self._refused = 0
        self._refused_logged_at = float("-inf")
        self._background: list[asyncio.Task[None]] = []
        self._closed = False

    # --- start ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if getattr(sslproto.SSLProtocol, "max_size", 0) > TLS_READ_BUFFER:
            sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
        try:
            await asyncio.to_thread(make_private_dir, self.data_dir)
        except OSError as exc:
            raise StartupError(
                f"cannot create data directory {self.data_dir}: {exc.strerror}"
            ) from None
        try:
            self._lock.acquire()
        except DataDirBusy as exc:
            raise StartupError(str(exc)) from None
        except OSError as exc:
            raise StartupError(
                f"cannot lock data directory {self.data_dir}: {exc.strerror}"
            ) from None
        try:
            await self._start_locked()
        except BaseException:
            self._lock.release()
            raise

    async def _start_locked(self) -> None:
        cfg = self.config
        cert, key = cfg.cert, cfg.key
        if cert is None or key is None:
            from tlschat import certs

            cert, key = await asyncio.to_thread(certs.ensure_server_cert, self.data_dir, cfg.name)
        assert cert is not None
        assert key is not None
        self.cert_path = cert
        self.ssl_context = tls.server_context(
            cert, key, tls_min=cfg.tls_min, client_ca=cfg.client_ca, keylog=cfg.keylog
        )
        self.fingerprint = tls.fingerprint_file(cert)
        try:
            await self.store.open()
        except Exception as exc:
            raise StartupError(f"cannot open database in {self.data_dir}: {exc}") from None
        last_id = await self.store.max_message_id()
        await self._load_rooms()
        self.files = FileStore(cfg, self.data_dir, self.store)
        self.rules = Rules(Context(cfg, self.store, self.hub, self.registry, self.files, last_id))
        try:
            self._listener = await asyncio.start_server(
                self._accept, cfg.host, cfg.port, backlog=min(cfg.max_conns, 4096)
            )
        except OSError as exc:
            await self.store.close()
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(f"port {cfg.port} is already in use on {cfg.host}") from None
            raise StartupError(
                f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}"
            ) from None
        self.port = self._listener.sockets[0].getsockname()[1]
        # Only once startup can no longer fail: the file service starts its own cleanup tasks.
        self.files.start()
        self._background = [
            asyncio.create_task(self._every(FLUSH_INTERVAL, self.rules.flush_marks)),
            asyncio.create_task(self._every(HOUSEKEEPING_INTERVAL, self.rules.expire_invitations)),
        ]
        log.info("accepting connections on %s:%d", cfg.host, self.port)

    async def _load_rooms(self) -> None:
        for stored in await self.store.load_rooms():
            if not stored.members:
                # Only guests were in it when the daemon stopped: their memberships ended.
                await self.store.delete_room(stored.room_key)
                continue
            room = Room(name=stored.name, public=stored.public)
            for member in stored.members:
                room.members[member.nick_key] = member.nick
                room.joined_after[member.nick_key] = member.joined_after
            self.registry.add_room(room)
            for invite in stored.invites:
                room.invites[invite.nick_key] = Invitation(
                    nick=invite.nick_key, by=invite.by, created=invite.created
                )

    async def _every(self, seconds: float, job: object) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()  # type: ignore[operator]
            except StoreUnavailable as exc:
                # Disk full or the like: said in one line; the job runs again next time.
                log.warning("background job postponed: %s", exc.message)
            except Exception:
                log.exception("background job failed")

    # --- connections ---------------------------------------------------------------------------

    def _over_limit(self, ip: str) -> str | None:
        cfg = self.config
        if len(self._connections) >= cfg.max_conns:
            return "max_conns"
        if self._per_ip[ip] >= cfg.max_per_ip:
            return "max_per_ip"
        if self._waiting_per_ip[ip] >= cfg.max_unauth_per_ip:
            return "max_unauth_per_ip"
        return None

    def _make_room_to_wait(self) -> None:
        """All `max_unauth` places for connections not yet logged in are taken: the one that has
        waited longest goes (PROTOCOL.md), so a flood of silent connections from many addresses
        slows a prompt client down but never shuts it out."""
        while len(self._waiting) >= self.config.max_unauth:
            oldest, drop = next(iter(self._waiting.items()))
            del self._waiting[oldest]
            drop()
            self._evicted += 1
            self._log_refusal("many addresses", "max_unauth: closed the longest-waiting one")

    def _log_refusal(self, ip: str, why: str) -> None:
        """One warning per REFUSAL_LOG_INTERVAL, with a count: a flood must not flood the log."""
        now = asyncio.get_running_loop().time()
        self._refused += 1
        if now - self._refused_logged_at >= REFUSAL_LOG_INTERVAL:
            log.warning("refused %d connection(s), latest from %s: %s", self._refused, ip, why)
            self._refused = 0
            self._refused_logged_at = now

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A TCP connection: check the limits first, then the TLS handshake, then the session."""
        peer = writer.get_extra_info("peername")
        ip = str(peer[0]) if peer else "?"
        refused = self._over_limit(ip) if not self._closed else "closing"
        if refused:
            # Before any TLS work: a flood of silent connections costs a socket each, no more.
            writer.transport.abort()
            self._log_refusal(ip, refused)
            return
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        accepted_at = loop.time()
        self._make_room_to_wait()
        self._connections.add(task)
        self._per_ip[ip] += 1
        self._waiting_per_ip[ip] += 1
        waiting = True
        raw = writer.transport
        session: Session | None = None
        evicted = False

        def drop() -> None:
            """Evict: a session is aborted; a handshake in progress is cancelled (so asyncio's
            start_tls cleans up after itself rather than finding its transport gone)."""
            nonlocal evicted
            evicted = True
            if session is not None:
                session.abort("evicted")
            else:
                task.cancel()

        self._waiting[task] = drop

        def logged_in() -> None:
            nonlocal waiting
            if waiting:
                waiting = False
                self._waiting.pop(task, None)
                self._stop_waiting(ip)

        try:
            assert self.ssl_context is not None
            try:
                await writer.start_tls(
                    self.ssl_context, ssl_handshake_timeout=self.config.handshake_timeout
                )
            except (ssl.SSLError, ConnectionError, OSError, TimeoutError, AttributeError) as exc:
                # AttributeError: asyncio's start_tls returns no transport when the connection
                # was dropped during the handshake (evicted as the longest waiting, say).
                log.debug("TLS handshake with %s failed: %s", ip, exc)
                (writer.transport or raw).abort()
                return
            except asyncio.CancelledError:
                if not evicted:
                    raise
                return
            ssl_object = writer.get_extra_info("ssl_object")
            if ssl_object is None or ssl_object.selected_alpn_protocol() != ALPN:
                # Not a tlschat client (PROTOCOL.md "Transport": ALPN tlschat/1 or nothing).
                log.info("closed connection from %s: no ALPN %s", ip, ALPN)
                writer.transport.abort()
                return
            peer_cn = tls.peer_common_name(ssl_object) if self.config.client_ca else None
            assert self.rules is not None
            session = Session(
                self.rules,
                self.hub,
                self.config,
                reader,
                writer,
                peer_ip=ip,
                peer_cn=peer_cn,
                accepted_at=accepted_at,
                on_login=logged_in,
            )
            self._sessions.add(session)
            await session.run()
        finally:
            if session is not None:
                self._sessions.discard(session)
            self._connections.discard(task)
            self._per_ip[ip] -= 1
            if self._per_ip[ip] <= 0:
                del self._per_ip[ip]
            if waiting:
                self._waiting.pop(task, None)
                self._stop_waiting(ip)

    def _stop_waiting(self, ip: str) -> None:
        self._waiting_per_ip[ip] -= 1
        if self._waiting_per_ip[ip] <= 0:
            del self._waiting_per_ip[ip]

    # --- stop ----------------------------------------------------------------------------------

    async def close(self, reason: str = "server shutting down") -> None:
        """`bye` to every client, close, flush storage. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._listener.close()
        for task in self._background:
            task.cancel()
        bye = Bye(reason=reason)
        for session in list(self._sessions):
            session.shutdown(bye, "shutdown")
        if self._connections:
            _, pending = await asyncio.wait(set(self._connections), timeout=5)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)
        try:
            if self.files is not None:
                await self.files.close()
            if self.rules is not None:
                await self.rules.flush_marks()
        except Exception:
            log.exception("flushing delivery marks")
        await self.store.close()
        self._lock.release()
        log.info("stopped")


# --- the command ------------------------------------------------------------------------------


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def listening_line(data_dir: Path, host: str, port: int, tls_min: str) -> str:
    """The startup line that says where the daemon listens (scripts read it: `listen_port`)."""
    shown_host = host if ":" not in host else f"[{host}]"
    return f"tlschat {data_dir}: listening on {shown_host}:{port} (TLS {tls_min}+)"


def listen_port(line: str) -> int | None:
    """The port in a `listening_line`, or None for any other line (`--port 0` prints the real one)."""
    if not line.startswith("tlschat ") or ": listening on " not in line:
        return None
    return int(line.rsplit(":", 1)[1].split()[0])


async def _serve(config: ServerConfig) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_stop(signum: int, frame: object) -> None:
        loop.call_soon_threadsafe(stop.set)

    def on_hangup(signum: int, frame: object) -> None:
        loop.call_soon_threadsafe(log.warning, "SIGHUP ignored: this version reloads nothing")

    # Python-level handlers, not loop.add_signal_handler: asyncio hands a signal to the loop
    # through its self-pipe, and under load (thousands of connections, store threads waking the
    # loop) that pipe can be full, so the signal was lost (BlockingIOError) and the daemon stayed
    # up. A Python handler always runs; call_soon_threadsafe only needs the loop to turn.
    # Installed before anything starts, so no signal finds the default action (SIGHUP kills).
    previous = {sig: signal.signal(sig, on_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hangup)
    server = ChatServer(config)
    started = False
    try:
        await server.start()
        started = True
        print(
            listening_line(server.data_dir, config.host, server.port, config.tls_min),
            file=sys.stderr,
        )
        print(f"certificate: {server.cert_path}", file=sys.stderr)
        print(f"SHA-256 fingerprint: {server.fingerprint}", file=sys.stderr, flush=True)
        if config.keylog:
            log.warning(
                "!!! --keylog is on: TLS secrets are written to %s; anyone with that file can "
                "decrypt captured traffic. Use it only to debug. !!!",
                config.keylog,
            )
        await stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if started:
            await server.close()
    return 0


def run(config: ServerConfig) -> int:
    """`tlschat serve`: run until SIGINT/SIGTERM; exit status 0, or 2 with one line on stderr."""
    _setup_logging(config.log_level)
    # Everything the daemon creates (database, keys, uploads, their folders) is its own alone.
    os.umask(0o077)
    try:
        return asyncio.run(_serve(config))
    except (StartupError, ConfigError, TlsChatError) as exc:
        print(f"tlschat: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130
