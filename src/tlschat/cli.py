"""The `tlschat` command line: serve | tui | send | tail | get | search | admin | trust |
forget | backup | gen-certs. Heavy imports stay lazy."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from tlschat import __version__
from tlschat.address import AddressError, Server, parse_hostport, parse_servers


def fail(message: str, code: int = 2) -> NoReturn:
    """One clear line on stderr and a non-zero exit: never a traceback."""
    click.echo(f"tlschat: {message}", err=True)
    sys.exit(code)


def servers_or_fail(address: str) -> list[Server]:
    """`HOST:PORT`, or several of them comma-separated (the nodes of one chat, tried in turn)."""
    try:
        return parse_servers(address)
    except AddressError as exc:
        fail(str(exc))


def read_password(password_env: str | None) -> str | None:
    """The password from the named environment variable (never from argv, where `ps` shows it)."""
    if password_env is None:
        return None
    value = os.environ.get(password_env)
    if value is None:
        fail(f"environment variable {password_env} is not set")
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tlschat")
def cli() -> None:
    """tlschat: self-hosted encrypted chat for terminals.

    ADDRESS is HOST:PORT, or several comma-separated (a:7700,b:7700): the nodes of one chat,
    tried in turn; a lost connection resumes on the next one.
    """


def main() -> None:
    """The console script: usage errors become one line (`tlschat: ...`), never a traceback."""
    try:
        code = cli.main(standalone_mode=False)
    except click.UsageError as exc:
        path = exc.ctx.command_path if exc.ctx else "tlschat"
        fail(f"{exc.format_message()} (see '{path} --help')")
    except click.ClickException as exc:
        fail(exc.format_message())
    except click.Abort:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


# --- serve --------------------------------------------------------------------------------------

_LIMIT_OPTIONS: list[tuple[str, type, str]] = [
    ("--max-frame", int, "largest frame in bytes (default 65536)"),
    ("--max-text", int, "longest message text in characters (default 4000)"),
    ("--max-upload", int, "largest upload in bytes (default 10 MiB)"),
    ("--chunk", int, "upload/download chunk in bytes (default 32768)"),
    ("--rate-burst", int, "requests a client may burst (default 20)"),
    ("--rate-per-sec", float, "sustained requests per second per connection (default 5)"),
    ("--max-queue", int, "outgoing queue per connection in bytes (default 256 KiB)"),
    ("--max-conns", int, "connections in all (default 1024)"),
    ("--max-per-ip", int, "connections per IP address (default 16)"),
    ("--max-unauth", int, "connections not yet logged in, in all (default 256)"),
    ("--max-unauth-per-ip", int, "connections not yet logged in per IP (default 8)"),
    ("--max-login-failures", int, "password checks per minute per IP (default 3)"),
    ("--max-nick-failures", int, "password checks per minute per nick, all IPs (default 20)"),
    ("--max-registrations", int, "new accounts per hour per IP (default 10)"),
    ("--max-members", int, "members per group (default 256)"),
    ("--guest-hold", float, "seconds a guest is held after its last session (default 600)"),
    ("--max-rooms-per-user", int, "groups one user may be in (default 100)"),
    ("--invite-ttl", float, "seconds before an invitation expires (default 7 days)"),
    ("--upload-rate", int, "upload bytes per second per user (default 4 MiB)"),
    ("--max-pending-uploads", int, "unfinished uploads per user (default 2)"),
    ("--upload-idle-timeout", float, "seconds before an idle upload is discarded (default 60)"),
    ("--handshake-timeout", float, "seconds to finish the TLS handshake (default 10)"),
    ("--frame-timeout", float, "seconds for a frame body to follow its length (default 10)"),
]


def _limit_options(func: Any) -> Any:
    for flag, kind, help_text in reversed(_LIMIT_OPTIONS):
        func = click.option(flag, type=kind, default=None, help=help_text)(func)
    return func


@cli.command()
@click.option("--host", default=None, help="address to listen on (default 0.0.0.0)")
@click.option("--port", type=int, default=None, help="port to listen on (default 7700)")
@click.option(
    "--cert", type=click.Path(path_type=Path), default=None, help="server certificate (PEM)"
)
@click.option(
    "--key", type=click.Path(path_type=Path), default=None, help="server private key (PEM)"
)
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="where data lives")
@click.option(
    "--files-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="uploaded files (default DATA_DIR/files); one folder shared by several nodes",
)
@click.option("--name", multiple=True, help="extra host name for a generated certificate")
@click.option(
    "--tls-min", type=click.Choice(["1.3", "1.2"]), default=None, help="lowest TLS version"
)
@click.option(
    "--require-password", is_flag=True, default=None, help="no guests: every nick needs a password"
)
@click.option(
    "--client-ca",
    type=click.Path(path_type=Path),
    default=None,
    help="mutual TLS: CA of client certs",
)
@click.option(
    "--keylog",
    type=click.Path(path_type=Path),
    default=None,
    help="DEBUG ONLY: write TLS secrets here",
)
@click.option(
    "--login-timeout", type=float, default=None, help="seconds to complete hello (default 10)"
)
@click.option(
    "--idle-timeout",
    type=float,
    default=None,
    help="seconds of silence before disconnect (default 90)",
)
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR (default INFO)")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="log lines as text or JSON",
)
@click.option(
    "--metrics",
    default=None,
    metavar="HOST:PORT",
    help="serve Prometheus metrics (plain HTTP) here",
)
@click.option(
    "--database",
    default=None,
    metavar="URL",
    help="a PostgreSQL database (postgresql://...) shared by several nodes (default: SQLite)",
)
@click.option("--admin", multiple=True, metavar="NICK", help="an administrator's nick (repeatable)")
@click.option(
    "--registration",
    type=click.Choice(["open", "closed"]),
    default=None,
    help="closed: only administrators create accounts (default open)",
)
@click.option(
    "--redis",
    default=None,
    metavar="URL",
    help="redis://HOST:PORT: serve one chat with the other nodes sharing this Redis",
)
@click.option(
    "--node-heartbeat",
    type=float,
    default=None,
    metavar="SECONDS",
    help="with --redis: seconds between heartbeats; silent for 3 = dead (default 5)",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="TOML config file",
)
@_limit_options
def serve(config_file: Path | None, **flags: Any) -> None:
    """Run the chat daemon (TLS 1.3; a self-signed certificate is made on first start)."""
    from tlschat.config import ConfigError, build_config, load_env, load_toml

    for many in ("name", "admin"):
        if not flags.get(many):
            flags.pop(many, None)
    try:
        file_layer = load_toml(config_file) if config_file else {}
        config = build_config(file_layer, load_env(), flags)
    except ConfigError as exc:
        fail(str(exc))
    from tlschat.server.daemon import run

    sys.exit(run(config))


# --- clients ------------------------------------------------------------------------------------


@cli.command()
@click.argument("address", required=False)
@click.argument("nick", required=False)
@click.option(
    "--cafile", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None
)
@click.option(
    "--password-env", default=None, help="name of the environment variable holding the password"
)
def tui(
    address: str | None, nick: str | None, cafile: Path | None, password_env: str | None
) -> None:
    """The terminal client. Without arguments it connects as the config file says
    (client.toml in the user's config dir), or opens a connect screen. ADDRESS is HOST:PORT,
    or several comma-separated: the nodes of one chat, tried in turn."""
    servers = servers_or_fail(address) if address else None
    password = read_password(password_env)
    from tlschat.client.settings import SettingsError, load

    try:
        settings = load()
    except SettingsError as exc:
        fail(str(exc))
    from tlschat.tui.app import run_tui

    sys.exit(
        run_tui(servers=servers, nick=nick, cafile=cafile, password=password, settings=settings)
    )


@cli.command()
@click.argument("address")
@click.argument("nick")
@click.option("--to", "to", required=True, help="@nick or #room")
@click.option(
    "--file",
    "file",
    type=click.Path(path_type=Path),
    default=None,
    help="attach this file (an image shows inline in the TUI)",
)
@click.option(
    "--cafile", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None
)
@click.option(
    "--password-env", default=None, help="name of the environment variable holding the password"
)
@click.argument("text", nargs=-1)
def send(
    address: str,
    nick: str,
    to: str,
    file: Path | None,
    cafile: Path | None,
    password_env: str | None,
    text: tuple[str, ...],
) -> None:
    """Send one message (TEXT, or standard input; with --file, TEXT is optional) and exit."""
    servers = servers_or_fail(address)
    if text:
        body = " ".join(text)
    elif file is not None:
        body = ""  # a file alone: never wait on a terminal's standard input
    else:
        body = sys.stdin.read().rstrip("\n")
    password = read_password(password_env)
    from tlschat.client.headless import run_send

    sys.exit(run_send(servers, nick, to=to, text=body, cafile=cafile, password=password, file=file))


@cli.command()
@click.argument("address")
@click.argument("nick")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.option("--with", "with_", default=None, help="only this conversation (@nick or #room)")
@click.option(
    "--cafile", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None
)
@click.option(
    "--password-env", default=None, help="name of the environment variable holding the password"
)
def tail(
    address: str,
    nick: str,
    as_json: bool,
    with_: str | None,
    cafile: Path | None,
    password_env: str | None,
) -> None:
    """Print messages as they arrive."""
    servers = servers_or_fail(address)
    password = read_password(password_env)
    from tlschat.client.headless import run_tail

    sys.exit(
        run_tail(servers, nick, as_json=as_json, with_=with_, cafile=cafile, password=password)
    )


def read_secret(env: str | None, file: Path | None, what: str = "password") -> str | None:
    """A secret from an environment variable or a file (first line), never from argv."""
    if env is not None and file is not None:
        fail(f"give the {what} with one of --{what}-env and --{what}-file, not both")
    if file is not None:
        try:
            return file.read_text(encoding="utf-8").splitlines()[0] if file.stat().st_size else ""
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read {what} file {file}: {getattr(exc, 'strerror', None) or exc}")
    return read_password(env)


_ADMIN_ACTIONS = {"users": 0, "ban": 1, "unban": 1, "kick": 2, "register": 1}


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument("address")
@click.argument("nick")
@click.argument("action", type=click.Choice(sorted(_ADMIN_ACTIONS)))
@click.argument("args", nargs=-1)
@click.option("--reason", default=None, help="ban or kick: the reason the user is told")
@click.option(
    "--cafile", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None
)
@click.option("--password-env", default=None, help="environment variable holding your password")
@click.option(
    "--password-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="file whose first line is your password",
)
@click.option(
    "--new-password-env", default=None, help="register: variable holding the new password"
)
@click.option(
    "--new-password-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="register: file whose first line is the new password",
)
def admin(
    address: str,
    nick: str,
    action: str,
    args: tuple[str, ...],
    reason: str | None,
    cafile: Path | None,
    password_env: str | None,
    password_file: Path | None,
    new_password_env: str | None,
    new_password_file: Path | None,
) -> None:
    """An administrator's requests: users | ban NICK | unban NICK | kick ROOM NICK | register NICK.

    Never prompts. Exit codes: 0 ok, 2 usage, 3 authentication, 4 TLS trust, 5 connection,
    6 refused by the server."""
    servers = servers_or_fail(address)
    wanted = _ADMIN_ACTIONS[action]
    if len(args) != wanted:
        fail(f"admin {action} takes {wanted} argument(s), not {len(args)} (see 'tlschat admin -h')")
    from tlschat import protocol as p

    frame: p.Request
    if action == "users":
        frame = p.UsersRequest()
    elif action == "ban":
        frame = p.Ban(nick=args[0], reason=reason)
    elif action == "unban":
        frame = p.Unban(nick=args[0])
    elif action == "kick":
        frame = p.Kick(room=args[0].removeprefix("#"), nick=args[1], reason=reason)
    else:
        new = read_secret(new_password_env, new_password_file, "new-password")
        if not new:
            fail("admin register needs --new-password-env or --new-password-file")
        frame = p.Register(nick=args[0], password=new)
    password = read_secret(password_env, password_file)
    from tlschat.client.headless import run_admin

    sys.exit(run_admin(servers, nick, frame=frame, cafile=cafile, password=password))


@cli.command()
@click.argument("address")
@click.option("--fingerprint", default=None, help="trust only if the server presents this SHA-256")
def trust(address: str, fingerprint: str | None) -> None:
    """Pin the certificate HOST:PORT presents in the known-hosts file (what the TUI asks)."""
    try:
        host, port = parse_hostport(address)
    except AddressError as exc:
        fail(str(exc))
    from tlschat.client.headless import run_trust

    sys.exit(run_trust(host, port, fingerprint=fingerprint))


@cli.command()
@click.argument("address")
def forget(address: str) -> None:
    """Remove HOST:PORT from the known-hosts file."""
    try:
        host, port = parse_hostport(address)
    except AddressError as exc:
        fail(str(exc))
    from tlschat.client.headless import run_forget

    sys.exit(run_forget(host, port))


@cli.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="the daemon's data directory",
)
@click.argument("dest", type=click.Path(path_type=Path))
def backup(data_dir: Path, dest: Path) -> None:
    """Copy the data directory into DEST (new or empty) consistently, even while serving."""
    from tlschat.server.backup import BackupError
    from tlschat.server.backup import backup as make_backup

    try:
        result = make_backup(data_dir, dest)
    except BackupError as exc:
        fail(str(exc), 1)
    click.echo(
        f"backup of {data_dir} in {dest}: {result.messages} messages, {result.files} files;"
        " integrity check ok"
    )


@cli.command()
@click.argument("address")
@click.argument("nick")
@click.argument("file_id")
@click.option(
    "-o",
    "--output",
    default=None,
    help="where to write it (a file or a folder; '-' is standard output); default: its name here",
)
@click.option(
    "--sha256",
    default=None,
    help="the file's SHA-256, checked as well (needed only with a server that does not send it)",
)
@click.option(
    "--cafile", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None
)
@click.option(
    "--password-env", default=None, help="name of the environment variable holding the password"
)
def get(
    address: str,
    nick: str,
    file_id: str,
    output: str | None,
    sha256: str | None,
    cafile: Path | None,
    password_env: str | None,
) -> None:
    """Download a file you may read (its id from `tail`), verified against its SHA-256."""
    servers = servers_or_fail(address)
    password = read_password(password_env)
    from tlschat.client.headless import run_get

    sys.exit(
        run_get(
            servers,
            nick,
            file_id=file_id,
            output=output,
            sha256=sha256,
            cafile=cafile,
            password=password,
        )
    )


@cli.command()
@click.argument("address")
@click.argument("nick")
@click.argument("query", nargs=-1, required=True)
@click.option("--with", "with_", default=None, help="only this conversation (@nick or #room)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.option(
    "--limit", type=click.IntRange(1, 50), default=20, show_default=True, help="at most this many"
)
@click.option(
    "--cafile", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None
)
@click.option(
    "--password-env", default=None, help="name of the environment variable holding the password"
)
def search(
    address: str,
    nick: str,
    query: tuple[str, ...],
    with_: str | None,
    as_json: bool,
    limit: int,
    cafile: Path | None,
    password_env: str | None,
) -> None:
    """Search the server's history: messages holding every word of QUERY, newest first (the
    last word may be the start of a word; "quoted words" must appear in that order)."""
    servers = servers_or_fail(address)
    password = read_password(password_env)
    from tlschat.client.headless import run_search

    sys.exit(
        run_search(
            servers,
            nick,
            query=" ".join(query),
            with_=with_,
            limit=limit,
            as_json=as_json,
            cafile=cafile,
            password=password,
        )
    )


@cli.command("gen-certs")
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="directory to write into"
)
@click.option("--name", "names", multiple=True, required=True, help="host name or IP (repeatable)")
@click.option(
    "--days", type=int, default=825, show_default=True, help="server certificate lifetime"
)
def gen_certs(out: Path, names: tuple[str, ...], days: int) -> None:
    """Make a CA and a server certificate for a real deployment."""
    from tlschat.certs import CertError, write_deployment

    try:
        files = write_deployment(out, names, days=days)
    except CertError as exc:
        fail(str(exc))
    for label, path in files.describe():
        click.echo(f"{label}: {path}")


if __name__ == "__main__":  # pragma: no cover
    main()
