"""Fixtures shared by the integration tests."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import pytest
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
