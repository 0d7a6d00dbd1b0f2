"""The daemon: TLS listener, connection limits, startup and graceful shutdown."""

from __future__ import annotations

import asyncio
import datetime
import errno
import logging
import os
import re
import signal
import ssl
import sys
from asyncio import sslproto
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from tlschat import __version__, tls
from tlschat.config import ConfigError, ServerConfig
from tlschat.protocol import ALPN, Bye, TlsChatError, encode
from tlschat.server import metrics
from tlschat.server.connection import Session
from tlschat.server.datadir import DataDirBusy, DataDirLock, make_private_dir
from tlschat.server.files import FileStore
from tlschat.server.hub import LocalHub
from tlschat.server.registry import Registry
from tlschat.server.rules import Context, Rules
from tlschat.server.rules.base import room_from_store
from tlschat.server.rules.messages import message_frames
from tlschat.server.sqlite_store import SqliteStore
from tlschat.server.store import StoreUnavailable

if TYPE_CHECKING:
    from tlschat.server.pg_store import PgStore
    from tlschat.server.redis_hub import FetchMissing, StreamMessage

log = logging.getLogger("tlschat.server")

# asyncio's TLS transport gives every connection a 256 KiB receive buffer (CPython's
# sslproto.SSLProtocol.max_size), most of the daemon's memory per connection. A TLS record is at
# most ~16 KiB, so 16 KiB still takes one per read; measured by benchmarks/run.py (idle).
TLS_READ_BUFFER = 16 * 1024

FLUSH_INTERVAL = 2.0
CLOSE_WAIT = 3.5
"""Seconds shutdown waits for connections to take their `bye` (a session's own close is 3 s)."""
REFUSAL_LOG_INTERVAL = 10.0
HOUSEKEEPING_INTERVAL = 3600.0
EXPIRY_CHECK_INTERVAL = 24 * 3600.0
EXPIRY_WARNING = datetime.timedelta(days=14)
"""A certificate this close to its end is warned about at start and daily."""


class StartupError(TlsChatError):
    """The daemon cannot start; the message is one line for the user."""


def make_store(config: ServerConfig, data_dir: Path) -> SqliteStore | PgStore:
    """PostgreSQL when `--database` names one (several nodes share it), else the embedded
    SQLite file of the data directory."""
    store: SqliteStore | PgStore
    if config.database:
        # Imported here, as the Redis hub is: a single node never loads asyncpg.
        from tlschat.server.pg_store import PgStore

        store = PgStore(config.database)
    else:
        store = SqliteStore(data_dir / "tlschat.db")
    store.observe_commit = metrics.observe_commit
    return store


