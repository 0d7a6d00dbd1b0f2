"""Fixtures shared by the integration tests."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import pytest
from tests.conftest import database_for_test
from tests.integration.helpers_rules import Dialer, install_conformance_check


@pytest.fixture
def conformance(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validate every frame a Wire receives against the protocol's server models."""
    install_conformance_check(monkeypatch)


@pytest.fixture
async def dial(client_ctx: ssl.SSLContext) -> AsyncIterator[Dialer]:
    """`await dial(...)`: raw-wire clients, all closed at teardown."""
    dialer = Dialer(client_ctx)
    yield dialer
    await dialer.close_all()


@pytest.fixture(autouse=True)
def daemon_database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """With TLSCHAT_TEST_STORE=postgres, `tlschat serve` subprocesses (tests/integration/
    daemon_proc.py) of this test use a fresh PostgreSQL database (TLSCHAT_DATABASE)."""
    if "Daemon" not in vars(request.module):
        return
    database = database_for_test(request)
    if database is not None:
        monkeypatch.setenv("TLSCHAT_DATABASE", database)
