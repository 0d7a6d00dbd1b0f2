"""The shared store: PostgreSQL through an asyncpg pool, for several daemons on one database.

Same semantics as `SqliteStore` (server/sqlite_store.py), method by method. Writes are
group-committed by one writer task per node: whatever was queued while the previous transaction
committed is written in the next one, and every caller is answered after that commit, in the
order of the batch. Reads take any connection of the pool. Blobs stay in the blob directory
(shared by the nodes); only their metadata is here.

Message ids come from one sequence. Every write transaction first takes one transaction-level
advisory lock (`pg_advisory_xact_lock(WRITE_LOCK)`), held until its COMMIT: the transactions
that take ids therefore commit one after another, in id order, on every node, so ids are unique
and increasing in commit order cluster-wide (an id is never committed after a greater one, which
a reader resuming after `last_seen` relies on). It also serializes the nodes' writes among
themselves, so two batches never wait on each other's rows (no deadlock), at the cost of one
transaction at a time across the cluster, each carrying a whole batch.

A lost or refused connection (PostgreSQL down, restarting, unreachable) raises
`StoreUnavailable`; the pool connects again on a later call, so the store recovers by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
from asyncpg import Pool

from tlschat.server import pg_search
from tlschat.server.pg_schema import migrate
from tlschat.server.search import SearchQuery
from tlschat.server.store import (
    NewMessage,
    StoredBlob,
    StoredConversation,
    StoredDelivery,
    StoredFile,
    StoredGuest,
    StoredInvite,
    StoredMember,
    StoredMessage,
    StoredRoom,
    StoredUser,
    StoreUnavailable,
    recipients_of,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection = PoolConnectionProxy[asyncpg.Record]
    """A connection lent by the pool."""
    Write = Callable[[Connection], Awaitable[Any]]

MAX_BATCH = 512
"""Writes at most in one transaction (a bound on the latency of the first one)."""
WRITE_LOCK = 0x746C7363_77726974
"""The advisory lock every write transaction holds ("tlscwrit"): see the module's docstring."""
BLOB_LOCK = 0x746C7363_626C6F62
"""The advisory lock of the shared files directory ("tlscblob"): uploads placing content hold
it shared, the garbage collection of any node exclusive (`blob_lock`)."""
POOL_MIN, POOL_MAX = 1, 10
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 15.0
"""Seconds a statement may take before the call fails as unavailable (a hung server, a lock
held by a stuck node)."""

_MESSAGE_COLUMNS = (
    "id, ts, sender, to_addr, text, file_id, room_key, edit_of, delete_of, edited, deleted,"
    " dm_a, dm_b, sender_id"
)
_MESSAGE_COLUMNS_M = ", ".join(f"m.{c.strip()}" for c in _MESSAGE_COLUMNS.split(","))
_NOT_ENTRY = "edit_of IS NULL AND delete_of IS NULL"
_FILE_COLUMNS = "id, name, uploader, sha256, size, mime, width, height"
_GUEST_COLUMNS = "nick_key, nick, identity, token_hash, held_until, last_delivered"


def redacted(dsn: str) -> str:
    """The DSN without its password (for logs and errors)."""
    parts = urllib.parse.urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def is_unavailability(exc: BaseException) -> bool:
    """A failure of the database rather than of the write: connection lost or refused, server
    shutting down or out of resources, a timeout, a deadlock or serialization failure."""
    if isinstance(exc, OSError | TimeoutError):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        return not isinstance(exc, asyncpg.DataError)  # that one is a bad argument
    return isinstance(
        exc,
        asyncpg.PostgresConnectionError  # class 08
        | asyncpg.InsufficientResourcesError  # 53: disk full, too many connections
        | asyncpg.OperatorInterventionError  # 57: shutdown, cannot connect now
        | asyncpg.TransactionRollbackError,  # 40: deadlock, serialization
    )


def _unavailable(exc: BaseException, message: str | None = None) -> StoreUnavailable:
    error = StoreUnavailable(message) if message else StoreUnavailable()
    error.__cause__ = exc
    return error


def _message(row: Any) -> StoredMessage:
    dm = (row[11], row[12]) if row[11] is not None else None
    return StoredMessage(
        id=row[0],
        ts=row[1],
        sender=row[2],
        to_addr=row[3],
        text=row[4],
        file_id=row[5],
        room_key=row[6],
        edit_of=row[7],
        delete_of=row[8],
        edited=row[9],
        deleted=row[10],
        dm=dm,
        sender_id=row[13],
    )


def _rows_changed(status: str) -> int:
    """The row count of a command status ("DELETE 3", "INSERT 0 1")."""
    return int(status.rsplit(" ", 1)[-1])