class ChatServer:
    """One tlschat daemon. `await start()`, then `await close()` (idempotent)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.data_dir = config.data_dir or platformdirs.user_data_path("tlschat")
        self.registry = Registry()
        self._rules_ready = asyncio.Event()
        self.hub = LocalHub() if config.redis is None else _redis_hub(config, self._fetch_missing)
        self.store = make_store(config, self.data_dir)
        self.metrics: metrics.MetricsServer | None = None
        self._lock = DataDirLock(self.data_dir)
        self.rules: Rules | None = None
        self.files: FileStore | None = None
        self.ssl_context: ssl.SSLContext | None = None
        self.cert_path: Path | None = None
        self.key_path: Path | None = None
        self.cert_expires: datetime.datetime | None = None
        self.fingerprint = ""
        self.port = 0
        self._listener: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._sessions: set[Session] = set()
        self._per_ip: Counter[str] = Counter()
        self._waiting: dict[str, dict[asyncio.Task[None], Callable[[], None]]] = {}
        """Connections not logged in yet, by address, oldest first, each with how to drop it."""
        self._waiting_count = 0
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
        self.cert_path, self.key_path = cert, key
        self.ssl_context = tls.server_context(
            cert, key, tls_min=cfg.tls_min, client_ca=cfg.client_ca, keylog=cfg.keylog
        )
        self.fingerprint = tls.fingerprint_file(cert)
        self.cert_expires = _expiry(cert)
        try:
            await self.store.open()
        except Exception as exc:
            if cfg.database:
                from tlschat.server.pg_store import redacted

                where = redacted(cfg.database)
            else:
                where = f"in {self.data_dir}"
            raise StartupError(f"cannot open database {where}: {exc}") from None
        last_id = await self.store.max_message_id()
        await self._join_cluster(last_id)
        await self._load_rooms()
        self.files = FileStore(cfg, self.data_dir, self.store)
        self.rules = Rules(Context(cfg, self.store, self.hub, self.registry, self.files, last_id))
        self._rules_ready.set()
        await self.rules.load()
        await self.rules.start()
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
        if cfg.metrics:
            try:
                self.metrics = metrics.MetricsServer(metrics.make_registry(self), cfg.metrics)
                self.metrics.start()
            except (ValueError, OSError) as exc:
                self._listener.close()
                await self.store.close()
                raise StartupError(f"cannot serve metrics on {cfg.metrics}: {exc}") from None
        # Only once startup can no longer fail: the file service starts its own cleanup tasks.
        self.files.start()
        self._background = [
            asyncio.create_task(self._every(FLUSH_INTERVAL, self.rules.flush_marks)),
            asyncio.create_task(self._every(HOUSEKEEPING_INTERVAL, self.rules.expire_invitations)),
            asyncio.create_task(self._every(EXPIRY_CHECK_INTERVAL, self._check_expiry)),
        ]
        if self.metrics is not None:
            self._background.append(asyncio.create_task(metrics.watch_loop_lag()))

    def start_line(self) -> str:
        """The one start-up line: version, address, fingerprint, certificate expiry."""
        cfg = self.config
        host = cfg.host if ":" not in cfg.host else f"[{cfg.host}]"
        expires = self.cert_expires.strftime("%Y-%m-%d") if self.cert_expires else "unknown"
        return (
            f"tlschat {__version__} listening on {host}:{self.port} (TLS {cfg.tls_min}+);"
            f" data {self.data_dir}; certificate {self.cert_path} expires {expires};"
            f" SHA-256 fingerprint {self.fingerprint}"
        )

    async def _check_expiry(self) -> None:
        """Warn about a certificate within 14 days of its end (at start and daily)."""
        expires = self.cert_expires
        if expires is None:
            return
        left = expires - datetime.datetime.now(datetime.UTC)
        if left <= datetime.timedelta(0):
            log.warning("certificate %s EXPIRED on %s", self.cert_path, expires.date())
        elif left <= EXPIRY_WARNING:
            log.warning(
                "certificate %s expires on %s (in %d days): renew it and send SIGHUP",
                self.cert_path,
                expires.date(),
                left.days,
            )

    def reload_tls(self) -> bool:
        """SIGHUP: load the certificate and key again; new connections get the new pair. A pair
        that cannot be used is refused with a log line, and the old one stays."""
        cfg = self.config
        cert, key = cfg.cert, cfg.key
        try:
            if cert is None or key is None:
                from tlschat import certs

                cert, key = certs.ensure_server_cert(self.data_dir, cfg.name)
            context = tls.server_context(
                cert, key, tls_min=cfg.tls_min, client_ca=cfg.client_ca, keylog=cfg.keylog
            )
            fingerprint = tls.fingerprint_file(cert)
            expires = _expiry(cert)
        except (TlsChatError, OSError, ValueError) as exc:
            log.error("reload refused, keeping the current certificate: %s", exc)
            return False
        self.ssl_context = context
        self.cert_path, self.key_path = cert, key
        self.fingerprint = fingerprint
        self.cert_expires = expires
        when = expires.strftime("%Y-%m-%d") if expires else "unknown"
        log.info(
            "reloaded certificate %s (expires %s; SHA-256 fingerprint %s)", cert, when, fingerprint
        )
        return True

    async def _load_rooms(self) -> None:
        for stored in await self.store.load_rooms():
            if not stored.members:
                # Only guests were in it when the daemon stopped: their memberships ended.
                await self.store.delete_room(stored.room_key)
                continue
            self.registry.add_room(room_from_store(stored))

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
        if len(self._waiting.get(ip, ())) >= cfg.max_unauth_per_ip:
            return "max_unauth_per_ip"
        return None

    def _make_room_to_wait(self) -> None:
        """All `max_unauth` places for connections not yet logged in are taken: the one that has
        waited longest goes (PROTOCOL.md), so a flood of silent connections from many addresses
        slows a prompt client down but never shuts it out. It is taken from the address that
        holds the most places: a flood that keeps re-opening its sockets is always younger than
        a client in the middle of its login, so age alone would push that client out."""
        while self._waiting_count >= self.config.max_unauth:
            ip = max(self._waiting, key=lambda address: len(self._waiting[address]))
            oldest = next(iter(self._waiting[ip]))
            drop = self._forget_waiting(ip, oldest)
            if drop is not None:
                drop()
            self._evicted += 1
            self._log_refusal(ip, "max_unauth: closed the longest-waiting connection")

    def connection_states(self) -> dict[str, int]:
        """Open connections by state: in the TLS handshake, not logged in yet, logged in."""
        not_logged_in = sum(1 for session in self._sessions if session.user is None)
        return {
            "handshake": max(0, self._waiting_count - not_logged_in),
            "not_logged_in": not_logged_in,
            "logged_in": len(self._sessions) - not_logged_in,
        }

    def _forget_waiting(self, ip: str, task: asyncio.Task[None]) -> Callable[[], None] | None:
        queue = self._waiting.get(ip)
        drop = queue.pop(task, None) if queue is not None else None
        if drop is not None:
            self._waiting_count -= 1
            if not queue:
                del self._waiting[ip]
        return drop

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
        raw = writer.transport
        session: Session | None = None

        def drop() -> None:
            """Evict: a session is aborted; a handshake in progress is cancelled (so asyncio's
            start_tls cleans up after itself rather than finding its transport gone)."""
            if session is None:
                task.cancel()
            elif not session.closing:  # a closing one is flushing its last frames (`bye`)
                session.abort("evicted")

        self._waiting.setdefault(ip, {})[task] = drop
        self._waiting_count += 1

        def logged_in() -> None:
            self._forget_waiting(ip, task)

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
        except asyncio.CancelledError:
            # Only we cancel these tasks (eviction, shutdown). Ending quietly matters: asyncio
            # reports a cancelled connection callback as an error, one log line per connection.
            pass
        finally:
            if session is not None:
                self._sessions.discard(session)
            self._connections.discard(task)
            self._per_ip[ip] -= 1
            if self._per_ip[ip] <= 0:
                del self._per_ip[ip]
            self._forget_waiting(ip, task)

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
        if self.rules is not None:
            self.rules.close()
        # Every client past its handshake gets `bye` and a bounded while to take it; those still
        # in their TLS handshake are dropped at once: SIGTERM always ends within 5 s.
        bye = Bye(reason=reason)
        for session in list(self._sessions):
            session.shutdown(bye, "shutdown")
        waiting, self._waiting, self._waiting_count = self._waiting, {}, 0
        for queue in waiting.values():
            for drop in queue.values():
                drop()
        if self._connections:
            _, pending = await asyncio.wait(set(self._connections), timeout=CLOSE_WAIT)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=0.5)
        try:
            if self.files is not None:
                await self.files.close()
            if self.rules is not None:
                await self.rules.flush_marks()
        except Exception:
            log.exception("flushing delivery marks")
        await self._leave_cluster()
        await self.store.close()
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.close)
        self._lock.release()
        log.info("stopped: storage flushed")

    # --- several nodes (--redis) ---------------------------------------------------------------

    async def _join_cluster(self, last_id: int) -> None:
        from tlschat.server.redis_hub import RedisHub

        if isinstance(self.hub, RedisHub):
            try:
                await self.hub.start(last_id)
            except ConnectionError as exc:
                await self.store.close()
                raise StartupError(str(exc)) from None

    async def _fetch_missing(
        self, after: int, upto: int, have: frozenset[int]
    ) -> list[StreamMessage]:
        """The hub's answer to ids no notification carried (a lost one; a node that died
        between its commit and its publish): the store's messages of that range, encoded as
        the rules encode them, with their recipients."""
        from tlschat.server.redis_hub import StreamMessage

        await self._rules_ready.wait()
        assert self.rules is not None
        deliveries = [
            d for d in await self.store.deliveries_between(after, upto) if d.message.id not in have
        ]
        frames = await message_frames(self.rules.ctx, [d.message for d in deliveries])
        return [
            StreamMessage(d.message.id, d.recipients, encode(frame))
            for d, frame in zip(deliveries, frames, strict=True)
        ]

    async def _leave_cluster(self) -> None:
        from tlschat.server.redis_hub import RedisHub

        if isinstance(self.hub, RedisHub):
            await self.hub.close()


def _redis_hub(config: ServerConfig, fetch_missing: FetchMissing) -> LocalHub:
    from tlschat.server.redis_hub import RedisHub

    assert config.redis is not None
    beat = config.node_heartbeat
    return RedisHub(config.redis, heartbeat=beat, node_ttl=3 * beat, fetch_missing=fetch_missing)


# --- the command ------------------------------------------------------------------------------


def sd_notify(state: str) -> bool:
    """Tell systemd (`Type=notify`) how we are: `READY=1`, `STOPPING=1`. No-op elsewhere."""
    import os
    import socket

    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("cannot notify systemd: %s", exc)
        return False
    return True


def _expiry(cert: Path) -> datetime.datetime | None:
    from tlschat import certs

    try:
        return certs.cert_expiry(cert)
    except (OSError, ValueError):
        return None


_LISTENING = re.compile(r"tlschat \S+ listening on \S+:(\d+) ")


def listen_port(line: str) -> int | None:
    """The port in the start-up line (`ChatServer.start_line`, text or JSON log), or None for
    any other line (`--port 0` logs the real one)."""
    found = _LISTENING.search(line)
    return int(found.group(1)) if found else None


async def _serve(config: ServerConfig) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_stop(signum: int, frame: object) -> None:
        loop.call_soon_threadsafe(stop.set)

    def on_hangup(signum: int, frame: object) -> None:
        loop.call_soon_threadsafe(reload)

    def reload() -> None:
        if started:  # before that, start() is loading the certificate anyway
            server.reload_tls()

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
        if config.keylog:
            log.warning(
                "!!! --keylog is on: TLS secrets are written to %s; anyone with that file can "
                "decrypt captured traffic. Use it only to debug. !!!",
                config.keylog,
            )
        # Once the signals are ours: a supervisor that reads this line may stop us at once.
        # Always written, whatever --log-level says: it tells where to connect and what
        # fingerprint to expect, and scripts wait for it (`listen_port`).
        log.handle(
            log.makeRecord(log.name, logging.INFO, __file__, 0, server.start_line(), (), None)
        )
        await server._check_expiry()
        sd_notify("READY=1")
        await stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if started:
            log.info("shutting down: bye to %d sessions", len(server._sessions))
            sd_notify("STOPPING=1")
            await server.close()
    return 0


def run(config: ServerConfig) -> int:
    """`tlschat serve`: run until SIGINT/SIGTERM; exit status 0, or 2 with one line on stderr."""
    from tlschat.server.logs import setup_logging

    setup_logging(config.log_level, config.log_format)
    # Everything the daemon creates (database, keys, uploads, their folders) is its own alone.
    os.umask(0o077)
    try:
        return asyncio.run(_serve(config))
    except (StartupError, ConfigError, TlsChatError) as exc:
        print(f"tlschat: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130
