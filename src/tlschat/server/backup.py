"""`tlschat backup --data-dir DIR DEST`: a consistent copy of a data directory, while the daemon
runs. The database goes through SQLite's online backup API (one read transaction: a snapshot,
while the daemon keeps writing in WAL mode); the files and the TLS material are copied after it,
so every file the copied database names is in the copy (blobs are content-addressed and never
change once written)."""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from tlschat.protocol import TlsChatError

DB_NAME = "tlschat.db"


class BackupError(TlsChatError):
    """The backup cannot be made; the message is one line for the user."""


@dataclass(frozen=True)
class BackupResult:
    database: Path
    messages: int
    files: int


def backup(data_dir: Path, dest: Path) -> BackupResult:
    """Copy `data_dir` into the new or empty directory `dest`; raise BackupError."""
    source_db = data_dir / DB_NAME
    if not source_db.is_file():
        raise BackupError(f"no tlschat database in {data_dir}")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} exists and is not an empty directory")
    try:
        dest.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(dest, 0o700)
    except OSError as exc:
        raise BackupError(f"cannot create {dest}: {exc.strerror}") from None
    target_db = dest / DB_NAME
    try:
        source = sqlite3.connect(source_db, timeout=30)
        try:
            source.execute("PRAGMA busy_timeout=30000")
            fd = os.open(target_db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            target = sqlite3.connect(target_db)
            try:
                # pages=-1: the whole database in one step, under one read transaction, so the
                # copy is one consistent snapshot however busy the daemon is.
                source.backup(target, pages=-1)
                check = target.execute("PRAGMA integrity_check").fetchone()[0]
                if check != "ok":
                    raise BackupError(f"the copy failed its integrity check: {check}")
                messages = int(target.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
            finally:
                target.close()
        finally:
            source.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot back up {source_db}: {exc}") from None
    except OSError as exc:
        raise BackupError(f"cannot write {target_db}: {exc.strerror}") from None
    copied = 0
    for folder in ("files", "tls"):
        src = data_dir / folder
        if src.is_dir():
            try:
                shutil.copytree(src, dest / folder, copy_function=shutil.copy2)
            except (OSError, shutil.Error) as exc:
                raise BackupError(f"cannot copy {src}: {exc}") from None
            if folder == "files":
                copied = sum(1 for p in (dest / folder).rglob("*") if p.is_file())
    return BackupResult(database=target_db, messages=messages, files=copied)
