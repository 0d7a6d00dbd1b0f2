"""Shared fixtures: trustme certificates, a real server on 127.0.0.1 (port 0), raw-wire clients."""

from __future__ import annotations

import dataclasses
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.pgserver import pg_database, pg_databases, pg_server
from tests.wire import Wire
from tlschat import tls
from tlschat.config import ServerConfig

__all__ = [
    "pg_database",
    "pg_databases",
    "pg_server",
]  # fixtures of tests/pgserver.py, for every test

TEST_STORE = os.environ.get("TLSCHAT_TEST_STORE", "sqlite")
"""`postgres`: servers the tests start use a fresh PostgreSQL database each (tests/pgserver.py)
instead of the SQLite file of their data directory. Tests about SQLite itself are marked
`sqlite_only` and skipped then."""
if TEST_STORE not in {"sqlite", "postgres"}:
    raise pytest.UsageError(f"TLSCHAT_TEST_STORE must be sqlite or postgres, not {TEST_STORE!r}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if TEST_STORE != "postgres":
        return
    skip = pytest.mark.skip(reason="about the SQLite store (TLSCHAT_TEST_STORE=postgres)")
    for item in items:
        if item.get_closest_marker("sqlite_only"):
            item.add_marker(skip)


def database_for_test(request: pytest.FixtureRequest) -> str | None:
    """The `database` setting for a server of this test: None (SQLite) or a fresh DSN."""
    if TEST_STORE != "postgres":
        return None
    dsn: str = request.getfixturevalue("pg_database")
    return dsn


# Tests raise the abuse limits they are not about, so that a fast test client is not throttled.
GENEROUS = {
    "rate_burst": 10_000,
    "rate_per_sec": 10_000.0,
    "max_per_ip": 1000,
    "max_unauth": 1000,
    "max_unauth_per_ip": 1000,
    "max_nick_failures": 1000,
    "max_registrations": 1000,
    "max_conns": 2000,
    "max_login_failures": 1000,
}


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@dataclasses.dataclass(frozen=True)
class CertFiles:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="session")
def cert_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    folder = tmp_path_factory.mktemp("certs")
    issued = ca.issue_cert("localhost", "127.0.0.1", "::1")
    files = CertFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    ca.cert_pem.write_to_path(str(files.ca))
    # The server presents its whole chain (leaf first).
    with files.cert.open("wb") as fh:
        for blob in issued.cert_chain_pems:
            fh.write(blob.bytes())
    issued.private_key_pem.write_to_path(str(files.key))
    return files


@pytest.fixture
def client_ctx(cert_files: CertFiles) -> ssl.SSLContext:
    """A client context that trusts the test CA, as tlschat's own clients build it."""
    return tls.client_context(cafile=cert_files.ca)


@pytest.fixture
def server_config(
    tmp_path: Path, cert_files: CertFiles, request: pytest.FixtureRequest
) -> ServerConfig:
    return ServerConfig(
        host="127.0.0.1",
        port=0,
        cert=cert_files.cert,
        key=cert_files.key,
        data_dir=tmp_path / "data",
        database=database_for_test(request),
        **GENEROUS,  # type: ignore[arg-type]
    )


ServerFactory = Callable[..., Awaitable[Any]]


@pytest.fixture
async def start_server(server_config: ServerConfig) -> AsyncIterator[ServerFactory]:
    """`await start_server(**overrides)` starts a real server; every one is closed at teardown."""
    from tlschat.server.daemon import ChatServer

    started: list[ChatServer] = []

    async def factory(**overrides: Any) -> ChatServer:
        config = dataclasses.replace(server_config, **overrides)
        server = ChatServer(config)
        await server.start()
        started.append(server)
        return server

    yield factory
    for server in reversed(started):
        await server.close()


@pytest.fixture
async def server(start_server: ServerFactory) -> Any:
    """A running server with the test limits."""
    return await start_server()


@pytest.fixture
async def connect(
    server: Any, client_ctx: ssl.SSLContext
) -> AsyncIterator[Callable[..., Awaitable[Wire]]]:
    """`await connect()` opens a raw TLS connection; `await connect("alice")` also logs in."""
    opened: list[Wire] = []

    async def factory(nick: str | None = None, password: str | None = None, **extra: Any) -> Wire:
        wire = await Wire.open(server.port, client_ctx)
        opened.append(wire)
        if nick is not None:
            welcome = await wire.hello(nick, password, **extra)
            assert welcome["type"] == "welcome", welcome
            wire.welcome = welcome  # type: ignore[attr-defined]
        return wire

    yield factory
    for wire in opened:
        await wire.close()
