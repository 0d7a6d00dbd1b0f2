"""A real PostgreSQL for tests: its own cluster in a temporary directory, on a free port of
127.0.0.1 (and a unix socket in that directory), never the system's service.

`PgServer.start()` runs initdb once and then `postgres` itself (not pg_ctl, so its PID is the
postmaster's own, read back from postmaster.pid); `stop()` ends it by that PID. PostgreSQL
refuses to run as root and CI runs as root: then initdb and postgres run as the `postgres`
user (`runuser`), owning the directory.

The pytest fixtures: `pg_databases` (one cluster for the session, with a database migrated once
as a template), `pg_server` (that cluster, running) and `pg_database` (an empty database for one
test: a copy of the template, or the database of a finished test emptied again).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

TEMPLATE = "tlschat_template"
SUPERUSER = "postgres"
_STARTED_BY_TEST = 30.0
"""Seconds PostgreSQL may take to start or stop."""


class PgUnavailable(Exception):
    """No PostgreSQL binaries here (install Debian's `postgresql`)."""


def find_bindir() -> Path:
    """The newest /usr/lib/postgresql/N/bin with initdb and postgres (or PG_BINDIR)."""
    override = os.environ.get("PG_BINDIR")
    candidates = [Path(override)] if override else []
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        versions = [p for p in root.iterdir() if p.name.isdigit()]
        for version in sorted(versions, key=lambda p: int(p.name), reverse=True):
            candidates.append(version / "bin")
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "postgres").exists():
            return bindir
    raise PgUnavailable(
        "no PostgreSQL binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql)"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PgServer:
    """One PostgreSQL cluster of our own. `start()`, `stop()`, `start()` again, `cleanup()`."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self._as_root = os.geteuid() == 0
        # As root, in /tmp: the postgres user must reach it (not so a TMPDIR under /root), and
        # the unix socket's path must stay short.
        self.root = Path(
            tempfile.mkdtemp(prefix="tlschat-pg-", dir="/tmp" if self._as_root else None)
        )
        self.data = self.root / "data"
        self.port = free_port()
        self.pid: int | None = None
        self._initialized = False
        self._log = self.root / "postgres.log"
        if self._as_root:
            shutil.chown(self.root, SUPERUSER, SUPERUSER)

    def _command(self, *args: str) -> list[str]:
        if self._as_root:
            return ["runuser", "-u", SUPERUSER, "--", *args]
        return list(args)

    def dsn(self, database: str = "postgres") -> str:
        """A DSN over the unix socket (faster than TCP, and what tests use)."""
        return f"postgresql://{SUPERUSER}@/{database}?host={self.root}&port={self.port}"

    def tcp_dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        if not self._initialized:
            subprocess.run(
                self._command(
                    str(self.bindir / "initdb"),
                    "-D", str(self.data),
                    "-U", SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ),
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )  # fmt: skip
            self._initialized = True
        pid_file = self.data / "postmaster.pid"
        with self._log.open("ab") as log:
            # Started detached (its own session), so a test's Ctrl-C does not reach it; the
            # settings trade durability for speed: a test cluster is thrown away.
            subprocess.Popen(
                self._command(
                    str(self.bindir / "postgres"),
                    "-D", str(self.data),
                    "-p", str(self.port),
                    "-k", str(self.root),
                    "-c", "listen_addresses=127.0.0.1",
                    "-c", "fsync=off",
                    "-c", "synchronous_commit=off",
                    "-c", "full_page_writes=off",
                    "-c", "max_connections=300",
                    "-c", "shared_buffers=32MB",
                ),
                stdout=log,
                stderr=log,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + _STARTED_BY_TEST
        while time.monotonic() < deadline:
            try:
                lines = pid_file.read_text().splitlines()
            except OSError:
                lines = []
            # postmaster.pid: line 1 the PID, line 8 the status ("ready" once it accepts).
            if len(lines) >= 8 and lines[7].strip() == "ready":
                self.pid = int(lines[0])
                return
            time.sleep(0.02)
        raise RuntimeError(f"PostgreSQL did not start:\n{self._log.read_text()[-3000:]}")

    def stop(self) -> None:
        """A fast shutdown (SIGINT: sessions are ended) by PID; wait until it is gone."""
        pid, self.pid = self.pid, None
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + _STARTED_BY_TEST
        while time.monotonic() < deadline:
            if not (self.data / "postmaster.pid").exists():
                return
            time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


async def _admin(server: PgServer, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(server.dsn())
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _migrate_template(server: PgServer) -> None:
    from tlschat.server.pg_store import PgStore

    await _admin(server, f"CREATE DATABASE {TEMPLATE}")
    store = PgStore(server.dsn(TEMPLATE))
    await store.open()
    await store.close()


_numbers = itertools.count(1)

_RESET = """
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid();
SET session_replication_role = replica;
DO $$
DECLARE name TEXT;
BEGIN
    FOR name IN SELECT tablename FROM pg_tables
            WHERE schemaname = 'public' AND tablename <> 'schema_version' LOOP
        EXECUTE format('DELETE FROM %I', name);
    END LOOP;
    FOR name IN SELECT sequencename FROM pg_sequences WHERE schemaname = 'public' LOOP
        PERFORM setval(quote_ident(name), 1, false);
    END LOOP;
END $$;
"""
"""Empty a used database as if new: its connections are ended, every row goes (foreign keys
unchecked meanwhile) and every sequence starts again."""


class PgDatabases:
    """Fresh databases on one server: a copy of the migrated template (CREATE DATABASE takes
    ~0.2 s), or one a finished test used, emptied (a few milliseconds)."""

    def __init__(self, server: PgServer) -> None:
        self.server = server
        self.free: list[str] = []

    def take(self) -> str:
        if self.free:
            return self.free.pop()
        name = f"test_{os.getpid()}_{next(_numbers)}"
        asyncio.run(_admin(self.server, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}"))
        return name

    def give_back(self, name: str) -> None:
        async def reset() -> None:
            import asyncpg

            conn = await asyncpg.connect(self.server.dsn(name))
            try:
                await conn.execute(_RESET)
            finally:
                await conn.close()

        asyncio.run(reset())
        self.free.append(name)


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PgDatabases]:
    """One PostgreSQL for the session, with the migrated template database."""
    try:
        server = PgServer()
    except PgUnavailable as exc:
        pytest.skip(str(exc))
    try:
        server.start()
        asyncio.run(_migrate_template(server))
        yield PgDatabases(server)
    finally:
        server.cleanup()


@pytest.fixture
def pg_server(pg_databases: PgDatabases) -> PgServer:
    """The session's PostgreSQL, running (a test may stop and start it)."""
    if pg_databases.server.pid is None:  # a test stopped it and failed before restarting it
        pg_databases.server.start()
    return pg_databases.server


@pytest.fixture
def pg_database(pg_databases: PgDatabases, pg_server: PgServer) -> Iterator[str]:
    """The DSN of an empty, migrated database of this test's own."""
    name = pg_databases.take()
    yield pg_server.dsn(name)
    if pg_server.pid is None:
        pg_server.start()
    pg_databases.give_back(name)
