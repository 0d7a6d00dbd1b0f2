"""Search latency on a large store (PROTOCOL.md "Search", SQLite FTS5 in server/sqlite_store.py).

Fills a fresh SQLite store directly (no server, no TLS) with N messages — half in 50 rooms, half
in direct conversations among 200 users, 6-14 words each from a 5000-word vocabulary with a
Zipf-like frequency — through the store's own schema and FTS triggers, then times
`SqliteStore.search()` as the server calls it, for one user (a member of 5 rooms: about 3% of
the messages are theirs to search) and for a newcomer who can read nothing yet, query by
query: the median, 95th percentile and worst of `--repeat` runs, in milliseconds.

    python benchmarks/search.py --messages 1000000 --repeat 20
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

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


def fill(path: Path, count: int, rng: random.Random, words: list[str]) -> float:
    """Insert `count` messages in transactions of BATCH; the seconds it took."""
    cumulative = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(len(words))))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    start = time.perf_counter()
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
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO messages (ts, sender, to_addr, dm_a, dm_b, room_key, text, sender_id)"
            " VALUES ('2026-12-07T00:00:00.000Z', ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute("COMMIT")
        done += len(rows)
    elapsed = time.perf_counter() - start
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return elapsed


def size_mib(directory: Path) -> float:
    return sum(p.stat().st_size for p in directory.iterdir()) / 2**20


def frequency(path: Path, word: str) -> int:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?", (f'"{word}"',)
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


async def time_queries(path: Path, words: list[str], repeat: int) -> None:
    store = SqliteStore(path)
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
    args = parser.parse_args()
    rng = random.Random(args.seed)
    words = vocabulary(rng)
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
        await time_queries(path, words, args.repeat)


if __name__ == "__main__":
    asyncio.run(main())
