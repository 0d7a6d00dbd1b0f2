"""The input line's slash commands: parsing only, no widgets and no network."""

from __future__ import annotations

from dataclasses import dataclass

from tlschat.protocol import is_valid_name


class CommandError(ValueError):
    """A command the user got wrong; the message says how to write it."""


@dataclass(frozen=True)
class Say:
    """Plain text for the current conversation (`//text` sends `/text`)."""

    text: str


@dataclass(frozen=True)
class Msg:
    nick: str
    text: str = ""


@dataclass(frozen=True)
class Create:
    room: str
    invite: tuple[str, ...] = ()


@dataclass(frozen=True)
class InviteUser:
    nick: str


@dataclass(frozen=True)
class Join:
    room: str


@dataclass(frozen=True)
class Leave:
    room: str | None = None


@dataclass(frozen=True)
class Topic:
    text: str


@dataclass(frozen=True)
class Kick:
    nick: str
    reason: str | None = None


@dataclass(frozen=True)
class Close:
    """Close the current pane (a DM, or a group without leaving it)."""


@dataclass(frozen=True)
class Image:
    path: str


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Quit:
    pass


Command = (
    Say | Msg | Create | InviteUser | Join | Leave | Topic | Kick | Close | Image | Help | Quit
)

USAGE: dict[str, tuple[str, str]] = {
    "msg": ("/msg NICK [TEXT]", "open the conversation with NICK, and send TEXT if given"),
    "create": ("/create ROOM [NICK...]", "create a group and invite NICKs"),
    "invite": ("/invite NICK", "invite NICK to the current group"),
    "join": ("/join ROOM", "join a public group"),
    "leave": ("/leave [ROOM]", "leave the current group (or ROOM)"),
    "topic": ("/topic TEXT", "set the current group's topic (empty: clear it)"),
    "kick": ("/kick NICK [REASON]", "remove NICK from the current group (its owner only)"),
    "close": ("/close", "close the current pane"),
    "image": ("/image PATH", "send an image (not available yet)"),
    "help": ("/help", "show commands and keys"),
    "quit": ("/quit", "leave tlschat"),
}
"""Every command: its synopsis and what it does (for /help and error messages)."""

_ALIASES = {
    "m": "msg",
    "query": "msg",
    "j": "join",
    "part": "leave",
    "q": "quit",
    "exit": "quit",
    "?": "help",
}


def _name(raw: str, sigil: str, what: str, command: str) -> str:
    name = raw[1:] if raw.startswith(sigil) else raw
    if not is_valid_name(name):
        raise CommandError(
            f"{raw!r} is not a valid {what}: 1-32 of A-Z a-z 0-9 _ - . "
            f"starting with a letter, digit or _ (usage: {USAGE[command][0]})"
        )
    return name


def parse(line: str) -> Command:
    """What the user typed, as a command. Raise CommandError with a usage hint if it is wrong."""
    if not line.startswith("/"):
        return Say(line)
    if line.startswith("//"):
        return Say(line[1:])
    head, _, rest = line[1:].partition(" ")
    name = _ALIASES.get(head.lower(), head.lower())
    args = rest.split()
    if name not in USAGE:
        raise CommandError(f"unknown command /{head}: /help lists the commands")
    usage = USAGE[name][0]
    match name:
        case "msg":
            if not args:
                raise CommandError(f"usage: {usage}")
            nick = _name(args[0], "@", "nick", name)
            text = rest.lstrip().partition(" ")[2].strip()
            return Msg(nick, text)
        case "create":
            if not args:
                raise CommandError(f"usage: {usage}")
            room = _name(args[0], "#", "group name", name)
            return Create(room, tuple(_name(a, "@", "nick", name) for a in args[1:]))
        case "invite":
            if len(args) != 1:
                raise CommandError(f"usage: {usage}")
            return InviteUser(_name(args[0], "@", "nick", name))
        case "join":
            if len(args) != 1:
                raise CommandError(f"usage: {usage}")
            return Join(_name(args[0], "#", "group name", name))
        case "leave":
            if len(args) > 1:
                raise CommandError(f"usage: {usage}")
            return Leave(_name(args[0], "#", "group name", name) if args else None)
        case "image":
            if not rest.strip():
                raise CommandError(f"usage: {usage}")
            return Image(rest.strip())
        case "topic":
            return Topic(rest.strip())
        case "kick":
            if not args:
                raise CommandError(f"usage: {usage}")
            nick = _name(args[0], "@", "nick", name)
            reason = rest.strip()[len(args[0]) :].strip()
            return Kick(nick, reason or None)
        case "close":
            return Close()
        case "help":
            return Help()
        case _:
            return Quit()
