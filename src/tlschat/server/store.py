"""Durable state in SQLite (WAL), run off the event loop by aiosqlite's own thread."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

log = logging.getLogger(__name__)

# Each entry migrates the schema from version i to i + 1; never edit a released one, append.
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
]


@dataclass
class StoredMessage:
    id: int
    ts: str
    sender: str
    to_addr: str
    text: str
    file_id: str | None
    room_key: str | None = None


@dataclass
class StoredMember:
    nick_key: str
    nick: str
    joined_after: int


@dataclass
class StoredRoom:
    room_key: str
    name: str
    public: bool
    members: list[StoredMember] = field(default_factory=list)
    invites: list[tuple[str, str, float]] = field(default_factory=list)
    """(invitee nick_key, inviter nick, created)"""


def _message(row: Any) -> StoredMessage:
    return StoredMessage(
        id=row[0],
        ts=row[1],
        sender=row[2],
        to_addr=row[3],
        text=row[4],
        file_id=row[5],
        room_key=row[6],
    )


_MESSAGE_COLUMNS = "id, ts, sender, to_addr, text, file_id, room_key"


@dataclass(frozen=True)
class StoredBlob:
    """Stored content, once per SHA-256, with what its bytes are."""

    sha256: str
    size: int
    mime: str
    width: int | None
    height: int | None


@dataclass(frozen=True)
class StoredFile:
    """One upload: its own id and display name over a blob."""

    id: str
    name: str
    uploader: str
    """The uploader's identity (registry `User.identity`)."""
    sha256: str
    size: int
    mime: str
    width: int | None
    height: int | None


_FILE_COLUMNS = "id, name, uploader, sha256, size, mime, width, height"


