"""Search latency on a large store (PROTOCOL.md "Search", SQLite FTS5 in server/sqlite_store.py).

Fills a fresh SQLite store directly (no server, no TLS) with N messages — half in 50 rooms, half
in direct conversations among 200 users, 6-14 words each from a 5000-word vocabulary with a
Zipf-like frequency — through the store's own schema and FTS triggers, then times
`SqliteStore.search()` as the server calls it, for one user (a member of 5 rooms: about 3% of
the messages are theirs to search) and for a newcomer who can read nothing yet, query by
query: the median, 95th percentile and worst of `--repeat` runs, in milliseconds.

    python benchmarks/search.py --messages 1000000 --repeat 20

With `--store postgres` the same messages go into PostgreSQL (a cluster of the benchmark's own,
started as the tests start theirs: tests/pgserver.py) and `PgStore.search()` is timed instead.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tlschat.server import pg_search
from tlschat.server.pg_store import PgStore
from tlschat.server.search import parse_query
from tlschat.server.sqlite_store import SqliteStore

USERS = 200
ROOMS = 50
VOCABULARY = 5000
BATCH = 20_000


def vocabulary(rng: random.Random) -> list[str]:
    """Distinct pronounceable words, the most frequent first."""
    syllables = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
    words: dict[str, None] = {}
    while len(words) < VOCABULARY:
        words["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))] = None
    return list(words)


def batches(
    count: int, rng: random.Random, words: list[str]
) -> Any:  # an iterator of lists of rows
    """Rows (sender, to, dm_a, dm_b, room, text, sender_id) in lists of at most BATCH."""
    cumulative = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(len(words))))
    done = 0
    while done < count:
        rows = []
        for _ in range(min(BATCH, count - done)):
            sender = rng.randrange(USERS)
            text = " ".join(rng.choices(words, cum_weights=cumulative, k=rng.randint(6, 14)))
            if rng.random() < 0.5:
                room = f"r{rng.randrange(ROOMS)}"
                rows.append((f"u{sender}", f"#{room}", None, None, room, text, f"u{sender}"))
            else:
                other = rng.randrange(USERS)
                a, b = sorted((f"u{sender}", f"u{other}"))
                rows.append((f"u{sender}", f"@u{other}", a, b, None, text, f"u{sender}"))
        done += len(rows)
        yield rows


def fill(path: Path, count: int, rng: random.Random, words: list[str]) -> float:
    """Insert `count` messages in transactions of BATCH; the seconds it took."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    start = time.perf_counter()
    for rows in batches(count, rng, words):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO messages (ts, sender, to_addr, dm_a, dm_b, room_key, text, sender_id)"
            " VALUES ('2026-12-07T00:00:00.000Z', ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return elapsed


