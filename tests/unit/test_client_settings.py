"""The client config file (tlschat.client.settings): TOML, defaults, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlschat.client.settings import CONFIG_ENV, SettingsError, default_path, load


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path / "none.toml")
    assert settings.host is None
    assert settings.notifications.bell is True
    assert settings.notifications.desktop == "osc9"


def test_a_full_file(tmp_path: Path) -> None:
    path = tmp_path / "client.toml"
    path.write_text(
        'server = "chat.example.org:7800"\nnick = "bob"\ncafile = "ca.pem"\n'
        'theme = "textual-light"\n[notifications]\nbell = false\ndesktop = "osc777"\n'
    )
    settings = load(path)
    assert (settings.host, settings.port, settings.nick) == ("chat.example.org", 7800, "bob")
    assert settings.cafile == tmp_path / "ca.pem"  # relative to the file
    assert settings.theme == "textual-light"
    assert settings.notifications.bell is False
    assert settings.notifications.desktop == "osc777"


def test_several_servers(tmp_path: Path) -> None:
    path = tmp_path / "client.toml"
    path.write_text('server = "a.example.org:7700, b.example.org:7701"\n')
    settings = load(path)
    assert settings.servers == (("a.example.org", 7700), ("b.example.org", 7701))
    assert (settings.host, settings.port) == ("a.example.org", 7700)  # the chat's name


def test_an_empty_entry_in_the_server_list_is_named(tmp_path: Path) -> None:
    path = tmp_path / "client.toml"
    path.write_text('server = "a.example.org:7700,,b.example.org"\n')
    with pytest.raises(SettingsError, match=r"client.toml: server .*number 2 of the list is empty"):
        load(path)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("server = 'a:b:c'", "server"),
        ("nick = 3", "nick"),
        ("[notifications]\nbell = 'yes'", "notifications.bell"),
        ("[notifications]\ndesktop = 'loud'", "notifications.desktop"),
        ("server = ", "not valid TOML"),
    ],
)
def test_wrong_values_are_named(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "client.toml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=says) as info:
        load(path)
    assert str(path) in str(info.value)


def test_the_environment_names_another_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "other.toml"))
    assert default_path() == tmp_path / "other.toml"
    monkeypatch.delenv(CONFIG_ENV)
    assert default_path().name == "client.toml"
