"""The PostgreSQL store's schema, as a versioned list of migrations (like SQLite's).

Version 1 is the SQLite schema as its migrations 1–6 left it, with PostgreSQL's own types and
full-text search (server/pg_search.py). `schema_version` holds the number of migrations applied;
each runs in its own transaction, and nodes starting together take turns on an advisory lock,
so one of them migrates and the others find the schema up to date.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asyncpg import Record
    from asyncpg.pool import PoolConnectionProxy

log = logging.getLogger(__name__)

MIGRATION_LOCK = 0x746C7363_6D696772
"""pg_advisory_xact_lock key held while migrating ("tlscmigr")."""

MIGRATIONS: list[str] = [
    # 1: everything of SQLite's migrations 1-6. Notes on what differs:
    # - message ids come from one sequence, `message_ids`, taken under an advisory lock (see
    #   pg_store.py): ids are unique and increasing in commit order across every node;
    # - `search` is the message's tsvector (its words and conversations), NULL for edit and
    #   delete entries and for deleted messages, so they never match;
    # - a member's `seq` (who joined first: the owner) comes from a sequence too.
    """
    CREATE TABLE users (
        nick_key TEXT PRIMARY KEY,
        nick TEXT NOT NULL,
        pw_hash TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL,
        last_delivered BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE rooms (
        room_key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        public BOOLEAN NOT NULL,
        created DOUBLE PRECISION NOT NULL,
        topic TEXT NOT NULL DEFAULT ''
    );
    CREATE SEQUENCE member_seq;
    CREATE TABLE members (
        room_key TEXT NOT NULL REFERENCES rooms(room_key) ON DELETE CASCADE,
        nick_key TEXT NOT NULL,
        nick TEXT NOT NULL,
        joined_after BIGINT NOT NULL,
        seq BIGINT NOT NULL DEFAULT nextval('member_seq'),
        PRIMARY KEY (room_key, nick_key)
    );
    CREATE INDEX members_nick ON members(nick_key);
    CREATE TABLE invites (
        room_key TEXT NOT NULL REFERENCES rooms(room_key) ON DELETE CASCADE,
        nick_key TEXT NOT NULL,
        by_nick TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (room_key, nick_key)
    );
    CREATE INDEX invites_nick ON invites(nick_key);
    CREATE TABLE kicks (
        room_key TEXT NOT NULL REFERENCES rooms(room_key) ON DELETE CASCADE,
        nick_key TEXT NOT NULL,
        until DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (room_key, nick_key)
    );
    CREATE TABLE bans (
        nick_key TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL
    );
    CREATE SEQUENCE message_ids;
    CREATE TABLE messages (
        id BIGINT PRIMARY KEY,
        ts TEXT NOT NULL,
        sender TEXT NOT NULL,
        to_addr TEXT NOT NULL,
        dm_a TEXT,
        dm_b TEXT,
        room_key TEXT,
        text TEXT NOT NULL,
        file_id TEXT,
        sender_id TEXT,
        edit_of BIGINT,
        delete_of BIGINT,
        edited TEXT,
        deleted BOOLEAN NOT NULL DEFAULT false,
        search TSVECTOR
    );
    CREATE INDEX messages_dm_a ON messages(dm_a, id) WHERE dm_a IS NOT NULL;
    CREATE INDEX messages_dm_b ON messages(dm_b, id) WHERE dm_b IS NOT NULL;
    CREATE INDEX messages_room ON messages(room_key, id) WHERE room_key IS NOT NULL;
    CREATE INDEX messages_file ON messages(file_id) WHERE file_id IS NOT NULL;
    CREATE INDEX messages_edit_of ON messages(edit_of) WHERE edit_of IS NOT NULL;
    CREATE INDEX messages_search ON messages USING GIN (search);
    -- The conversation lexemes of a message (pg_search.room_lexeme, party_lexeme).
    CREATE FUNCTION tlschat_conversation(room_key TEXT, dm_a TEXT, dm_b TEXT)
    RETURNS TSVECTOR LANGUAGE SQL IMMUTABLE AS $$
        SELECT CASE WHEN room_key IS NOT NULL
            THEN array_to_tsvector(ARRAY['#' || encode(convert_to(room_key, 'UTF8'), 'hex')])
            ELSE array_to_tsvector(ARRAY[
                '@' || encode(convert_to(dm_a, 'UTF8'), 'hex'),
                '@' || encode(convert_to(dm_b, 'UTF8'), 'hex')])
        END
    $$;
    CREATE TABLE blobs (
        sha256 TEXT PRIMARY KEY,
        size BIGINT NOT NULL,
        mime TEXT NOT NULL,
        width INTEGER,
        height INTEGER,
        created DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE files (
        id TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL REFERENCES blobs(sha256),
        name TEXT NOT NULL,
        uploader TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX files_sha256 ON files(sha256);
    CREATE TABLE file_access (
        file_id TEXT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        identity TEXT NOT NULL,
        PRIMARY KEY (file_id, identity)
    );
    CREATE TABLE guests (
        nick_key TEXT PRIMARY KEY,
        nick TEXT NOT NULL,
        identity TEXT NOT NULL UNIQUE,
        token_hash TEXT NOT NULL,
        held_until DOUBLE PRECISION,
        last_delivered BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX guests_held ON guests(held_until) WHERE held_until IS NOT NULL;
    CREATE TABLE read_markers (
        identity TEXT NOT NULL,
        conversation TEXT NOT NULL,
        read_id BIGINT NOT NULL,
        PRIMARY KEY (identity, conversation)
    );
    """,
]


class SchemaTooNew(Exception):
    """The database was migrated by a newer tlschat."""


async def migrate(conn: PoolConnectionProxy[Record]) -> None:
    """Bring the schema up to date (each migration in its own transaction)."""
    while True:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            version = await conn.fetchval("SELECT max(version) FROM schema_version") or 0
            if version > len(MIGRATIONS):
                raise SchemaTooNew(
                    f"database schema version {version} is newer than this tlschat"
                    f" ({len(MIGRATIONS)})"
                )
            if version == len(MIGRATIONS):
                return
            await conn.execute(MIGRATIONS[version])
            await conn.execute("DELETE FROM schema_version")
            await conn.execute("INSERT INTO schema_version VALUES ($1)", version + 1)
        log.info("database schema migrated to version %d", version + 1)