async def fill_postgres(dsn: str, count: int, rng: random.Random, words: list[str]) -> float:
    """Insert `count` messages as PgStore does (ids from the sequence, the search vector cut in
    Python), in transactions of BATCH; the seconds it took."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        start = time.perf_counter()
        for rows in batches(count, rng, words):
            async with conn.transaction():
                await conn.executemany(
                    "INSERT INTO messages (id, ts, sender, to_addr, dm_a, dm_b, room_key, text,"
                    " sender_id, search) VALUES (nextval('message_ids'),"
                    " '2026-12-07T00:00:00.000Z', $1, $2, $3, $4, $5, $6, $7,"
                    " $8::tsvector || tlschat_conversation($5, $3, $4))",
                    [(*row, pg_search.text_vector(row[5])) for row in rows],
                )
        elapsed = time.perf_counter() - start
        await conn.execute("VACUUM ANALYZE messages")
        return elapsed
    finally:
        await conn.close()


def size_mib(directory: Path) -> float:
    return sum(p.stat().st_size for p in directory.iterdir()) / 2**20


def frequency(path: Path | None, word: str) -> int:
    if path is None:
        return -1
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?", (f'"{word}"',)
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


async def time_queries(
    store: SqliteStore | PgStore, path: Path | None, words: list[str], repeat: int
) -> None:
    await store.open()
    try:
        rooms = {f"r{n}": 0 for n in range(5)}
        common, mid, rare = words[0], words[100], words[3000]
        top_id = await store.max_message_id()
        # A query's last bare word may be the start of a word (PROTOCOL.md), so a one-word
        # query is a prefix query; the same word quoted is an exact word.
        cases: list[tuple[str, str, dict[str, object]]] = [
            ("common word (prefix)", common, {}),
            ('"common word" (exact)', f'"{common}"', {}),
            ("mid-frequency (prefix)", mid, {}),
            ('"mid-frequency" (exact)', f'"{mid}"', {}),
            ("rare word (prefix)", rare, {}),
            ("two words", f"{common} {words[1]}", {}),
            ("3-letter prefix", words[2][:3], {}),
            ("quoted phrase", f'"{common} {words[1]}"', {}),
            ("no match", "zzzzqx", {}),
            ("common (prefix), one room", common, {"room": True}),
            ('"common", a newcomer', f'"{common}"', {"newcomer": True}),
            ("common (prefix), a newcomer", common, {"newcomer": True}),
            ("common (prefix), page 2", common, {"before": top_id // 2}),
            ("rare, limit 50", rare, {"limit": 50}),
        ]
        print(f"{'query':28} {'matches':>8} {'found':>6} {'median':>8} {'p95':>8} {'max':>8}")
        for label, text, options in cases:
            query = parse_query(text)
            assert query is not None
            limit = int(str(options.get("limit", 20)))
            before = options.get("before")
            scope = {"r0": 0} if options.get("room") else rooms
            identity = None if options.get("room") else "u0"
            if options.get("newcomer"):  # nothing to read yet: the whole index is not theirs
                scope, identity = {}, "newcomer"
            times = []
            found = 0
            for _ in range(repeat):
                start = time.perf_counter()
                result, _more = await store.search(
                    query,
                    identity=identity,
                    rooms=scope,
                    before=int(str(before)) if before is not None else None,
                    limit=limit,
                )
                times.append((time.perf_counter() - start) * 1000)
                found = len(result)
            times.sort()
            p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
            words_in = text.strip('"').split()
            exact_one = len(words_in) == 1 and len(words_in[0]) > 3
            matches = frequency(path, words_in[0]) if exact_one else -1
            print(
                f"{label:28} {matches if matches >= 0 else '':>8} {found:>6}"
                f" {statistics.median(times):8.2f} {p95:8.2f} {times[-1]:8.2f}"
            )
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    words = vocabulary(rng)
    if args.store == "postgres":
        await postgres(args, rng, words)
        return
    with tempfile.TemporaryDirectory(prefix="tlschat-search-") as tmp:
        path = Path(tmp) / "tlschat.db"
        store = SqliteStore(path)
        await store.open()  # the schema, FTS table and triggers, as the server makes them
        await store.close()
        seconds = fill(path, args.messages, rng, words)
        size = size_mib(Path(tmp))
        print(
            f"filled {args.messages} messages in {seconds:.1f} s"
            f" ({args.messages / seconds:,.0f}/s with the FTS triggers); database {size:.0f} MiB"
        )
        print(f"user u0: member of 5 of {ROOMS} rooms, direct conversations with {USERS} users")
        await time_queries(SqliteStore(path), path, words, args.repeat)


REPOSITORY = Path(__file__).resolve().parent.parent


async def postgres(args: argparse.Namespace, rng: random.Random, words: list[str]) -> None:
    sys.path.insert(0, str(REPOSITORY))  # for tests/pgserver.py
    from tests.pgserver import PgServer

    server = PgServer()
    try:
        await asyncio.to_thread(server.start)
        dsn = server.dsn()
        store = PgStore(dsn)
        await store.open()  # the schema, as the server makes it
        await store.close()
        seconds = await fill_postgres(dsn, args.messages, rng, words)
        print(
            f"filled {args.messages} messages in {seconds:.1f} s"
            f" ({args.messages / seconds:,.0f}/s with the search vectors), PostgreSQL"
        )
        print(f"user u0: member of 5 of {ROOMS} rooms, direct conversations with {USERS} users")
        await time_queries(PgStore(dsn), None, words, args.repeat)
    finally:
        await asyncio.to_thread(server.cleanup)


if __name__ == "__main__":
    asyncio.run(main())
