"""`tlschat backup`: a consistent copy while a real daemon serves and messages keep coming."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
from pathlib import Path

import pytest
from tests.integration.daemon_proc import TLSCHAT, Daemon, context_for
from tests.wire import Wire

pytestmark = pytest.mark.sqlite_only  # SQLite's online backup; PostgreSQL's is pg_dump


async def test_backup_while_messages_are_sent(tmp_path: Path) -> None:
    data = tmp_path / "d"
    daemon = Daemon(["--data-dir", str(data), "--rate-burst", "100000", "--rate-per-sec", "100000"])
    sent = 0
    stop = asyncio.Event()
    fifty = asyncio.Event()
    try:
        port = daemon.started()
        alice = await Wire.open(port, context_for(data))
        assert (await alice.hello("alice", "alice's password"))["type"] == "welcome"

        async def chatter() -> None:
            nonlocal sent
            while not stop.is_set():
                reply = await alice.request({"type": "send", "to": "@alice", "text": f"n{sent}"})
                assert reply["type"] == "message", reply
                sent += 1
                if sent >= 50:
                    fifty.set()

        task = asyncio.create_task(chatter())
        await asyncio.wait_for(fifty.wait(), 30)
        dest = tmp_path / "backup"
        result = await asyncio.to_thread(
            subprocess.run,
            [*TLSCHAT, "backup", "--data-dir", str(data), str(dest)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        during = sent
        await asyncio.sleep(0.3)
        stop.set()
        await task
        assert during < sent, "messages kept flowing while the backup ran"
    finally:
        code, _ = daemon.stop()
    assert code == 0
    assert result.returncode == 0, result.stderr
    assert "integrity check ok" in result.stdout
    conn = sqlite3.connect(dest / "tlschat.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        copied = conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        ids = [row[0] for row in conn.execute("SELECT id FROM messages ORDER BY id")]
    finally:
        conn.close()
    assert 50 <= copied <= sent
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # a snapshot: no gaps
    assert (dest / "tls" / "server.pem").exists()
    assert (dest / "tlschat.db").stat().st_mode & 0o777 == 0o600


def test_backup_refuses_a_non_empty_destination(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    sqlite3.connect(tmp_path / "d" / "tlschat.db").close()
    dest = tmp_path / "b"
    dest.mkdir()
    (dest / "x").write_text("x")
    result = subprocess.run(
        [*TLSCHAT, "backup", "--data-dir", str(tmp_path / "d"), str(dest)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "not an empty directory" in result.stderr
    assert "Traceback" not in result.stderr
