"""Imports point inward: the protocol, the client library and the server never load textual, and
the protocol core and the rules do no I/O of their own."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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


# The rules are written against the store and hub seams: no SQL engine, no sockets, no TLS,
# no concrete backend (PRODUCT.md "Storage": a new backend is a new module, never an edit here).
FORBIDDEN_IN_CORE = {
    "tlschat.protocol": {"asyncio", "socket", "ssl", "sqlite3"},
    "tlschat.sansio": {"asyncio", "socket", "ssl", "sqlite3"},
    "tlschat.server.rules": {"sqlite3", "socket", "ssl", "tlschat.server.sqlite_store",
                             "tlschat.server.connection", "tlschat.server.daemon"},
}  # fmt: skip


def _imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN_IN_CORE))
def test_core_modules_import_no_io(package: str) -> None:
    root = Path(__file__).resolve().parents[2] / "src"
    base = root / package.replace(".", "/")
    files = sorted(base.glob("*.py")) if base.is_dir() else [base.with_suffix(".py")]
    assert files
    for path in files:
        bad = {
            name
            for name in _imports_of(path)
            for forbidden in FORBIDDEN_IN_CORE[package]
            if name == forbidden or name.startswith(forbidden + ".")
        }
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_the_connection_and_the_rules_do_not_import_each_other() -> None:
    root = Path(__file__).resolve().parents[2] / "src" / "tlschat" / "server"
    for path in (root / "rules").glob("*.py"):
        assert "tlschat.server.connection" not in _imports_of(path), path.name