class _WriteFailed(Exception):
    """A write of a batch run without savepoints failed: run the batch again with them."""


class _BatchWriter:
    """The node's one writer: commits whatever is queued as one transaction."""

    def __init__(self, pool: Pool, observe: Callable[[float, int], None] | None) -> None:
        self.pool = pool
        self.observe = observe
        self.queue: list[tuple[Write, asyncio.Future[Any]]] = []
        self.wake = asyncio.Event()
        self.closing = False
        self.batches = 0
        self.writes = 0
        self.locked = False
        """The current attempt holds the write lock (its connection was alive)."""
        self.task = asyncio.create_task(self._serve(), name="tlschat-pg-writer")

    def submit(self, write: Write) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.queue.append((write, future))
        self.wake.set()
        return future

    async def close(self) -> None:
        self.closing = True
        self.wake.set()
        await self.task

    async def _serve(self) -> None:
        while True:
            if not self.queue:
                if self.closing:
                    return
                self.wake.clear()
                await self.wake.wait()
                continue
            # Everything queued while the previous batch committed goes in this one.
            batch, self.queue = self.queue[:MAX_BATCH], self.queue[MAX_BATCH:]
            try:
                results = await self._commit(batch)
            except Exception as exc:  # the writer never dies: this batch fails, the next runs
                log.exception("store writer failed")
                results = [(future, None, _unavailable(exc)) for _, future in batch]
            # Woken in batch (id) order: their callbacks run in this order on the loop.
            for future, value, error in results:
                if future.done():
                    continue
                if error is None:
                    future.set_result(value)
                else:
                    future.set_exception(error)

    async def _commit(
        self, batch: list[tuple[Write, asyncio.Future[Any]]]
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        started = time.perf_counter()
        for attempt in (1, 2):
            self.locked = False
            try:
                async with self.pool.acquire() as conn:
                    try:
                        values = await self._run(conn, batch, savepoints=False)
                    except _WriteFailed:
                        values = await self._run(conn, batch, savepoints=True)
            except Exception as exc:
                if not is_unavailability(exc):
                    raise
                if attempt == 1 and not self.locked and isinstance(exc, _STALE_CONNECTION):
                    # The pooled connection was dead before its first statement (the server
                    # restarted meanwhile): nothing ran, so the batch runs again on a new one.
                    # A connection lost later may have lost it during COMMIT: no retry then.
                    continue
                log.warning("store commit failed: %s", exc)
                return [(future, None, _unavailable(exc)) for _, future in batch]
            break
        self.batches += 1
        self.writes += len(batch)
        if self.observe is not None:
            self.observe(time.perf_counter() - started, len(batch))
        return [
            (future, None if isinstance(value, BaseException) else value, _error_of(value))
            for (_, future), value in zip(batch, values, strict=True)
        ]

    async def _run(
        self, conn: Connection, batch: list[tuple[Write, asyncio.Future[Any]]], *, savepoints: bool
    ) -> list[Any]:
        """One transaction: the lock, then every write (each in a savepoint if asked: one that
        fails then fails alone); its results, or the exceptions of the writes that failed."""
        values: list[Any] = []
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK)
            self.locked = True
            for write, _ in batch:
                if not savepoints:
                    try:
                        values.append(await write(conn))
                    except asyncpg.PostgresError as exc:
                        if is_unavailability(exc):
                            raise
                        raise _WriteFailed from exc
                    continue
                try:
                    async with conn.transaction():
                        values.append(await write(conn))
                except asyncpg.PostgresError as exc:
                    if is_unavailability(exc):
                        raise
                    values.append(exc)
        return values


_STALE_CONNECTION = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,
    ConnectionResetError,
    BrokenPipeError,
)


def _error_of(value: Any) -> BaseException | None:
    return value if isinstance(value, BaseException) else None


