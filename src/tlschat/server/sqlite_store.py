"""The embedded store: SQLite (WAL) behind one group-committing writer thread and one reader.

Every write is a small function of a `sqlite3.Connection`, queued for the writer thread. The
writer takes whatever is queued, runs it all in one `BEGIN ... COMMIT` (each write in its own
savepoint, so one failing write fails alone), and hands every result back to the event loop in
one call once the commit is durable: N messages arriving together cost one transaction and one
thread hand-off, and their ids are assigned and delivered in commit order. Reads run on a second
connection in its own thread (WAL readers never wait for the writer). Nothing here runs SQL on
the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

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
    no_lock,
    recipients_of,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_BATCH = 512
"""Writes at most in one transaction (a bound on the latency of the first one)."""

MIGRATIONS: list[str] = [
    """
    CREATE TABLE users (
        nick_key TEXT PRIMARY KEY,
        nick TEXT NOT NULL,
        pw_hash TEXT NOT NULL,
        created REAL NOT NULL,
        last_delivered INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE rooms (
        room_key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        public INTEGER NOT NULL,
        created REAL NOT NULL
    );
    CREATE TABLE members (
        room_key TEXT NOT NULL REFERENCES rooms(room_key) ON DELETE CASCADE,
        nick_key TEXT NOT NULL,
        nick TEXT NOT NULL,
        joined_after INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (room_key, nick_key)
    );
    CREATE TABLE invites (
        room_key TEXT NOT NULL REFERENCES rooms(room_key) ON DELETE CASCADE,
        nick_key TEXT NOT NULL,
        by_nick TEXT NOT NULL,
        created REAL NOT NULL,
        PRIMARY KEY (room_key, nick_key)
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts TEXT NOT NULL,
        sender TEXT NOT NULL,
        to_addr TEXT NOT NULL,
        dm_a TEXT,
        dm_b TEXT,
        room_key TEXT,
        text TEXT NOT NULL,
        file_id TEXT
    );
    CREATE INDEX messages_dm_a ON messages(dm_a, id) WHERE dm_a IS NOT NULL;
    CREATE INDEX messages_dm_b ON messages(dm_b, id) WHERE dm_b IS NOT NULL;
    CREATE INDEX messages_room ON messages(room_key, id) WHERE room_key IS NOT NULL;
    """,
    # 2: files (PROTOCOL.md "Files and images"). A blob is stored content once per SHA-256
    # (DATA/files/ab/cdef...); each upload is a file row with its own random id and display
    # name; file_access lists who received a message carrying it (the uploader is in files).
    """
    CREATE TABLE blobs (
        sha256 TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        mime TEXT NOT NULL,
        width INTEGER,
        height INTEGER,
        created REAL NOT NULL
    );
    CREATE TABLE files (
        id TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL REFERENCES blobs(sha256),
        name TEXT NOT NULL,
        uploader TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE TABLE file_access (
        file_id TEXT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        identity TEXT NOT NULL,
        PRIMARY KEY (file_id, identity)
    ) WITHOUT ROWID;
    """,
    # 3: garbage collection of files (server/files.py): find the messages carrying a file and
    # the files over a blob without scanning whole tables.
    """
    CREATE INDEX messages_file ON messages(file_id) WHERE file_id IS NOT NULL;
    CREATE INDEX files_sha256 ON files(sha256);
    """,
    # 4: guests survive a disconnect and a restart (the hold), and read markers. A guest's
    # memberships and invitations are stored like an account's from now on.
    """
    CREATE TABLE guests (
        nick_key TEXT PRIMARY KEY,
        nick TEXT NOT NULL,
        identity TEXT NOT NULL UNIQUE,
        token_hash TEXT NOT NULL,
        held_until REAL,
        last_delivered INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX guests_held ON guests(held_until) WHERE held_until IS NOT NULL;
    CREATE TABLE read_markers (
        identity TEXT NOT NULL,
        conversation TEXT NOT NULL,
        read_id INTEGER NOT NULL,
        PRIMARY KEY (identity, conversation)
    ) WITHOUT ROWID;
    """,
    # 5: room topics, kicks and bans (PROTOCOL.md "Groups" topic and kick, "Administration"
    # ban). A room's owner is not stored: it is the member who joined earliest (members.seq).
    # A kick row keeps a user out of a public room until `until` (10 minutes); joining again
    # (by an invitation) removes it.
    """
    ALTER TABLE rooms ADD COLUMN topic TEXT NOT NULL DEFAULT '';
    CREATE TABLE kicks (
        room_key TEXT NOT NULL REFERENCES rooms(room_key) ON DELETE CASCADE,
        nick_key TEXT NOT NULL,
        until REAL NOT NULL,
        PRIMARY KEY (room_key, nick_key)
    ) WITHOUT ROWID;
    CREATE TABLE bans (
        nick_key TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        created REAL NOT NULL
    );
    """,
    # 6: edit and delete, search (PROTOCOL.md "Edit and delete", "Search"). An edit or delete
    # is a new row (edit_of / delete_of) in the message sequence; the message's own row holds
    # it as it stands now (latest text and `edited`; `deleted` with empty text). sender_id is
    # the sender's identity: who may edit. messages_fts indexes the messages' current text
    # (external content: no second copy of the text), kept in step by triggers in the same
    # transaction as each write: entries are never indexed, deleted messages leave the index.
    # It also indexes `conv`, a word per conversation a message belongs to (`r` + the room
    # key in hex, or `d` + each party's identity in hex), so a search is confined to the user's
    # conversations inside FTS5 itself: a common word is not looked up message by message in
    # the whole server's history when the user can read only a little of it.
    """
    ALTER TABLE messages ADD COLUMN sender_id TEXT;
    ALTER TABLE messages ADD COLUMN edit_of INTEGER;
    ALTER TABLE messages ADD COLUMN delete_of INTEGER;
    ALTER TABLE messages ADD COLUMN edited TEXT;
    ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN conv TEXT GENERATED ALWAYS AS (
        CASE WHEN room_key IS NOT NULL THEN 'r' || hex(room_key)
        ELSE 'd' || hex(dm_a) || ' d' || hex(dm_b) END
    ) VIRTUAL;
    CREATE INDEX messages_edit_of ON messages(edit_of) WHERE edit_of IS NOT NULL;
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        text, conv, content='messages', content_rowid='id',
        tokenize='unicode61 remove_diacritics 0'
    );
    INSERT INTO messages_fts(rowid, text, conv) SELECT id, text, conv FROM messages;
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
    WHEN new.edit_of IS NULL AND new.delete_of IS NULL AND new.deleted = 0
    BEGIN
        INSERT INTO messages_fts(rowid, text, conv) VALUES (new.id, new.text, new.conv);
    END;
    CREATE TRIGGER messages_fts_update AFTER UPDATE OF text, deleted ON messages
    WHEN old.edit_of IS NULL AND old.delete_of IS NULL
    BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, text, conv)
            SELECT 'delete', old.id, old.text, old.conv WHERE old.deleted = 0;
        INSERT INTO messages_fts(rowid, text, conv)
            SELECT new.id, new.text, new.conv WHERE new.deleted = 0;
    END;
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
    WHEN old.edit_of IS NULL AND old.delete_of IS NULL AND old.deleted = 0
    BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, text, conv)
            VALUES ('delete', old.id, old.text, old.conv);
    END;
    """,
]


_MESSAGE_COLUMNS = (
    "id, ts, sender, to_addr, text, file_id, room_key, edit_of, delete_of, edited, deleted,"
    " dm_a, dm_b, sender_id"
)
_MESSAGE_COLUMNS_M = ", ".join(f"m.{c.strip()}" for c in _MESSAGE_COLUMNS.split(","))
_NOT_ENTRY = "edit_of IS NULL AND delete_of IS NULL"
_UNREAD = f"{_NOT_ENTRY} AND deleted = 0"
"""What `conversations` counts as unread: no edit or delete entry, and no deleted message."""
_FILE_COLUMNS = "id, name, uploader, sha256, size, mime, width, height"
_GUEST_COLUMNS = "nick_key, nick, identity, token_hash, held_until, last_delivered"

Write = Callable[[sqlite3.Connection], Any]
Read = Callable[[sqlite3.Connection], Any]


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
        deleted=bool(row[10]),
        dm=dm,
        sender_id=row[13],
    )


def fts_match(query: SearchQuery, scope: list[list[str]] | None = None) -> str:
    """An FTS5 query: each phrase quoted (so FTS5 splits it into words with the same tokenizer
    as the messages, and nothing in it is FTS5 syntax), all required in `text`, the last word a
    prefix if the query allows it; and, with `scope`, in one of these conversations (each a
    list of `conv` words that must all be there)."""
    parts = []
    for phrase in query.phrases:
        parts.append('text : "' + " ".join(word.replace('"', '""') for word in phrase) + '"')
    if query.prefix:
        parts[-1] += " *"
    if scope:
        alternatives = [
            "(" + " AND ".join(f'conv : "{word}"' for word in words) + ")" for words in scope
        ]
        parts.append("(" + " OR ".join(alternatives) + ")")
    return " AND ".join(parts)


def conv_word(kind: str, key: str) -> str:
    """The `conv` word of a room (`r`) or of one party of direct conversations (`d`), as the
    generated column of migration 4 writes it (hex of the UTF-8 bytes; FTS5 folds the case)."""
    return kind + key.encode().hex()


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a committed transaction survives a crash of the process (kill -9);
    # only a power loss may drop the last commits.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > len(MIGRATIONS):
        raise sqlite3.DatabaseError(
            f"database schema version {version} is newer than this tlschat ({len(MIGRATIONS)})"
        )
    for number in range(version, len(MIGRATIONS)):
        conn.executescript(
            f"BEGIN; {MIGRATIONS[number]}; PRAGMA user_version = {number + 1}; COMMIT;"
        )
        log.info("database schema migrated to version %d", number + 1)


class _Writer(threading.Thread):
    """Owns the write connection; commits whatever is queued as one transaction."""

    def __init__(self, path: Path, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name="tlschat-store-writer", daemon=True)
        self.path = path
        self.loop = loop
        self.queue: queue.SimpleQueue[list[tuple[Write, asyncio.Future[Any]]] | None] = (
            queue.SimpleQueue()
        )
        self.ready: asyncio.Future[None] = loop.create_future()
        self.batches = 0
        self.writes = 0
        self.observe: Callable[[float, int], None] | None = None
        """Called on this thread after each commit with (seconds, writes): metrics."""

    def run(self) -> None:
        try:
            conn = _connect(self.path)
            _migrate(conn)
        except BaseException as exc:
            self._post(self._not_ready, exc)
            return
        self._post(self._ready_now)
        try:
            self._serve(conn)
        finally:
            conn.close()

    def _serve(self, conn: sqlite3.Connection) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            batch = list(item)
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    more = self.queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.extend(more)
            self._post(_resolve, self._commit(conn, batch))
            if stop:
                return

    def _commit(
        self, conn: sqlite3.Connection, batch: list[tuple[Write, asyncio.Future[Any]]]
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        started = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for write, future in batch:
                conn.execute("SAVEPOINT w")
                try:
                    value = write(conn)
                except sqlite3.Error as exc:
                    conn.execute("ROLLBACK TO w")
                    results.append((future, None, exc))
                else:
                    results.append((future, value, None))
                conn.execute("RELEASE w")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            # Nothing of this batch is stored (disk full, I/O error): every write fails.
            log.warning("store commit failed: %s", exc)
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            return [(future, None, exc) for _, future in batch]
        self.batches += 1
        self.writes += len(batch)
        if self.observe is not None:
            self.observe(time.perf_counter() - started, len(batch))
        return results

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _ready_now(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)

    def _not_ready(self, exc: BaseException) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc)


def _resolve(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    """On the loop: wake every writer of a committed batch, in commit (id) order."""
    for future, value, exc in results:
        if future.done():
            continue
        if exc is None:
            future.set_result(value)
        elif isinstance(exc, sqlite3.IntegrityError):
            future.set_exception(exc)
        else:
            unavailable = StoreUnavailable()
            unavailable.__cause__ = exc
            future.set_exception(unavailable)


class SqliteStore:
    """The `Store` on one SQLite file (WAL). `await open()` first; `await close()` at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: _Writer | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[tuple[Write, asyncio.Future[Any]]] = []
        """Writes of this loop turn, handed to the writer together at its end (one wake-up)."""
        self.observe_commit: Callable[[float, int], None] | None = None
        """Set before `open()`: called on the writer thread after each commit with (seconds,
        writes in the batch), for metrics."""

    async def open(self) -> None:
        """Open (creating) the database and bring its schema up to date.

        Raise sqlite3.Error (or OSError) when it cannot be opened; no thread is left behind.
        """
        self._loop = asyncio.get_running_loop()
        writer = _Writer(self.path, self._loop)
        writer.observe = self.observe_commit
        writer.start()
        await writer.ready
        self._writer = writer
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="tlschat-store-reader")
        try:
            self._read_conn = await self._loop.run_in_executor(self._reader, _connect, self.path)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self._submit()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.queue.put(None)
            await asyncio.to_thread(writer.join)
        reader, self._reader = self._reader, None
        if reader is not None:
            conn, self._read_conn = self._read_conn, None
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(reader, conn.close)
            reader.shutdown(wait=False)

    @property
    def commits(self) -> tuple[int, int]:
        """(transactions committed, writes in them) since open: the group-commit ratio."""
        return (self._writer.batches, self._writer.writes) if self._writer else (0, 0)

    def _write(self, write: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        if self._writer is None or self._loop is None:
            raise StoreUnavailable("the store is closed")
        future: asyncio.Future[T] = self._loop.create_future()
        if not self._pending:
            self._loop.call_soon(self._submit)
        self._pending.append((write, future))
        return future

    def _submit(self) -> None:
        pending, self._pending = self._pending, []
        if pending and self._writer is not None:
            self._writer.queue.put(pending)

    async def _read(self, read: Callable[[sqlite3.Connection], T]) -> T:
        if self._reader is None or self._loop is None or self._read_conn is None:
            raise StoreUnavailable("the store is closed")
        conn = self._read_conn
        try:
            return await self._loop.run_in_executor(self._reader, read, conn)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable("the server cannot read its store right now") from exc

    async def read(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one query (tests and tools; the rules use the typed methods)."""
        args = tuple(params)
        return await self._read(lambda c: c.execute(sql, args).fetchall())

    # --- users ---------------------------------------------------------------------------------

    async def get_user(self, nick_key: str) -> StoredUser | None:
        row = await self._read(
            lambda c: c.execute(
                "SELECT nick, pw_hash, last_delivered FROM users WHERE nick_key = ?", (nick_key,)
            ).fetchone()
        )
        return StoredUser(*row) if row else None

    async def create_user(self, nick_key: str, nick: str, pw_hash: str) -> bool:
        created = time.time()

        def write(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "INSERT OR IGNORE INTO users (nick_key, nick, pw_hash, created)"
                " VALUES (?, ?, ?, ?)",
                (nick_key, nick, pw_hash, created),
            )
            return cur.rowcount == 1

        return await self._write(write)

    async def registered_nicks(self, keys: Iterable[str]) -> dict[str, str]:
        wanted = list(keys)
        if not wanted:
            return {}

        def read(c: sqlite3.Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            for start in range(0, len(wanted), 500):
                part = wanted[start : start + 500]
                marks = ",".join("?" * len(part))
                for key, nick in c.execute(
                    f"SELECT nick_key, nick FROM users WHERE nick_key IN ({marks})", part
                ):
                    found[key] = nick
            return found

        return await self._read(read)

    async def set_last_delivered(self, marks: dict[str, int]) -> None:
        if not marks:
            return
        rows = [(mark, key) for key, mark in marks.items()]
        await self._write(
            lambda c: c.executemany(
                "UPDATE users SET last_delivered = MAX(last_delivered, ?) WHERE nick_key = ?",
                rows,
            )
        )

    # --- guests --------------------------------------------------------------------------------

    async def get_guest(self, nick_key: str) -> StoredGuest | None:
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {_GUEST_COLUMNS} FROM guests WHERE nick_key = ?", (nick_key,)
            ).fetchone()
        )
        return StoredGuest(*row) if row else None

    async def put_guest(self, guest: StoredGuest) -> None:
        await self._write(
            lambda c: c.execute(
                f"INSERT OR REPLACE INTO guests ({_GUEST_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    guest.nick_key,
                    guest.nick,
                    guest.identity,
                    guest.token_hash,
                    guest.held_until,
                    guest.last_delivered,
                ),
            )
        )

    async def hold_guest(self, nick_key: str, held_until: float, last_delivered: int) -> None:
        await self._write(
            lambda c: c.execute(
                "UPDATE guests SET held_until = ?, last_delivered = MAX(last_delivered, ?)"
                " WHERE nick_key = ?",
                (held_until, last_delivered, nick_key),
            )
        )

    async def hold_online_guests(self, held_until: float, online: Iterable[str] = ()) -> None:
        keep = json.dumps(list(online))
        await self._write(
            lambda c: c.execute(
                "UPDATE guests SET held_until = ? WHERE held_until IS NULL"
                " AND nick_key NOT IN (SELECT value FROM json_each(?))",
                (held_until, keep),
            )
        )

    async def guests_held_until(self, moment: float) -> list[StoredGuest]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {_GUEST_COLUMNS} FROM guests WHERE held_until <= ?", (moment,)
            ).fetchall()
        )
        return [StoredGuest(*row) for row in rows]

    async def delete_guest(self, nick_key: str, identity: str) -> None:
        def write(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM guests WHERE nick_key = ?", (nick_key,))
            c.execute("DELETE FROM members WHERE nick_key = ?", (nick_key,))
            c.execute("DELETE FROM invites WHERE nick_key = ?", (nick_key,))
            c.execute("DELETE FROM read_markers WHERE identity = ?", (identity,))

        await self._write(write)

    async def identity_nicks(self, identities: Iterable[str]) -> dict[str, str]:
        wanted = list(dict.fromkeys(identities))

        def read(c: sqlite3.Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            for start in range(0, len(wanted), 400):
                part = wanted[start : start + 400]
                marks = ",".join("?" * len(part))
                found.update(
                    c.execute(
                        f"SELECT nick_key, nick FROM users WHERE nick_key IN ({marks})"
                        f" UNION ALL SELECT identity, nick FROM guests WHERE identity IN ({marks})",
                        [*part, *part],
                    ).fetchall()
                )
            return found

        return await self._read(read) if wanted else {}

    # --- conversations and read markers ----------------------------------------------------------

    async def conversations(
        self, identity: str, nick_key: str, rooms: dict[str, int], limit: int
    ) -> list[StoredConversation]:
        def read(c: sqlite3.Connection) -> list[StoredConversation]:
            markers = dict(
                c.execute(
                    "SELECT conversation, read_id FROM read_markers WHERE identity = ?",
                    (identity,),
                ).fetchall()
            )
            found: list[StoredConversation] = []
            for partner, last_id in c.execute(
                "SELECT CASE WHEN dm_a = ?1 THEN dm_b ELSE dm_a END AS partner, MAX(id)"
                f" FROM messages WHERE (dm_a = ?1 OR dm_b = ?1) AND {_NOT_ENTRY} GROUP BY partner",
                (identity,),
            ).fetchall():
                dm_a, dm_b = sorted((identity, partner))
                mark = markers.get(f"@{partner}", 0)
                (unread,) = c.execute(
                    "SELECT COUNT(*) FROM messages WHERE dm_a = ? AND dm_b = ? AND id > ?"
                    f" AND lower(sender) != ? AND {_UNREAD}",
                    (dm_a, dm_b, mark, nick_key),
                ).fetchone()
                found.append(StoredConversation(last_id, partner=partner, read=mark, unread=unread))
            for room_key, joined_after in rooms.items():
                (last_id,) = c.execute(
                    "SELECT COALESCE(MAX(id), 0) FROM messages WHERE room_key = ? AND id > ?"
                    f" AND {_NOT_ENTRY}",
                    (room_key, joined_after),
                ).fetchone()
                mark = markers.get(f"#{room_key}", 0)
                (unread,) = c.execute(
                    "SELECT COUNT(*) FROM messages WHERE room_key = ? AND id > ?"
                    f" AND lower(sender) != ? AND {_UNREAD}",
                    (room_key, max(mark, joined_after), nick_key),
                ).fetchone()
                found.append(
                    StoredConversation(last_id, room_key=room_key, read=mark, unread=unread)
                )
            found.sort(key=lambda conv: conv.last_id, reverse=True)
            return found[:limit]

        return await self._read(read)

    async def set_read(self, identity: str, conversation: str, msg_id: int) -> int:
        def write(c: sqlite3.Connection) -> int:
            c.execute(
                "INSERT INTO read_markers (identity, conversation, read_id) VALUES (?, ?, ?)"
                " ON CONFLICT (identity, conversation)"
                " DO UPDATE SET read_id = MAX(read_id, excluded.read_id)",
                (identity, conversation, msg_id),
            )
            (now,) = c.execute(
                "SELECT read_id FROM read_markers WHERE identity = ? AND conversation = ?",
                (identity, conversation),
            ).fetchone()
            return int(now)

        return await self._write(write)

    # --- rooms ---------------------------------------------------------------------------------

    async def load_rooms(self, room_key: str | None = None) -> list[StoredRoom]:
        # `?1 IS NULL OR room_key = ?1`: every room, or the one asked for.
        only = "(?1 IS NULL OR room_key = ?1)"

        def read(c: sqlite3.Connection) -> list[StoredRoom]:
            rooms: dict[str, StoredRoom] = {}
            for key, name, public, topic in c.execute(
                f"SELECT room_key, name, public, topic FROM rooms WHERE {only}", (room_key,)
            ):
                rooms[key] = StoredRoom(key, name, bool(public), topic=topic)
            for key, nick_key, nick, joined_after in c.execute(
                "SELECT room_key, nick_key, nick, joined_after FROM members"
                f" WHERE {only} ORDER BY seq",
                (room_key,),
            ):
                if key in rooms:
                    rooms[key].members.append(StoredMember(nick_key, nick, joined_after))
            for key, nick_key, by, created in c.execute(
                f"SELECT room_key, nick_key, by_nick, created FROM invites WHERE {only}",
                (room_key,),
            ):
                if key in rooms:
                    rooms[key].invites.append(StoredInvite(nick_key, by, created))
            for key, nick_key, until in c.execute(
                f"SELECT room_key, nick_key, until FROM kicks WHERE {only} AND until > ?2",
                (room_key, time.time()),
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

        def write(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT OR REPLACE INTO rooms (room_key, name, public, created, topic)"
                " VALUES (?, ?, ?, ?, ?)",
                (room_key, name, int(public), created, topic),
            )
            if creator is not None:
                _add_member(c, room_key, creator)

        await self._write(write)

    async def set_topic(self, room_key: str, topic: str) -> None:
        await self._write(
            lambda c: c.execute("UPDATE rooms SET topic = ? WHERE room_key = ?", (topic, room_key))
        )

    async def add_kick(self, room_key: str, nick_key: str, until: float) -> None:
        def write(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM kicks WHERE until <= ?", (time.time(),))
            c.execute(
                "INSERT OR REPLACE INTO kicks (room_key, nick_key, until) VALUES (?, ?, ?)",
                (room_key, nick_key, until),
            )

        await self._write(write)

    async def bans(self) -> dict[str, str]:
        return await self._read(
            lambda c: dict(c.execute("SELECT nick_key, reason FROM bans").fetchall())
        )

    async def ban(self, nick_key: str, reason: str) -> None:
        await self._write(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO bans (nick_key, reason, created) VALUES (?, ?, ?)",
                (nick_key, reason, time.time()),
            )
        )

    async def unban(self, nick_key: str) -> bool:
        def write(c: sqlite3.Connection) -> bool:
            return c.execute("DELETE FROM bans WHERE nick_key = ?", (nick_key,)).rowcount > 0

        return await self._write(write)

    async def delete_room(self, room_key: str) -> None:
        def write(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM messages WHERE room_key = ?", (room_key,))
            c.execute("DELETE FROM rooms WHERE room_key = ?", (room_key,))

        await self._write(write)

    async def add_member(self, room_key: str, member: StoredMember) -> None:
        await self._write(lambda c: _add_member(c, room_key, member))

    async def remove_member(self, room_key: str, nick_key: str) -> None:
        await self._write(
            lambda c: c.execute(
                "DELETE FROM members WHERE room_key = ? AND nick_key = ?", (room_key, nick_key)
            )
        )

    async def add_invite(self, room_key: str, invite: StoredInvite) -> None:
        await self._write(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO invites (room_key, nick_key, by_nick, created)"
                " VALUES (?, ?, ?, ?)",
                (room_key, invite.nick_key, invite.by, invite.created),
            )
        )

    async def delete_invite(self, room_key: str, nick_key: str) -> None:
        await self._write(
            lambda c: c.execute(
                "DELETE FROM invites WHERE room_key = ? AND nick_key = ?", (room_key, nick_key)
            )
        )

    async def delete_invites_before(self, created: float) -> None:
        await self._write(lambda c: c.execute("DELETE FROM invites WHERE created < ?", (created,)))

    # --- messages ------------------------------------------------------------------------------

    async def max_message_id(self) -> int:
        row = await self._read(
            lambda c: c.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()
        )
        return int(row[0]) if row else 0

    async def add_message(self, message: NewMessage) -> int:
        return await self._write(lambda c: _insert_message(c, message))

    async def replay(
        self, identity: str, rooms: dict[str, int], after: int, limit: int
    ) -> list[StoredMessage]:
        clauses = ["(dm_a = ? AND id > ?)", "(dm_b = ? AND id > ?)"]
        params: list[Any] = [identity, after, identity, after]
        for room_key, joined_after in rooms.items():
            clauses.append("(room_key = ? AND id > ?)")
            params.append(room_key)
            params.append(max(after, joined_after))
        sql = (
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE {' OR '.join(clauses)}"
            " ORDER BY id DESC LIMIT ?"
        )
        params.append(limit)
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
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
            dm_a, dm_b = sorted(dm)
            where, params = "dm_a = ? AND dm_b = ?", [dm_a, dm_b]
        else:
            where, params = "room_key = ?", [room_key]
        if before is not None:
            where += " AND id < ?"
            params.append(before)
        where += f" AND {_NOT_ENTRY}"
        sql = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE {where} ORDER BY id DESC LIMIT ?"
        params.append(limit + 1)
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        more = len(rows) > limit
        return [_message(row) for row in reversed(rows[:limit])], more

    async def deliveries_between(self, after: int, upto: int) -> list[StoredDelivery]:
        def read(c: sqlite3.Connection) -> list[StoredDelivery]:
            messages = [
                _message(row)
                for row in c.execute(
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id > ? AND id <= ? ORDER BY id",
                    (after, upto),
                )
            ]
            rooms = json.dumps(sorted({m.room_key for m in messages if m.room_key}))
            members: dict[str, list[tuple[str, int]]] = {}
            for room_key, nick_key, joined_after in c.execute(
                "SELECT room_key, nick_key, joined_after FROM members"
                " WHERE room_key IN (SELECT value FROM json_each(?)) ORDER BY seq",
                (rooms,),
            ):
                members.setdefault(room_key, []).append((nick_key, joined_after))
            guests = json.dumps(sorted({i for m in messages for i in m.dm or () if i[:1] == "~"}))
            guest_keys = dict(
                c.execute(
                    "SELECT identity, nick_key FROM guests"
                    " WHERE identity IN (SELECT value FROM json_each(?))",
                    (guests,),
                ).fetchall()
            )
            return [StoredDelivery(m, recipients_of(m, members, guest_keys)) for m in messages]

        return await self._read(read)

    async def get_message(self, msg_id: int) -> StoredMessage | None:
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (msg_id,)
            ).fetchone()
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
        # The scope twice: as `conv` words inside FTS5 (fast), and exactly in SQL (rooms since
        # joining, the very pair of a direct conversation).
        clauses: list[str] = []
        params: list[Any] = []
        scope: list[list[str]] = []
        if identity is not None:
            clauses.append("(m.dm_a = ? OR m.dm_b = ?)")
            params += [identity, identity]
            scope.append([conv_word("d", identity)])
        if dm is not None:
            clauses.append("(m.dm_a = ? AND m.dm_b = ?)")
            params += sorted(dm)
            scope.append([conv_word("d", party) for party in sorted(set(dm))])
        for room_key, joined_after in rooms.items():
            clauses.append("(m.room_key = ? AND m.id > ?)")
            params += [room_key, joined_after]
            scope.append([conv_word("r", room_key)])
        if not clauses or before == 0:
            return [], False
        params.insert(0, fts_match(query, scope))
        where = f"messages_fts MATCH ? AND ({' OR '.join(clauses)})"
        if before is not None:
            where += " AND messages_fts.rowid < ?"
            params.append(before)
        # The index holds only messages (no entries, nothing deleted); the scope is checked on
        # each match, newest first, until `limit` + 1 are found.
        sql = (
            f"SELECT {_MESSAGE_COLUMNS_M} FROM messages_fts"
            " JOIN messages AS m ON m.id = messages_fts.rowid"
            f" WHERE {where}"
            " ORDER BY messages_fts.rowid DESC LIMIT ?"
        )
        params.append(limit + 1)
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        return [_message(row) for row in rows[:limit]], len(rows) > limit

    async def dm_partners(self, identity: str) -> set[str]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT DISTINCT dm_b FROM messages WHERE dm_a = ?"
                " UNION SELECT DISTINCT dm_a FROM messages WHERE dm_b = ?",
                (identity, identity),
            ).fetchall()
        )
        return {row[0] for row in rows}

    # --- files (PROTOCOL.md "Files and images"; used by server/files.py) -----------------------

    async def file_blob(self, sha256: str) -> StoredBlob | None:
        row = await self._read(
            lambda c: c.execute(
                "SELECT sha256, size, mime, width, height FROM blobs WHERE sha256 = ?", (sha256,)
            ).fetchone()
        )
        return StoredBlob(*row) if row else None

    async def add_blob(self, blob: StoredBlob) -> None:
        created = time.time()
        await self._write(
            lambda c: c.execute(
                "INSERT OR IGNORE INTO blobs (sha256, size, mime, width, height, created)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (blob.sha256, blob.size, blob.mime, blob.width, blob.height, created),
            )
        )

    async def blob_hashes(self) -> set[str]:
        rows = await self._read(lambda c: c.execute("SELECT sha256 FROM blobs").fetchall())
        return {row[0] for row in rows}

    async def add_file(self, file_id: str, sha256: str, name: str, uploader: str) -> None:
        created = time.time()
        await self._write(
            lambda c: c.execute(
                "INSERT INTO files (id, sha256, name, uploader, created) VALUES (?, ?, ?, ?, ?)",
                (file_id, sha256, name, uploader, created),
            )
        )

    async def files(self, file_ids: Iterable[str]) -> dict[str, StoredFile]:
        ids = list(file_ids)

        def read(c: sqlite3.Connection) -> dict[str, StoredFile]:
            found: dict[str, StoredFile] = {}
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                marks = ",".join("?" * len(part))
                for row in c.execute(
                    f"SELECT {_FILE_COLUMNS} FROM files JOIN blobs USING (sha256)"
                    f" WHERE id IN ({marks})",
                    part,
                ):
                    found[row[0]] = StoredFile(*row)
            return found

        return await self._read(read) if ids else {}

    async def file_for(self, file_id: str, identity: str) -> StoredFile | None:
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {_FILE_COLUMNS} FROM files JOIN blobs USING (sha256) WHERE id = ?"
                " AND (uploader = ? OR EXISTS"
                " (SELECT 1 FROM file_access WHERE file_id = ? AND identity = ?))",
                (file_id, identity, file_id, identity),
            ).fetchone()
        )
        return StoredFile(*row) if row else None

    async def grant_file(self, file_id: str, identities: Iterable[str]) -> None:
        who = tuple(identities)
        await self._write(lambda c: _grant(c, file_id, who))

    async def delete_unsent_files(
        self, created_before: float, keep: Iterable[str] = ()
    ) -> list[str]:
        """Delete the files created before `created_before` that no message carries, except
        those in `keep`, with their access rows (ON DELETE CASCADE); return their ids.

        One statement, so a message stored meanwhile either keeps its file or came too late.
        """
        kept = json.dumps(list(keep))
        rows = await self._write(
            lambda c: c.execute(
                "DELETE FROM files WHERE created < ?"
                " AND NOT EXISTS (SELECT 1 FROM messages WHERE messages.file_id = files.id)"
                " AND id NOT IN (SELECT value FROM json_each(?)) RETURNING id",
                (created_before, kept),
            ).fetchall()
        )
        return [row[0] for row in rows]

    def blob_lock(self, *, exclusive: bool) -> contextlib.AbstractAsyncContextManager[None]:
        return no_lock()

    async def delete_unused_blobs(self) -> list[str]:
        """Delete the blobs no file row names; return their hashes (their content may go)."""
        rows = await self._write(
            lambda c: c.execute(
                "DELETE FROM blobs"
                " WHERE NOT EXISTS (SELECT 1 FROM files WHERE files.sha256 = blobs.sha256)"
                " RETURNING sha256"
            ).fetchall()
        )
        return [row[0] for row in rows]


# --- the writes, run on the writer thread ---------------------------------------------------------


def _add_member(c: sqlite3.Connection, room_key: str, member: StoredMember) -> None:
    c.execute(
        "INSERT OR REPLACE INTO members (room_key, nick_key, nick, joined_after, seq)"
        " VALUES (?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM members))",
        (room_key, member.nick_key, member.nick, member.joined_after),
    )
    c.execute(
        "DELETE FROM invites WHERE room_key = ? AND nick_key = ?", (room_key, member.nick_key)
    )
    c.execute("DELETE FROM kicks WHERE room_key = ? AND nick_key = ?", (room_key, member.nick_key))


def _insert_message(c: sqlite3.Connection, m: NewMessage) -> int:
    target = m.edit_of if m.edit_of is not None else m.delete_of
    file_id = m.file_id
    if target is not None:
        # Checked here, in the transaction: a delete committed just before wins.
        row = c.execute(
            f"SELECT file_id FROM messages WHERE id = ? AND deleted = 0 AND {_NOT_ENTRY}",
            (target,),
        ).fetchone()
        if row is None:
            return 0
        file_id = None
    dm_a, dm_b = sorted(m.dm) if m.dm else (None, None)
    cur = c.execute(
        "INSERT INTO messages (ts, sender, to_addr, dm_a, dm_b, room_key, text, file_id,"
        " sender_id, edit_of, delete_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            m.ts, m.sender, m.to_addr, dm_a, dm_b, m.room_key, m.text, file_id,
            m.sender_id or None, m.edit_of, m.delete_of,
        ),
    )  # fmt: skip
    msg_id = cur.lastrowid
    assert msg_id is not None
    if m.edit_of is not None:
        # The trigger re-indexes the new text.
        c.execute("UPDATE messages SET text = ?, edited = ? WHERE id = ?", (m.text, m.ts, target))
    elif m.delete_of is not None:
        _delete(c, m.delete_of, row[0])
    elif m.file_id is not None and m.grant:
        _grant(c, m.file_id, m.grant)
    return msg_id


def _delete(c: sqlite3.Connection, msg_id: int, file_id: str | None) -> None:
    """Message `msg_id` is deleted: its text goes (from the index too, by the trigger), and so
    does the text of its edit entries (the replay sends them again); its file is the uploader's
    alone unless another message still carries it."""
    c.execute("UPDATE messages SET text = '', deleted = 1 WHERE id = ?", (msg_id,))
    c.execute("UPDATE messages SET text = '' WHERE edit_of = ?", (msg_id,))
    if file_id is not None:
        c.execute(
            "DELETE FROM file_access WHERE file_id = ? AND NOT EXISTS"
            " (SELECT 1 FROM messages WHERE file_id = ? AND deleted = 0)",
            (file_id, file_id),
        )


def _grant(c: sqlite3.Connection, file_id: str, identities: Iterable[str]) -> None:
    """Let these identities download the file (they received a message carrying it)."""
    c.executemany(
        "INSERT OR IGNORE INTO file_access (file_id, identity)"
        " SELECT ?, ? WHERE EXISTS (SELECT 1 FROM files WHERE id = ?)",
        [(file_id, identity, file_id) for identity in dict.fromkeys(identities)],
    )
