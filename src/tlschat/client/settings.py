"""The client's config file (TOML under the user's config dir): where to connect and how to alert.

```toml
server = "chat.example.org:7700"   # `tlschat tui` with no arguments connects here
# server = "a.example.org:7700,b.example.org:7700"   # several nodes of one chat, tried in turn
nick = "bob"
cafile = "~/.config/tlschat/ca.pem"
theme = "textual-dark"

[notifications]
bell = true        # ring the terminal bell on a DM or a mention not in view
desktop = "osc9"   # "osc9", "osc777" or "off": a desktop notification through the terminal
```
No textual, no network: the headless commands may read it too.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import platformdirs

from tlschat.address import AddressError, Server, parse_servers

Desktop = Literal["osc9", "osc777", "off"]
DESKTOP_CHOICES: tuple[Desktop, ...] = ("osc9", "osc777", "off")

CONFIG_ENV = "TLSCHAT_CLIENT_CONFIG"
"""Names another config file (tests, several profiles)."""


class SettingsError(ValueError):
    """The config file is unreadable or holds a wrong value; the message names the file and key."""


@dataclass
class Notifications:
    bell: bool = True
    """Ring the bell on a DM or a mention of our nick when that conversation is not in view."""
    desktop: Desktop = "osc9"
    """How to ask the terminal for a desktop notification (OSC 9 or OSC 777), or not at all."""


@dataclass
class ClientSettings:
    servers: tuple[Server, ...] = ()
    """`server`: where to connect, in the order to try (empty: not set)."""
    nick: str | None = None
    cafile: Path | None = None
    theme: str | None = None
    notifications: Notifications = field(default_factory=Notifications)
    path: Path | None = None
    """The file these came from (None: defaults, no file)."""

    @property
    def host(self) -> str | None:
        """The first server's host: the chat's name."""
        return self.servers[0][0] if self.servers else None

    @property
    def port(self) -> int | None:
        return self.servers[0][1] if self.servers else None


def default_path() -> Path:
    """`$TLSCHAT_CLIENT_CONFIG`, else `client.toml` in the user's config dir for tlschat."""
    named = os.environ.get(CONFIG_ENV)
    if named:
        return Path(named).expanduser()
    return Path(platformdirs.user_config_dir("tlschat")) / "client.toml"


def _text(data: dict[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SettingsError(f"{where}: {key} must be a non-empty string")
    return value.strip()


def load(path: Path | None = None) -> ClientSettings:
    """Read the config file; a missing file gives the defaults. Raise SettingsError if it is wrong."""
    path = path or default_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return ClientSettings()
    except OSError as exc:
        raise SettingsError(f"{path}: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{path}: not valid TOML ({exc})") from exc
    where = str(path)
    settings = ClientSettings(path=path)
    server = _text(data, "server", where)
    if server is not None:
        try:
            settings.servers = tuple(parse_servers(server))
        except AddressError as exc:
            raise SettingsError(f"{where}: server {exc}") from exc
    settings.nick = _text(data, "nick", where)
    cafile = _text(data, "cafile", where)
    if cafile is not None:
        resolved = Path(cafile).expanduser()
        if not resolved.is_absolute():
            resolved = path.parent / resolved
        settings.cafile = resolved
    settings.theme = _text(data, "theme", where)
    section = data.get("notifications", {})
    if not isinstance(section, dict):
        raise SettingsError(f"{where}: [notifications] must be a table")
    bell = section.get("bell", True)
    if not isinstance(bell, bool):
        raise SettingsError(f"{where}: notifications.bell must be true or false")
    desktop = section.get("desktop", "osc9")
    if desktop is False:
        desktop = "off"
    if desktop not in DESKTOP_CHOICES:
        raise SettingsError(
            f"{where}: notifications.desktop must be one of {', '.join(DESKTOP_CHOICES)}"
        )
    settings.notifications = Notifications(bell=bell, desktop=cast(Desktop, desktop))
    return settings
