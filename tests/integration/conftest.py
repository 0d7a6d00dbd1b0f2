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
    """With TLSCHAT_TEST_STORE=postgres, the `tlschat serve` subprocesses of this test (of a
    module that starts some: tests/integration/daemon_proc.py, or its own `subprocess`) use a
    fresh PostgreSQL database: TLSCHAT_DATABASE, in the environment they inherit."""
    if not {"Daemon", "subprocess"} & set(vars(request.module)):
        return
    database = database_for_test(request)
    if database is not None:
        monkeypatch.setenv("TLSCHAT_DATABASE", database)
