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
    public: bool = False


@dataclass(frozen=True)
class Me:
    """An action (`/me waves`): sent as the text `/me waves`, shown as `* bob waves`."""

    text: str


@dataclass(frozen=True)
class Whois:
    nick: str


@dataclass(frozen=True)
class Names:
    """Who is in the current group."""


@dataclass(frozen=True)
class ListRooms:
    """The public groups and their sizes."""


@dataclass(frozen=True)
class Alerts:
    """Turn the bell (`bell`) or desktop notifications (`notify`) on or off for this session."""

    what: str
    value: str


@dataclass(frozen=True)
class Unsupported:
    """A command people expect that this server cannot do: say why, in words."""

    reason: str


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
    """Send a picture (None: pick one)."""

    path: str | None = None


@dataclass(frozen=True)
class SendFile:
    """Send any file (None: pick one)."""

    path: str | None = None


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Quit:
    pass


Command = (
    Say
    | Msg
    | Create
    | InviteUser
    | Join
    | Leave
    | Topic
    | Kick
    | Close
    | Image
    | SendFile
    | Help
    | Quit
    | Me
    | Whois
    | Names
    | ListRooms
    | Alerts
    | Unsupported
)

USAGE: dict[str, tuple[str, str]] = {
    "msg": ("/msg NICK [TEXT]", "open the conversation with NICK, and send TEXT if given"),
    "create": (
        "/create ROOM [--public] [NICK...]",
        "create a group (invite-only, or --public: anyone may join) and invite NICKs",
    ),
    "invite": ("/invite NICK", "invite NICK to the current group"),
    "join": ("/join ROOM", "join a public group"),
    "leave": ("/leave [ROOM]", "leave the current group (or ROOM)"),
    "topic": ("/topic TEXT", "set the current group's topic (empty: clear it)"),
    "kick": ("/kick NICK [REASON]", "remove NICK from the current group (its owner only)"),
    "close": ("/close", "close the current pane"),
    "image": ("/image [PATH]", "send a picture (without PATH: pick one; also ctrl+u)"),
    "file": ("/file [PATH]", "send a file (without PATH: pick one)"),
    "me": ("/me TEXT", "say what you do: shown as * nick TEXT"),
    "whois": ("/whois NICK", "whether NICK is online, and the groups you share"),
    "names": ("/names", "who is in the current group"),
    "list": ("/list", "the public groups and how many are in each"),
    "bell": ("/bell on|off", "ring on a DM or a mention you are not looking at"),
    "notify": (
        "/notify on|off|osc9|osc777",
        "desktop notification through the terminal on a DM or a mention",
    ),
    "nick": ("/nick NICK", "change nick (reconnect with another nick instead)"),
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
    "w": "whois",
    "who": "names",
    "action": "me",
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
            public = any(a in ("--public", "-p") for a in args)
            args = [a for a in args if a not in ("--public", "-p", "--private")]
            if not args:
                raise CommandError(f"usage: {usage}")
            room = _name(args[0], "#", "group name", name)
            invite = tuple(_name(a, "@", "nick", name) for a in args[1:])
            return Create(room, invite, public)
        case "me":
            if not rest.strip():
                raise CommandError(f"usage: {usage}")
            return Me(rest.strip())
        case "whois":
            if len(args) != 1:
                raise CommandError(f"usage: {usage}")
            return Whois(_name(args[0], "@", "nick", name))
        case "names":
            return Names()
        case "list":
            return ListRooms()
        case "bell":
            if len(args) != 1 or args[0].lower() not in ("on", "off"):
                raise CommandError(f"usage: {usage}")
            return Alerts("bell", args[0].lower())
        case "notify":
            if len(args) != 1 or args[0].lower() not in ("on", "off", "osc9", "osc777"):
                raise CommandError(f"usage: {usage}")
            return Alerts("notify", args[0].lower())
        case "topic":
            return Topic(rest.strip())
        case "nick":
            return Unsupported(
                "A nick is who you are on tlschat: to be someone else, quit and connect "
                "with another nick."
            )
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
            return Image(rest.strip() or None)
        case "file":
            return SendFile(rest.strip() or None)
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
