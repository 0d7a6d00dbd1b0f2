"""Imports point inward: the protocol, the client library and the server never load textual."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "modules",
    [
        "tlschat.protocol, tlschat.client, tlschat.server",
        "tlschat.client.connection, tlschat.client.headless, tlschat.client.known_hosts",
        "tlschat.client.cache, tlschat.client.attachments",
        "tlschat.server.daemon",
        "tlschat.cli",
    ],
)
def test_core_does_not_import_textual(modules: str) -> None:
    code = f"import {modules}; import sys; assert 'textual' not in sys.modules, 'textual loaded'"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
