"""The known-hosts file: lookups, atomic rewrites that keep other lines, key normalisation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tlschat.client import KnownHosts
from tlschat.client.known_hosts import default_path, host_key, normalize_fingerprint

FP1 = ":".join(["0A"] * 32)
FP2 = ":".join(["B7"] * 32)


def test_missing_file_knows_nothing(tmp_path: Path) -> None:
    assert KnownHosts(tmp_path / "nope" / "known_hosts").lookup("example.org", 7700) is None


def test_add_creates_parents_and_looks_up(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "config" / "known_hosts"
    store = KnownHosts(path)
    store.add("Example.ORG", 7700, FP1.lower())
    assert path.read_text() == f"example.org:7700 SHA256:{FP1}\n"
    assert store.lookup("example.org", 7700) == FP1
    assert store.lookup("EXAMPLE.org", 7700) == FP1
    assert store.lookup("example.org", 7701) is None
    assert store.lookup("other.org", 7700) is None


def test_add_replaces_only_its_entry_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(
        "# my servers\n"
        f"a.example:7700 SHA256:{FP1}\n"
        "this line is not understood\n"
        f"b.example:7700 {FP1}\n"
    )
    store = KnownHosts(path)
    assert store.lookup("b.example", 7700) == FP1  # the SHA256: prefix is optional
    store.add("a.example", 7700, FP2)
    lines = path.read_text().splitlines()
    assert lines == [
        "# my servers",
        "this line is not understood",
        f"b.example:7700 {FP1}",
        f"a.example:7700 SHA256:{FP2}",
    ]
    assert store.lookup("a.example", 7700) == FP2


def test_writes_are_atomic_and_leave_no_temporary_files(tmp_path: Path) -> None:
    store = KnownHosts(tmp_path / "known_hosts")
    for port in range(1, 6):
        store.add("host", port, FP1)
    assert os.listdir(tmp_path) == ["known_hosts"]
    assert [store.lookup("host", port) for port in range(1, 6)] == [FP1] * 5


def test_ipv6_hosts_are_bracketed(tmp_path: Path) -> None:
    store = KnownHosts(tmp_path / "known_hosts")
    store.add("::1", 7700, FP1)
    assert (tmp_path / "known_hosts").read_text() == f"[::1]:7700 SHA256:{FP1}\n"
    assert store.lookup("::1", 7700) == FP1
    assert host_key("[::1]", 7700) == "[::1]:7700"


def test_remove(tmp_path: Path) -> None:
    store = KnownHosts(tmp_path / "known_hosts")
    store.add("a", 1, FP1)
    store.add("b", 1, FP2)
    assert store.remove("a", 1)
    assert not store.remove("a", 1)
    assert store.lookup("a", 1) is None
    assert store.lookup("b", 1) == FP2


def test_refuses_what_is_not_a_fingerprint(tmp_path: Path) -> None:
    store = KnownHosts(tmp_path / "known_hosts")
    with pytest.raises(ValueError, match="fingerprint"):
        store.add("a", 1, "AB:CD")
    assert not (tmp_path / "known_hosts").exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (FP1, FP1),
        (FP1.lower(), FP1),
        (f"sha256:{FP1.lower()}", FP1),
        (f"SHA256:{FP1}", FP1),
        ("AB:CD", None),
        (FP1.replace(":", ""), None),
        (FP1 + ":00", None),
    ],
)
def test_normalize_fingerprint(text: str, expected: str | None) -> None:
    assert normalize_fingerprint(text) == expected


def test_default_path_is_under_the_user_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setattr("sys.platform", "linux")
    assert default_path() == tmp_path / "tlschat" / "known_hosts"
    assert KnownHosts().path == default_path()