class Store:
    """All SQL lives here. Every method runs its SQL on aiosqlite's thread, never on the loop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def open(self) -> None:
        """Open (creating) the database and bring its schema up to date."""
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        await self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed transaction survives a crash of the process (kill -9);
        # only a power loss may drop the last commits.
        await self.db.execute("PRAGMA synchronous=NORMAL")
        await self.db.execute("PRAGMA foreign_keys=ON")
        await self.db.execute("PRAGMA busy_timeout=5000")
        await self._migrate()

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    async def _migrate(self) -> None:
        async with self.db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        if version > len(MIGRATIONS):
            raise sqlite3.DatabaseError(
                f"database schema version {version} is newer than this tlschat ({len(MIGRATIONS)})"
            )
        for number in range(version, len(MIGRATIONS)):
            await self.db.executescript(
                f"BEGIN; {MIGRATIONS[number]}; PRAGMA user_version = {number + 1}; COMMIT;"
            )
            log.info("database schema migrated to version %d", number + 1)

    async def schema_version(self) -> int:
        async with self.db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # --- users ---------------------------------------------------------------------------------

    async def get_user(self, nick_key: str) -> tuple[str, str, int] | None:
        """(nick as registered, password hash, last delivered id), or None."""
        async with self.db.execute(
            "SELECT nick, pw_hash, last_delivered FROM users WHERE nick_key = ?", (nick_key,)
        ) as cur:
            row = await cur.fetchone()
        return (row[0], row[1], row[2]) if row else None

    async def create_user(self, nick_key: str, nick: str, pw_hash: str) -> bool:
        """Register a nick; False if someone registered it first."""
        cur = await self.db.execute(
            "INSERT OR IGNORE INTO users (nick_key, nick, pw_hash, created) VALUES (?, ?, ?, ?)",
            (nick_key, nick, pw_hash, time.time()),
        )
        return cur.rowcount == 1

    async def registered_nicks(self, keys: Iterable[str]) -> dict[str, str]:
        keys = list(keys)
        found: dict[str, str] = {}
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            async with self.db.execute(
                f"SELECT nick_key, nick FROM users WHERE nick_key IN ({marks})", part
            ) as cur:
                for row in await cur.fetchall():
                    found[row[0]] = row[1]
        return found

    async def set_last_delivered(self, marks: dict[str, int]) -> None:
        if not marks:
            return
        await self.db.executemany(
            "UPDATE users SET last_delivered = MAX(last_delivered, ?) WHERE nick_key = ?",
            [(mark, key) for key, mark in marks.items()],
        )

    # --- rooms ---------------------------------------------------------------------------------

    async def load_rooms(self) -> list[StoredRoom]:
        rooms: dict[str, StoredRoom] = {}
        async with self.db.execute("SELECT room_key, name, public FROM rooms") as cur:
            for row in await cur.fetchall():
                rooms[row[0]] = StoredRoom(row[0], row[1], bool(row[2]))
        async with self.db.execute(
            "SELECT room_key, nick_key, nick, joined_after FROM members ORDER BY seq"
        ) as cur:
            for row in await cur.fetchall():
                if row[0] in rooms:
                    rooms[row[0]].members.append(StoredMember(row[1], row[2], row[3]))
        async with self.db.execute(
            "SELECT room_key, nick_key, by_nick, created FROM invites"
        ) as cur:
            for row in await cur.fetchall():
                if row[0] in rooms:
                    rooms[row[0]].invites.append((row[1], row[2], row[3]))
        return list(rooms.values())

    async def create_room(self, room_key: str, name: str, public: bool) -> None:
        await self.db.execute(
            "INSERT OR REPLACE INTO rooms (room_key, name, public, created) VALUES (?, ?, ?, ?)",
            (room_key, name, int(public), time.time()),
        )

    async def delete_room(self, room_key: str) -> None:
        """The room, its members, invitations and its whole history."""
        await self.db.execute("BEGIN")
        try:
            await self.db.execute("DELETE FROM messages WHERE room_key = ?", (room_key,))
            await self.db.execute("DELETE FROM rooms WHERE room_key = ?", (room_key,))
            await self.db.execute("COMMIT")
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise

    async def add_member(self, room_key: str, nick_key: str, nick: str, joined_after: int) -> None:
        await self.db.execute(
            "INSERT OR REPLACE INTO members (room_key, nick_key, nick, joined_after, seq)"
            " VALUES (?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM members))",
            (room_key, nick_key, nick, joined_after),
        )

    async def remove_member(self, room_key: str, nick_key: str) -> None:
        await self.db.execute(
            "DELETE FROM members WHERE room_key = ? AND nick_key = ?", (room_key, nick_key)
        )

    async def add_invite(self, room_key: str, nick_key: str, by_nick: str, created: float) -> None:
        await self.db.execute(
            "INSERT OR REPLACE INTO invites (room_key, nick_key, by_nick, created) VALUES (?, ?, ?, ?)",
            (room_key, nick_key, by_nick, created),
        )

    async def delete_invite(self, room_key: str, nick_key: str) -> None:
        await self.db.execute(
            "DELETE FROM invites WHERE room_key = ? AND nick_key = ?", (room_key, nick_key)
        )

    async def delete_invites_before(self, created: float) -> None:
        await self.db.execute("DELETE FROM invites WHERE created < ?", (created,))

    # --- messages ------------------------------------------------------------------------------

    async def insert_message(
        self,
        *,
        ts: str,
        sender: str,
        to_addr: str,
        text: str,
        dm: tuple[str, str] | None = None,
        room_key: str | None = None,
        file_id: str | None = None,
    ) -> int:
        """Store a message (committed before this returns) and return its id."""
        dm_a, dm_b = sorted(dm) if dm else (None, None)
        cur = await self.db.execute(
            "INSERT INTO messages (ts, sender, to_addr, dm_a, dm_b, room_key, text, file_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (ts, sender, to_addr, dm_a, dm_b, room_key, text, file_id),
        )
        msg_id = cur.lastrowid
        assert msg_id is not None
        return msg_id

    async def max_message_id(self) -> int:
        async with self.db.execute("SELECT COALESCE(MAX(id), 0) FROM messages") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def replay(
        self, identity: str, rooms: dict[str, int], after: int, limit: int
    ) -> list[StoredMessage]:
        """The newest `limit` messages addressed to `identity` with id > `after`, oldest first.

        `rooms` maps each of the user's rooms to the last id before they joined: a member is
        replayed only what was said in the room while they were in it.
        """
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
        async with self.db.execute(sql, params) as cur:
            rows = await cur.fetchall()
        return [_message(row) for row in reversed(list(rows))]

    async def history(
        self,
        *,
        dm: tuple[str, str] | None = None,
        room_key: str | None = None,
        before: int | None,
        limit: int,
    ) -> tuple[list[StoredMessage], bool]:
        """Up to `limit` messages of one conversation with id < `before`, oldest first, and
        whether older ones exist."""
        params: list[Any]
        if dm is not None:
            dm_a, dm_b = sorted(dm)
            where, params = "dm_a = ? AND dm_b = ?", [dm_a, dm_b]
        else:
            where, params = "room_key = ?", [room_key]
        if before is not None:
            where += " AND id < ?"
            params.append(before)
        async with self.db.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE {where} ORDER BY id DESC LIMIT ?",
            [*params, limit + 1],
        ) as cur:
            rows = list(await cur.fetchall())
        more = len(rows) > limit
        return [_message(row) for row in reversed(rows[:limit])], more

    async def dm_partners(self, identity: str) -> set[str]:
        """Identities this one has a direct conversation with."""
        partners: set[str] = set()
        async with self.db.execute(
            "SELECT DISTINCT dm_b FROM messages WHERE dm_a = ? UNION SELECT DISTINCT dm_a FROM messages WHERE dm_b = ?",
            (identity, identity),
        ) as cur:
            for row in await cur.fetchall():
                partners.add(row[0])
        return partners

    async def message_file_ids(self, ids: Sequence[int]) -> dict[int, str]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        async with self.db.execute(
            f"SELECT id, file_id FROM messages WHERE id IN ({marks}) AND file_id IS NOT NULL",
            list(ids),
        ) as cur:
            return {row[0]: row[1] for row in await cur.fetchall()}

    # --- files (PROTOCOL.md "Files and images"; used by server/files.py) -----------------------

    async def file_blob(self, sha256: str) -> StoredBlob | None:
        """What is known of stored content with this hash, or None."""
        async with self.db.execute(
            "SELECT sha256, size, mime, width, height FROM blobs WHERE sha256 = ?", (sha256,)
        ) as cur:
            row = await cur.fetchone()
        return StoredBlob(*row) if row else None

    async def add_blob(self, blob: StoredBlob) -> None:
        await self.db.execute(
            "INSERT OR IGNORE INTO blobs (sha256, size, mime, width, height, created)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (blob.sha256, blob.size, blob.mime, blob.width, blob.height, time.time()),
        )

    async def blob_hashes(self) -> set[str]:
        async with self.db.execute("SELECT sha256 FROM blobs") as cur:
            return {row[0] for row in await cur.fetchall()}

    async def add_file(self, file_id: str, sha256: str, name: str, uploader: str) -> None:
        await self.db.execute(
            "INSERT INTO files (id, sha256, name, uploader, created) VALUES (?, ?, ?, ?, ?)",
            (file_id, sha256, name, uploader, time.time()),
        )

    async def files(self, file_ids: Iterable[str]) -> dict[str, StoredFile]:
        """The files with these ids (unknown ids are left out)."""
        ids = list(file_ids)
        found: dict[str, StoredFile] = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            async with self.db.execute(
                f"SELECT {_FILE_COLUMNS} FROM files JOIN blobs USING (sha256)"
                f" WHERE id IN ({marks})",
                part,
            ) as cur:
                for row in await cur.fetchall():
                    found[row[0]] = StoredFile(*row)
        return found

    async def file_for(self, file_id: str, identity: str) -> StoredFile | None:
        """The file, if `identity` uploaded it or received a message carrying it; else None."""
        async with self.db.execute(
            f"SELECT {_FILE_COLUMNS} FROM files JOIN blobs USING (sha256) WHERE id = ?"
            " AND (uploader = ? OR EXISTS"
            " (SELECT 1 FROM file_access WHERE file_id = ? AND identity = ?))",
            (file_id, identity, file_id, identity),
        ) as cur:
            row = await cur.fetchone()
        return StoredFile(*row) if row else None

    async def grant_file(self, file_id: str, identities: Iterable[str]) -> None:
        """Let these identities download the file (they received a message carrying it)."""
        await self.db.executemany(
            "INSERT OR IGNORE INTO file_access (file_id, identity)"
            " SELECT ?, ? WHERE EXISTS (SELECT 1 FROM files WHERE id = ?)",
            [(file_id, identity, file_id) for identity in dict.fromkeys(identities)],
        )

    async def delete_unsent_files(
        self, created_before: float, keep: Iterable[str] = ()
    ) -> list[str]:
        """Delete the files created before `created_before` that no message carries, except
        those in `keep`, with their access rows (ON DELETE CASCADE); return their ids.

        One statement, so a message stored meanwhile either keeps its file or came too late.
        """
        async with self.db.execute(
            "DELETE FROM files WHERE created < ?"
            " AND NOT EXISTS (SELECT 1 FROM messages WHERE messages.file_id = files.id)"
            " AND id NOT IN (SELECT value FROM json_each(?)) RETURNING id",
            (created_before, json.dumps(list(keep))),
        ) as cur:
            return [row[0] for row in await cur.fetchall()]

    async def delete_unused_blobs(self) -> list[str]:
        """Delete the blobs no file row names; return their hashes (their content may go)."""
        async with self.db.execute(
            "DELETE FROM blobs"
            " WHERE NOT EXISTS (SELECT 1 FROM files WHERE files.sha256 = blobs.sha256)"
            " RETURNING sha256"
        ) as cur:
            return [row[0] for row in await cur.fetchall()]
