"""Command palette provider: the main screen's actions, and one command per user, group and invitation."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tlschat.tui import commands
from tlschat.tui.screens.main import MainScreen
from tlschat.tui.state import dm_address, room_address


class ChatCommands(Provider):
    """Everything the keys and the /commands do, searchable by name."""

    def _commands(self) -> list[tuple[str, Callable[[], Any], str]]:
        screen = self.screen
        if not isinstance(screen, MainScreen):
            return []
        state = screen.state
        found: list[tuple[str, Callable[[], Any], str]] = [
            ("Message someone…", screen.action_new_dm, "open a direct conversation (ctrl+n)"),
            ("Create a group…", screen.action_new_group, "private or public (ctrl+g)"),
            ("Go to…", screen.action_switcher, "any conversation, by part of its name (ctrl+k)"),
            ("Join a public group…", screen.action_join, "ctrl+o"),
            ("Help", screen.action_help, "commands and keys (f1)"),
        ]
        notes = screen.chat.settings.notifications
        bell = "off" if notes.bell else "on"
        desktop = "on" if notes.desktop == "off" else "off"
        found.append(
            (
                f"Turn the bell {bell}",
                partial(screen.run_command, commands.Alerts("bell", bell)),
                "on a DM or a mention not in view (/bell)",
            )
        )
        found.append(
            (
                f"Turn desktop notifications {desktop}",
                partial(screen.run_command, commands.Alerts("notify", desktop)),
                "OSC 9/777 through the terminal (/notify)",
            )
        )
        if screen.chat.can_reconnect:
            found.insert(0, ("Reconnect", screen.chat.action_reconnect, "connect again (ctrl+r)"))
        room = screen.current_room
        if room is not None:
            found.append((f"Invite to #{room}…", screen.action_invite, "ctrl+t"))
            found.append((f"Leave #{room}", screen.action_leave, "/leave"))
            found.append((f"Set the topic of #{room}…", screen.action_topic, "/topic TEXT"))
            if state.is_me(state.owner_of(room) or ""):
                found.append((f"Kick from #{room}…", screen.action_kick, "/kick NICK [REASON]"))
        if screen.current_address is not None:
            found.append(
                (
                    f"Send a file to {screen.current_address}…",
                    screen.action_pick_file,
                    "a picture shows inline (ctrl+u, /image, /file)",
                )
            )
            found.append((f"Close {screen.current_address}", screen.action_close_pane, "alt+w"))
        for user in state.sorted_users():
            status = "online" if user.online else "offline"
            found.append(
                (f"Message @{user.nick}", partial(screen.open_later, dm_address(user.nick)), status)
            )
        for info in sorted(state.rooms.values(), key=lambda r: r.name.casefold()):
            found.append(
                (f"Open #{info.name}", partial(screen.open_later, room_address(info.name)), "group")
            )
        for name, count in state.joinable_public_rooms():
            found.append(
                (
                    f"Join #{name}",
                    partial(screen.chat.request_join, name),
                    f"public, {count} members",
                )
            )
        for invite in state.invites.values():
            accept = partial(screen.chat.answer_invitation, invite.room, "accept")
            decline = partial(screen.chat.answer_invitation, invite.room, "decline")
            found.append((f"Accept invitation to #{invite.room}", accept, f"from {invite.by}"))
            found.append((f"Decline invitation to #{invite.room}", decline, f"from {invite.by}"))
        return found

    async def discover(self) -> Hits:
        for name, callback, help_text in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, text=name, help=help_text)