class PgStore:
    """The `Store` on a PostgreSQL database. `await open()` first; `await close()` at the end."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._pool: Pool | None = None
        self._writer: _BatchWriter | None = None
        self.observe_commit: Callable[[float, int], None] | None = None
        """Set before `open()`: called after each commit with (seconds, writes in the batch)."""

    async def open(self) -> None:
        """Connect, and bring the schema up to date. Raise (asyncpg.PostgresError, OSError) when
        the database cannot be reached; nothing is left open then."""
        await asyncio.to_thread(pg_search.warm_up)
        pool = await asyncpg.create_pool(
            self.dsn,
            min_size=POOL_MIN,
            max_size=POOL_MAX,
            timeout=CONNECT_TIMEOUT,
            command_timeout=COMMAND_TIMEOUT,
        )
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        self._writer = _BatchWriter(pool, self.observe_commit)
        log.info("store: PostgreSQL %s", redacted(self.dsn))

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), CONNECT_TIMEOUT)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pool.terminate()

    @property
    def commits(self) -> tuple[int, int]:
        """(transactions committed, writes in them) since open: the group-commit ratio."""
        return (self._writer.batches, self._writer.writes) if self._writer else (0, 0)

    def _write(self, write: Callable[[Connection], Awaitable[T]]) -> asyncio.Future[T]:
        if self._writer is None:
            raise StoreUnavailable("the store is closed")
        return self._writer.submit(write)

    async def _read(self, read: Callable[[Connection], Awaitable[T]]) -> T:
        if self._pool is None:
            raise StoreUnavailable("the store is closed")
        for attempt in (1, 2):
            try:
                async with self._pool.acquire() as conn:
                    return await read(conn)
            except Exception as exc:
                if not is_unavailability(exc):
                    raise
                if attempt == 1 and isinstance(exc, _STALE_CONNECTION):
                    continue  # a connection closed by a restart: reads may simply run again
                raise _unavailable(exc, "the server cannot read its store right now") from exc
        raise AssertionError("unreachable")

    async def read(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one query (tests and tools; the rules use the typed methods)."""
        args = tuple(params)
        rows = await self._read(lambda c: c.fetch(sql, *args))
        return [tuple(row) for row in rows]

    # --- users ---------------------------------------------------------------------------------

    async def get_user(self, nick_key: str) -> StoredUser | None:
        row = await self._read(
            lambda c: c.fetchrow(
                "SELECT nick, pw_hash, last_delivered FROM users WHERE nick_key = $1", nick_key
            )
        )
        return StoredUser(*row) if row else None

    async def create_user(self, nick_key: str, nick: str, pw_hash: str) -> bool:
        created = time.time()

        async def write(c: Connection) -> bool:
            status = await c.execute(
                "INSERT INTO users (nick_key, nick, pw_hash, created) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT DO NOTHING",
                nick_key,
                nick,
                pw_hash,
                created,
            )
            return _rows_changed(status) == 1

        return await self._write(write)

    async def registered_nicks(self, keys: Iterable[str]) -> dict[str, str]:
        wanted = list(keys)
        if not wanted:
            return {}
        rows = await self._read(
            lambda c: c.fetch(
                "SELECT nick_key, nick FROM users WHERE nick_key = ANY($1::text[])", wanted
            )
        )
        return {row[0]: row[1] for row in rows}

    async def set_last_delivered(self, marks: dict[str, int]) -> None:
        if not marks:
            return
        keys, ids = list(marks), list(marks.values())
        await self._write(
            lambda c: c.execute(
                "UPDATE users SET last_delivered = GREATEST(users.last_delivered, m.mark)"
                " FROM unnest($1::text[], $2::bigint[]) AS m(key, mark)"
                " WHERE users.nick_key = m.key",
                keys,
                ids,
            )
        )

    # --- administration ------------------------------------------------------------------------

    async def bans(self) -> dict[str, str]:
        rows = await self._read(lambda c: c.fetch("SELECT nick_key, reason FROM bans"))
        return {row[0]: row[1] for row in rows}

    async def ban(self, nick_key: str, reason: str) -> None:
        created = time.time()
        await self._write(
            lambda c: c.execute(
                "INSERT INTO bans (nick_key, reason, created) VALUES ($1, $2, $3)"
                " ON CONFLICT (nick_key) DO UPDATE SET reason = excluded.reason,"
                " created = excluded.created",
                nick_key,
                reason,
                created,
            )
        )

    async def unban(self, nick_key: str) -> bool:
        async def write(c: Connection) -> bool:
            return (
                _rows_changed(await c.execute("DELETE FROM bans WHERE nick_key = $1", nick_key)) > 0
            )

        return await self._write(write)

    # --- guests --------------------------------------------------------------------------------

    async def get_guest(self, nick_key: str) -> StoredGuest | None:
        row = await self._read(
            lambda c: c.fetchrow(
                f"SELECT {_GUEST_COLUMNS} FROM guests WHERE nick_key = $1", nick_key
            )
        )
        return StoredGuest(*row) if row else None

    async def put_guest(self, guest: StoredGuest) -> None:
        async def write(c: Connection) -> None:
            # SQLite's INSERT OR REPLACE: whichever row holds the nick or the identity goes.
            await c.execute(
                "DELETE FROM guests WHERE nick_key = $1 OR identity = $2",
                guest.nick_key,
                guest.identity,
            )
            await c.execute(
                f"INSERT INTO guests ({_GUEST_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)",
                guest.nick_key,
                guest.nick,
                guest.identity,
                guest.token_hash,
                guest.held_until,
                guest.last_delivered,
            )

        await self._write(write)

    async def hold_guest(self, nick_key: str, held_until: float, last_delivered: int) -> None:
        await self._write(
            lambda c: c.execute(
                "UPDATE guests SET held_until = $1, last_delivered = GREATEST(last_delivered, $2)"
                " WHERE nick_key = $3",
                held_until,
                last_delivered,
                nick_key,
            )
        )

    async def hold_online_guests(self, held_until: float, online: Iterable[str] = ()) -> None:
        keep = list(online)
        await self._write(
            lambda c: c.execute(
                "UPDATE guests SET held_until = $1 WHERE held_until IS NULL"
                " AND NOT nick_key = ANY($2::text[])",
                held_until,
                keep,
            )
        )

    async def guests_held_until(self, moment: float) -> list[StoredGuest]:
        rows = await self._read(
            lambda c: c.fetch(f"SELECT {_GUEST_COLUMNS} FROM guests WHERE held_until <= $1", moment)
        )
        return [StoredGuest(*row) for row in rows]

    async def delete_guest(self, nick_key: str, identity: str) -> None:
        async def write(c: Connection) -> None:
            await c.execute("DELETE FROM guests WHERE nick_key = $1", nick_key)
            await c.execute("DELETE FROM members WHERE nick_key = $1", nick_key)
            await c.execute("DELETE FROM invites WHERE nick_key = $1", nick_key)
            await c.execute("DELETE FROM read_markers WHERE identity = $1", identity)

        await self._write(write)

    async def identity_nicks(self, identities: Iterable[str]) -> dict[str, str]:
        wanted = list(dict.fromkeys(identities))
        if not wanted:
            return {}
        rows = await self._read(
            lambda c: c.fetch(
                "SELECT nick_key, nick FROM users WHERE nick_key = ANY($1::text[])"
                " UNION ALL SELECT identity, nick FROM guests WHERE identity = ANY($1::text[])",
                wanted,
            )
        )
        return {row[0]: row[1] for row in rows}

    # --- conversations and read markers ----------------------------------------------------------

    async def conversations(
        self, identity: str, nick_key: str, rooms: dict[str, int], limit: int
    ) -> list[StoredConversation]:
        keys, joined = list(rooms), list(rooms.values())

        async def read(c: Connection) -> list[StoredConversation]:
            # Unread: messages others sent after the marker, not entries, not deleted
            # (`lower(sender)` folds ASCII only, as SQLite's does, in the C locale).
            direct = await c.fetch(
                "WITH conv AS ("
                "  SELECT CASE WHEN dm_a = $1 THEN dm_b ELSE dm_a END AS partner,"
                "   id, sender, deleted FROM messages"
                f"  WHERE (dm_a = $1 OR dm_b = $1) AND {_NOT_ENTRY})"
                " SELECT conv.partner, MAX(conv.id), COALESCE(r.read_id, 0),"
                "  COUNT(*) FILTER (WHERE conv.id > COALESCE(r.read_id, 0)"
                "   AND lower(conv.sender) <> $2 AND NOT conv.deleted)"
                " FROM conv LEFT JOIN read_markers AS r"
                "  ON r.identity = $1 AND r.conversation = '@' || conv.partner"
                " GROUP BY conv.partner, r.read_id",
                identity,
                nick_key,
            )
            in_rooms = await c.fetch(
                "SELECT g.key, COALESCE(r.read_id, 0),"
                "  (SELECT COALESCE(MAX(id), 0) FROM messages"
                f"   WHERE room_key = g.key AND id > g.after AND {_NOT_ENTRY}),"
                "  (SELECT COUNT(*) FROM messages WHERE room_key = g.key"
                "   AND id > GREATEST(g.after, COALESCE(r.read_id, 0))"
                f"   AND lower(sender) <> $3 AND {_NOT_ENTRY} AND NOT deleted)"
                " FROM unnest($1::text[], $2::bigint[]) AS g(key, after)"
                " LEFT JOIN read_markers AS r"
                "  ON r.identity = $4 AND r.conversation = '#' || g.key",
                keys,
                joined,
                nick_key,
                identity,
            )
            found = [
                StoredConversation(last_id, partner=partner, read=mark, unread=unread)
                for partner, last_id, mark, unread in direct
            ]
            found += [
                StoredConversation(last_id, room_key=key, read=mark, unread=unread)
                for key, mark, last_id, unread in in_rooms
            ]
            found.sort(key=lambda conv: conv.last_id, reverse=True)
            return found[:limit]

        return await self._read(read)

    async def set_read(self, identity: str, conversation: str, msg_id: int) -> int:
        async def write(c: Connection) -> int:
            now = await c.fetchval(
                "INSERT INTO read_markers (identity, conversation, read_id) VALUES ($1, $2, $3)"
                " ON CONFLICT (identity, conversation)"
                " DO UPDATE SET read_id = GREATEST(read_markers.read_id, excluded.read_id)"
                " RETURNING read_id",
                identity,
                conversation,
                msg_id,
            )
            return int(now)

        return await self._write(write)

    # --- rooms ---------------------------------------------------------------------------------

    async def load_rooms(self, room_key: str | None = None) -> list[StoredRoom]:
        # `$1 IS NULL OR room_key = $1`: every room, or the one asked for.
        only = "($1::text IS NULL OR room_key = $1)"

        async def read(c: Connection) -> list[StoredRoom]:
            rooms: dict[str, StoredRoom] = {}
            for key, name, public, topic in await c.fetch(
                f"SELECT room_key, name, public, topic FROM rooms WHERE {only}", room_key
            ):
                rooms[key] = StoredRoom(key, name, public, topic=topic)
            for key, nick_key, nick, joined_after in await c.fetch(
                "SELECT room_key, nick_key, nick, joined_after FROM members"
                f" WHERE {only} ORDER BY seq",
                room_key,
            ):
                if key in rooms:
                    rooms[key].members.append(StoredMember(nick_key, nick, joined_after))
            for key, nick_key, by, created in await c.fetch(
                f"SELECT room_key, nick_key, by_nick, created FROM invites WHERE {only}", room_key
            ):
                if key in rooms:
                    rooms[key].invites.append(StoredInvite(nick_key, by, created))
            for key, nick_key, until in await c.fetch(
                f"SELECT room_key, nick_key, until FROM kicks WHERE {only} AND until > $2",
                room_key,
                time.time(),
            ):
                if key in rooms:
                    rooms[key].kicked[nick_key] = until
            return list(rooms.values())

        return await self._read(read)

    async def create_room(
        self,
        room_key: str,
        name: str,
        public: bool,
        creator: StoredMember | None,
        topic: str = "",
    ) -> None:
        created = time.time()

        async def write(c: Connection) -> None:
            # SQLite's INSERT OR REPLACE: a room of that key goes first, with its members,
            # invitations and kicks (ON DELETE CASCADE); its messages stay.
            await c.execute("DELETE FROM rooms WHERE room_key = $1", room_key)
            await c.execute(
                "INSERT INTO rooms (room_key, name, public, created, topic)"
                " VALUES ($1, $2, $3, $4, $5)",
                room_key,
                name,
                public,
                created,
                topic,
            )
            if creator is not None:
                await _add_member(c, room_key, creator)

        await self._write(write)

    async def set_topic(self, room_key: str, topic: str) -> None:
        await self._write(
            lambda c: c.execute("UPDATE rooms SET topic = $1 WHERE room_key = $2", topic, room_key)
        )

    async def add_kick(self, room_key: str, nick_key: str, until: float) -> None:
        now = time.time()

        async def write(c: Connection) -> None:
            await c.execute("DELETE FROM kicks WHERE until <= $1", now)
            await c.execute(
                "INSERT INTO kicks (room_key, nick_key, until) VALUES ($1, $2, $3)"
                " ON CONFLICT (room_key, nick_key) DO UPDATE SET until = excluded.until",
                room_key,
                nick_key,
                until,
            )

        await self._write(write)

    async def delete_room(self, room_key: str) -> None:
        async def write(c: Connection) -> None:
            await c.execute("DELETE FROM messages WHERE room_key = $1", room_key)
            await c.execute("DELETE FROM rooms WHERE room_key = $1", room_key)

        await self._write(write)

    async def add_member(self, room_key: str, member: StoredMember) -> None:
        await self._write(lambda c: _add_member(c, room_key, member))

    async def remove_member(self, room_key: str, nick_key: str) -> None:
        await self._write(
            lambda c: c.execute(
                "DELETE FROM members WHERE room_key = $1 AND nick_key = $2", room_key, nick_key
            )
        )

    async def add_invite(self, room_key: str, invite: StoredInvite) -> None:
        await self._write(
            lambda c: c.execute(
                "INSERT INTO invites (room_key, nick_key, by_nick, created) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (room_key, nick_key) DO UPDATE SET by_nick = excluded.by_nick,"
                " created = excluded.created",
                room_key,
                invite.nick_key,
                invite.by,
                invite.created,
            )
        )

    async def delete_invite(self, room_key: str, nick_key: str) -> None:
        await self._write(
            lambda c: c.execute(
                "DELETE FROM invites WHERE room_key = $1 AND nick_key = $2", room_key, nick_key
            )
        )

    async def delete_invites_before(self, created: float) -> None:
        await self._write(lambda c: c.execute("DELETE FROM invites WHERE created < $1", created))

    # --- messages ------------------------------------------------------------------------------

    async def max_message_id(self) -> int:
        value = await self._read(lambda c: c.fetchval("SELECT COALESCE(MAX(id), 0) FROM messages"))
        return int(value)

    async def add_message(self, message: NewMessage) -> int:
        # The words are cut here, on the loop (microseconds), so the writer only sends SQL.
        deleting = message.delete_of is not None
        vector = None if deleting else pg_search.text_vector(message.text)
        return await self._write(lambda c: _insert_message(c, message, vector))

    async def deliveries_between(self, after: int, upto: int) -> list[StoredDelivery]:
        async def read(c: Connection) -> list[StoredDelivery]:
            messages = [
                _message(row)
                for row in await c.fetch(
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id > $1 AND id <= $2"
                    " ORDER BY id",
                    after,
                    upto,
                )
            ]
            rooms = sorted({m.room_key for m in messages if m.room_key})
            members: dict[str, list[tuple[str, int]]] = {}
            for room_key, nick_key, joined_after in await c.fetch(
                "SELECT room_key, nick_key, joined_after FROM members"
                " WHERE room_key = ANY($1::text[]) ORDER BY seq",
                rooms,
            ):
                members.setdefault(room_key, []).append((nick_key, joined_after))
            guests = sorted({i for m in messages for i in m.dm or () if i[:1] == "~"})
            rows = await c.fetch(
                "SELECT identity, nick_key FROM guests WHERE identity = ANY($1::text[])", guests
            )
            guest_keys = {identity: key for identity, key in rows}
            return [StoredDelivery(m, recipients_of(m, members, guest_keys)) for m in messages]

        return await self._read(read)

    async def replay(
        self, identity: str, rooms: dict[str, int], after: int, limit: int
    ) -> list[StoredMessage]:
        keys, joined = list(rooms), list(rooms.values())
        # Each conversation's newest `limit` from its own index, then the newest of them all.
        sql = (
            f"(SELECT {_MESSAGE_COLUMNS} FROM messages WHERE dm_a = $1 AND id > $2"
            "  ORDER BY id DESC LIMIT $5)"
            f" UNION ALL (SELECT {_MESSAGE_COLUMNS} FROM messages"
            "  WHERE dm_b = $1 AND dm_a <> $1 AND id > $2 ORDER BY id DESC LIMIT $5)"
            f" UNION ALL (SELECT {_MESSAGE_COLUMNS_M}"
            "  FROM unnest($3::text[], $4::bigint[]) AS g(key, after),"
            f"  LATERAL (SELECT {_MESSAGE_COLUMNS} FROM messages"
            "   WHERE room_key = g.key AND id > GREATEST($2, g.after)"
            "   ORDER BY id DESC LIMIT $5) AS m)"
            " ORDER BY id DESC LIMIT $5"
        )
        rows = await self._read(lambda c: c.fetch(sql, identity, after, keys, joined, limit))
        return [_message(row) for row in reversed(rows)]

    async def history(
        self,
        *,
        dm: tuple[str, str] | None = None,
        room_key: str | None = None,
        before: int | None,
        limit: int,
    ) -> tuple[list[StoredMessage], bool]:
        params: list[Any]
        if dm is not None:
            where, params = "dm_a = $1 AND dm_b = $2", sorted(dm)
        else:
            where, params = "room_key = $1", [room_key]
        if before is not None:
            params.append(before)
            where += f" AND id < ${len(params)}"
        params.append(limit + 1)
        sql = (
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE {where} AND {_NOT_ENTRY}"
            f" ORDER BY id DESC LIMIT ${len(params)}"
        )
        rows = await self._read(lambda c: c.fetch(sql, *params))
        more = len(rows) > limit
        return [_message(row) for row in reversed(rows[:limit])], more

    async def get_message(self, msg_id: int) -> StoredMessage | None:
        row = await self._read(
            lambda c: c.fetchrow(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = $1", msg_id)
        )
        return _message(row) if row else None

    async def search(
        self,
        query: SearchQuery,
        *,
        identity: str | None = None,
        dm: tuple[str, str] | None = None,
        rooms: dict[str, int],
        before: int | None,
        limit: int,
    ) -> tuple[list[StoredMessage], bool]:
        # The scope twice: as conversation lexemes inside the index (fast), and exactly in SQL
        # (rooms since joining, the very pair of a direct conversation).
        clauses: list[str] = []
        params: list[Any] = [""]
        scope: list[list[str]] = []

        def param(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        if identity is not None:
            mark = param(identity)
            clauses.append(f"(dm_a = {mark} OR dm_b = {mark})")
            scope.append([pg_search.party_lexeme(identity)])
        if dm is not None:
            dm_a, dm_b = sorted(dm)
            clauses.append(f"(dm_a = {param(dm_a)} AND dm_b = {param(dm_b)})")
            scope.append([pg_search.party_lexeme(party) for party in sorted(set(dm))])
        for room_key, joined_after in rooms.items():
            clauses.append(f"(room_key = {param(room_key)} AND id > {param(joined_after)})")
            scope.append([pg_search.room_lexeme(room_key)])
        if not clauses or before == 0:
            return [], False
        params[0] = pg_search.text_query(query, scope)
        if not params[0]:
            return [], False
        where = f"search @@ $1::tsquery AND ({' OR '.join(clauses)})"
        if before is not None:
            where += f" AND id < {param(before)}"
        sql = (
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE {where}"
            f" ORDER BY id DESC LIMIT {param(limit + 1)}"
        )
        rows = await self._read(lambda c: c.fetch(sql, *params))
        return [_message(row) for row in rows[:limit]], len(rows) > limit

    async def dm_partners(self, identity: str) -> set[str]:
        rows = await self._read(
            lambda c: c.fetch(
                "SELECT DISTINCT dm_b FROM messages WHERE dm_a = $1"
                " UNION SELECT DISTINCT dm_a FROM messages WHERE dm_b = $1",
                identity,
            )
        )
        return {row[0] for row in rows}

    # --- files (PROTOCOL.md "Files and images"; used by server/files.py) -----------------------

    async def file_blob(self, sha256: str) -> StoredBlob | None:
        row = await self._read(
            lambda c: c.fetchrow(
                "SELECT sha256, size, mime, width, height FROM blobs WHERE sha256 = $1", sha256
            )
        )
        return StoredBlob(*row) if row else None

    async def add_blob(self, blob: StoredBlob) -> None:
        created = time.time()
        await self._write(
            lambda c: c.execute(
                "INSERT INTO blobs (sha256, size, mime, width, height, created)"
                " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                blob.sha256,
                blob.size,
                blob.mime,
                blob.width,
                blob.height,
                created,
            )
        )

    async def blob_hashes(self) -> set[str]:
        rows = await self._read(lambda c: c.fetch("SELECT sha256 FROM blobs"))
        return {row[0] for row in rows}

    async def add_file(self, file_id: str, sha256: str, name: str, uploader: str) -> None:
        created = time.time()
        await self._write(
            lambda c: c.execute(
                "INSERT INTO files (id, sha256, name, uploader, created)"
                " VALUES ($1, $2, $3, $4, $5)",
                file_id,
                sha256,
                name,
                uploader,
                created,
            )
        )

    async def files(self, file_ids: Iterable[str]) -> dict[str, StoredFile]:
        ids = list(file_ids)
        if not ids:
            return {}
        rows = await self._read(
            lambda c: c.fetch(
                f"SELECT {_FILE_COLUMNS} FROM files JOIN blobs USING (sha256)"
                " WHERE id = ANY($1::text[])",
                ids,
            )
        )
        return {row[0]: StoredFile(*row) for row in rows}

    async def file_for(self, file_id: str, identity: str) -> StoredFile | None:
        row = await self._read(
            lambda c: c.fetchrow(
                f"SELECT {_FILE_COLUMNS} FROM files JOIN blobs USING (sha256) WHERE id = $1"
                " AND (uploader = $2 OR EXISTS"
                " (SELECT 1 FROM file_access WHERE file_id = $1 AND identity = $2))",
                file_id,
                identity,
            )
        )
        return StoredFile(*row) if row else None

    async def grant_file(self, file_id: str, identities: Iterable[str]) -> None:
        who = list(dict.fromkeys(identities))
        await self._write(lambda c: _grant(c, file_id, who))

    async def delete_unsent_files(
        self, created_before: float, keep: Iterable[str] = ()
    ) -> list[str]:
        """Delete the files created before `created_before` that no message carries, except
        those in `keep`, with their access rows (ON DELETE CASCADE); return their ids.

        One statement, so a message stored meanwhile either keeps its file or came too late.
        """
        kept = list(keep)
        rows = await self._write(
            lambda c: c.fetch(
                "DELETE FROM files WHERE created < $1"
                " AND NOT EXISTS (SELECT 1 FROM messages WHERE messages.file_id = files.id)"
                " AND NOT (id = ANY($2::text[])) RETURNING id",
                created_before,
                kept,
            )
        )
        return [row[0] for row in rows]

    @contextlib.asynccontextmanager
    async def blob_lock(self, *, exclusive: bool) -> AsyncIterator[None]:
        # A session-level lock on a connection of its own: PostgreSQL lets it go by itself if
        # this node dies holding it.
        if self._pool is None:
            raise StoreUnavailable("the store is closed")
        kind = "" if exclusive else "_shared"
        try:
            conn = await self._pool.acquire()
        except Exception as exc:
            if is_unavailability(exc):
                raise StoreUnavailable() from exc
            raise
        try:
            await conn.execute(f"SELECT pg_advisory_lock{kind}($1)", BLOB_LOCK)
            try:
                yield
            finally:
                await conn.execute(f"SELECT pg_advisory_unlock{kind}($1)", BLOB_LOCK)
        finally:
            await self._pool.release(conn)

    async def delete_unused_blobs(self) -> list[str]:
        """Delete the blobs no file row names; return their hashes (their content may go)."""
        rows = await self._write(
            lambda c: c.fetch(
                "DELETE FROM blobs"
                " WHERE NOT EXISTS (SELECT 1 FROM files WHERE files.sha256 = blobs.sha256)"
                " RETURNING sha256"
            )
        )
        return [row[0] for row in rows]


# --- the writes, run by the writer task in its transaction ---------------------------------------


async def _add_member(c: Connection, room_key: str, member: StoredMember) -> None:
    # Re-adding takes a new `seq` (the end of the line for ownership), as SQLite's REPLACE does.
    await c.execute(
        "INSERT INTO members (room_key, nick_key, nick, joined_after) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (room_key, nick_key) DO UPDATE SET nick = excluded.nick,"
        " joined_after = excluded.joined_after, seq = excluded.seq",
        room_key,
        member.nick_key,
        member.nick,
        member.joined_after,
    )
    await c.execute(
        "DELETE FROM invites WHERE room_key = $1 AND nick_key = $2", room_key, member.nick_key
    )
    await c.execute(
        "DELETE FROM kicks WHERE room_key = $1 AND nick_key = $2", room_key, member.nick_key
    )


async def _insert_message(c: Connection, m: NewMessage, vector: str | None) -> int:
    """`vector`: the tsvector literal of the text (of a message, or of an edit's new text)."""
    target = m.edit_of if m.edit_of is not None else m.delete_of
    file_id = m.file_id
    if target is not None:
        # Checked here, in the transaction (which holds the write lock): a delete committed
        # just before, on any node, wins.
        row = await c.fetchrow(
            f"SELECT file_id FROM messages WHERE id = $1 AND NOT deleted AND {_NOT_ENTRY}",
            target,
        )
        if row is None:
            return 0
        file_id = None
    dm_a, dm_b = sorted(m.dm) if m.dm else (None, None)
    indexed = vector if target is None else None
    msg_id: int = await c.fetchval(
        "INSERT INTO messages (id, ts, sender, to_addr, dm_a, dm_b, room_key, text, file_id,"
        " sender_id, edit_of, delete_of, search) VALUES (nextval('message_ids'),"
        " $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
        " $12::tsvector || tlschat_conversation($6, $4, $5)) RETURNING id",
        m.ts,
        m.sender,
        m.to_addr,
        dm_a,
        dm_b,
        m.room_key,
        m.text,
        file_id,
        m.sender_id or None,
        m.edit_of,
        m.delete_of,
        indexed,
    )
    if m.edit_of is not None:
        await c.execute(
            "UPDATE messages SET text = $1, edited = $2,"
            " search = $3::tsvector || tlschat_conversation(room_key, dm_a, dm_b) WHERE id = $4",
            m.text,
            m.ts,
            vector,
            target,
        )
    elif m.delete_of is not None:
        assert row is not None  # checked above: a delete's target exists
        await _delete(c, m.delete_of, row[0])
    elif m.file_id is not None and m.grant:
        await _grant(c, m.file_id, list(dict.fromkeys(m.grant)))
    return msg_id


async def _delete(c: Connection, msg_id: int, file_id: str | None) -> None:
    """Message `msg_id` is deleted: its text goes (and its search vector), and so does the text
    of its edit entries (the replay sends them again); its file is the uploader's alone unless
    another message still carries it."""
    await c.execute(
        "UPDATE messages SET text = '', deleted = true, search = NULL WHERE id = $1", msg_id
    )
    await c.execute("UPDATE messages SET text = '' WHERE edit_of = $1", msg_id)
    if file_id is not None:
        await c.execute(
            "DELETE FROM file_access WHERE file_id = $1 AND NOT EXISTS"
            " (SELECT 1 FROM messages WHERE file_id = $1 AND NOT deleted)",
            file_id,
        )


async def _grant(c: Connection, file_id: str, identities: list[str]) -> None:
    """Let these identities download the file (they received a message carrying it)."""
    await c.execute(
        "INSERT INTO file_access (file_id, identity) SELECT $1, who FROM unnest($2::text[]) AS who"
        " WHERE EXISTS (SELECT 1 FROM files WHERE id = $1) ON CONFLICT DO NOTHING",
        file_id,
        identities,
    )
