"""`tlschat send`, `tail`, `get`, `search`, `admin`, `trust`, `forget`: the client library
without a UI; never asks about trust. Exit codes (PRODUCT.md "Command line"): 0 ok, 2 usage,
3 authentication, 4 TLS trust, 5 connection, 6 refused by the server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import ssl
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TextIO

from tlschat import __version__, tls
from tlschat.address import Server, format_hostport, format_servers
from tlschat.client import attachments
from tlschat.client.connection import (
    ChatClient,
    ConnectionState,
    StateChanged,
    Trust,
    TrustError,
    UnverifiableDownload,
    describe,
)
from tlschat.client.errors_text import explain_failure
from tlschat.client.guest_tokens import GuestTokens
from tlschat.client.known_hosts import KnownHosts, normalize_fingerprint
from tlschat.client.server_list import NoServerAnswered
from tlschat.protocol import (
    ConnectionClosed,
    FileMeta,
    Message,
    Request,
    RequestFailed,
    TlsChatError,
    Users,
    encode_payload,
    has_forbidden_controls,
    name_key,
    parse_address,
)

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_TRUST = 4
EXIT_CONNECTION = 5
EXIT_REFUSED = 6
EXIT_INTERRUPTED = 130

AUTH_CODES = frozenset(
    {
        "auth_failed",
        "auth_required",
        "banned",
        "nick_taken",
        "nick_invalid",
        "registration_closed",
        "version_unsupported",
    }
)
"""Error codes of a refused `hello`: exit 3 (authentication)."""


def exit_code(exc: BaseException) -> int:
    """The documented exit code for a failure."""
    if isinstance(exc, TrustError | ssl.SSLCertVerificationError):
        return EXIT_TRUST
    if isinstance(exc, RequestFailed):
        return EXIT_AUTH if exc.code in AUTH_CODES else EXIT_REFUSED
    if isinstance(exc, ConnectionClosed | OSError | TimeoutError):
        return EXIT_CONNECTION
    return EXIT_REFUSED


def _transfer_code(exc: BaseException) -> int:
    """An upload or download failed: the server's refusal or the connection (as `exit_code`), or
    a local file that cannot be read or written (usage)."""
    if isinstance(exc, RequestFailed | ConnectionClosed | TimeoutError | ConnectionError):
        return exit_code(exc)
    if isinstance(exc, OSError):
        return EXIT_USAGE
    return exit_code(exc)


def _say(text: str) -> None:
    """One line on stderr, as every tlschat command reports a problem."""
    print(f"tlschat: {text}", file=sys.stderr, flush=True)


def _failure(exc: BaseException, where: str) -> str:
    """The one line that explains why a connection or a request to `where` (`host:port`)
    failed."""
    if isinstance(exc, TrustError):
        if exc.reason == "changed":
            return str(exc)
        return (
            f"server certificate is not trusted (fingerprint {exc.fingerprint}); use --cafile "
            "or connect once with `tlschat tui` to trust it"
        )
    if isinstance(exc, RequestFailed):
        # The code first, for scripts; then the sentence, for people (one place: errors_text).
        return f"{exc.code}: {explain_failure(exc)}"
    if isinstance(exc, ConnectionClosed):
        return f"connection to {where} closed: {exc}"
    if isinstance(exc, NoServerAnswered):  # it names each address with its reason
        return f"cannot connect: {describe(exc)}"
    if isinstance(exc, OSError):  # refused, unreachable, unknown host, TLS errors, timeouts
        return f"cannot connect to {where}: {describe(exc)}"
    if isinstance(exc, TlsChatError):
        return str(exc)
    return f"unexpected error: {exc.__class__.__name__}: {exc}"


def _quiet_asyncio() -> None:
    # asyncio logs transport teardown noise ("Fatal error on SSL transport") to stderr when a
    # peer vanishes; the commands report failures themselves, in one line.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    logging.getLogger("tlschat").setLevel(logging.ERROR)


def _client(
    servers: Sequence[Server],
    nick: str,
    *,
    cafile: Path | None,
    password: str | None,
    reconnect: bool,
) -> ChatClient:
    # A guest keeps its resume token on disk, so a bot restarted within its hold is the same
    # guest again, with its groups (PROTOCOL.md "Session" -> Guests). It is kept under the
    # first address, the chat's name, whichever node hands it out.
    (host, port), *others = servers
    tokens = GuestTokens() if password is None else None

    def keep(token: str) -> None:
        if tokens is not None:
            with contextlib.suppress(OSError):
                tokens.save(host, port, nick, token)

    return ChatClient(
        host,
        port,
        nick,
        password=password,
        trust=Trust(cafile=cafile, ask=None),
        reconnect=reconnect,
        client_name=f"tlschat-cli/{__version__}",
        resume=tokens.load(host, port, nick) if tokens is not None else None,
        on_resume=keep,
        other_servers=others,
    )


# --- send ---------------------------------------------------------------------------------------


def run_send(
    servers: Sequence[Server],
    nick: str,
    *,
    to: str,
    text: str,
    cafile: Path | None,
    password: str | None,
    file: Path | None = None,
) -> int:
    """Connect, send one message (with `file` attached, if given), wait for its echo (the
    server's acknowledgement); exit code."""
    _quiet_asyncio()
    try:
        parse_address(to)
    except ValueError as exc:
        _say(f"--to: {exc}")
        return EXIT_USAGE
    if has_forbidden_controls(text):
        _say("the text holds control characters, which tlschat refuses")
        return EXIT_USAGE
    if file is not None:
        try:
            attachments.check_readable(file, None)  # before connecting: the usual mistakes
        except OSError as exc:
            _say(str(exc))
            return EXIT_USAGE
    elif not text:
        _say("nothing to send: give TEXT, text on standard input, or --file PATH")
        return EXIT_USAGE
    try:
        return asyncio.run(_send(servers, nick, to, text, cafile, password, file))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


async def _send(
    servers: Sequence[Server],
    nick: str,
    to: str,
    text: str,
    cafile: Path | None,
    password: str | None,
    file: Path | None,
) -> int:
    client = _client(servers, nick, cafile=cafile, password=password, reconnect=False)
    try:
        await client.connect()
        file_id: str | None = None
        if file is not None:
            limit = client.welcome.limits.max_upload if client.welcome else None
            try:
                await asyncio.to_thread(attachments.check_readable, file, limit)
                meta = await client.upload_file(file)
            except Exception as exc:
                _say(attachments.upload_failure(exc, file.name, limit))
                return _transfer_code(exc)
            file_id = meta.id
        await client.send_message(to, text, file=file_id)
    except Exception as exc:
        _say(_failure(exc, client.address))
        return exit_code(exc)
    finally:
        await client.close()
    return EXIT_OK


# --- get ----------------------------------------------------------------------------------------

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def run_get(
    servers: Sequence[Server],
    nick: str,
    *,
    file_id: str,
    output: str | None,
    sha256: str | None,
    cafile: Path | None,
    password: str | None,
) -> int:
    """Download a file, verify its SHA-256, write it atomically (`output` "-": stdout)."""
    _quiet_asyncio()
    if sha256 is not None and not _HEX64.fullmatch(sha256):
        _say("--sha256: expected 64 hexadecimal digits")
        return EXIT_USAGE
    try:
        return asyncio.run(_get(servers, nick, file_id, output, sha256, cafile, password))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_USAGE  # our own standard output went away


async def _get(
    servers: Sequence[Server],
    nick: str,
    file_id: str,
    output: str | None,
    sha256: str | None,
    cafile: Path | None,
    password: str | None,
) -> int:
    client = _client(servers, nick, cafile=cafile, password=password, reconnect=False)
    try:
        try:
            await client.connect()
        except Exception as exc:
            _say(_failure(exc, client.address))
            return exit_code(exc)
        # The metadata to verify by comes with the download's first frame (docs/protocol.md
        # "Files"); `--sha256` is checked as well, and stands in for it with an older server.
        target = GetTarget(output, file_id)
        try:
            if output == "-":
                data = await client.download(file_id, sha256=sha256, require_verification=True)
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            else:
                await client.download_to(file_id, target, sha256=sha256, require_verification=True)
        except UnverifiableDownload:
            _say(
                f"cannot verify file {file_id}: the server sends no SHA-256 with downloads "
                "(pass its --sha256 from `tlschat tail --json`)"
            )
            return EXIT_USAGE
        except (RequestFailed, OSError, TimeoutError) as exc:
            _say(attachments.download_failure(exc, target.name))
            return _transfer_code(exc)
        except Exception as exc:
            _say(_failure(exc, client.address))
            return exit_code(exc)
    finally:
        await client.close()
    return EXIT_OK


class GetTarget:
    """Where `get` writes: `-o PATH` (a file, or a folder for the file's own name), or by
    default the file's own name here, never over an existing file. The name is known only once
    the download's first frame has come, so `ChatClient.download_to` asks then (a
    `TargetChooser`, run in a worker thread)."""

    def __init__(self, output: str | None, file_id: str) -> None:
        self.output = output
        self.name = file_id
        """What messages call the file: its id until the server has said its name."""

    def __call__(self, meta: FileMeta | None) -> Path:
        if meta is not None:
            self.name = meta.name
        own_name = Path(attachments.safe_name(self.name))
        if self.output is None:
            if own_name.exists():
                raise FileExistsError(f"{own_name} exists: choose where to write with -o PATH")
            return own_name
        path = Path(self.output)
        return path / own_name if path.is_dir() else path


# --- tail ---------------------------------------------------------------------------------------


def _with_is_valid(with_: str | None) -> bool:
    """`--with` names a conversation (`@nick` or `#room`); else say why (exit 2 follows)."""
    if with_ is None:
        return True
    try:
        parse_address(with_)
    except ValueError as exc:
        _say(f"--with: {exc}")
        return False
    return True


def run_tail(
    servers: Sequence[Server],
    nick: str,
    *,
    as_json: bool,
    with_: str | None,
    cafile: Path | None,
    password: str | None,
) -> int:
    """Print messages as they arrive until interrupted (Ctrl-C: exit 0); reconnect on drops."""
    _quiet_asyncio()
    if not _with_is_valid(with_):
        return EXIT_USAGE
    try:
        return asyncio.run(_tail(servers, nick, as_json, with_, cafile, password))
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        # `tlschat tail | head`: the reader went away; that is a normal end.
        _silence_stdout()
        return EXIT_OK


def _silence_stdout() -> None:
    # Python flushes stdout at exit, which would fail again on the broken pipe.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


async def _tail(
    servers: Sequence[Server],
    nick: str,
    as_json: bool,
    with_: str | None,
    cafile: Path | None,
    password: str | None,
) -> int:
    client = _client(servers, nick, cafile=cafile, password=password, reconnect=True)
    try:
        try:
            await client.connect()
        except Exception as exc:
            _say(_failure(exc, client.address))
            return exit_code(exc)
        reconnecting = False
        async for event in client.events():
            if isinstance(event, Message):
                if with_ is None or in_conversation(event, client.nick, with_):
                    print_message(event, as_json=as_json, out=sys.stdout)
            elif isinstance(event, StateChanged):
                if event.state is ConnectionState.RECONNECTING:
                    if not reconnecting:
                        _say(f"connection lost ({event.detail}); reconnecting")
                    reconnecting = True
                elif event.state is ConnectionState.CONNECTED and reconnecting:
                    _say(f"reconnected to {client.address}")
                    reconnecting = False
                elif event.state is ConnectionState.CLOSED:
                    _say(event.detail or "connection closed")
                    return EXIT_CONNECTION
        return EXIT_CONNECTION  # events() only ends with CLOSED, reported above
    finally:
        await client.close()


def in_conversation(message: Message, me: str, address: str) -> bool:
    """Does `message` belong to the conversation `address` (`#room`, or `@nick` with me)?"""
    kind, name = parse_address(address)
    if kind == "#":
        return message.to.startswith("#") and name_key(message.to[1:]) == name_key(name)
    if not message.to.startswith("@"):
        return False
    sender, recipient, other, self_ = (
        name_key(message.from_),
        name_key(message.to[1:]),
        name_key(name),
        name_key(me),
    )
    return {sender, recipient} == {self_, other}


def format_message(message: Message) -> str:
    """`[HH:MM:SS] from -> to: text`, the time in the local zone."""
    try:
        moment = datetime.fromisoformat(message.ts).astimezone()
        clock = moment.strftime("%H:%M:%S")
    except ValueError:
        clock = message.ts
    head = f"[{clock}] {message.from_} -> {message.to}:"
    if message.delete_of is not None:
        return f"{head} [deleted message {message.delete_of}]"
    if message.deleted:
        return f"{head} [message deleted]"
    if message.edit_of is not None:
        return f"{head} [edit of {message.edit_of}] {message.text}"
    line = f"{head} {message.text}"
    if message.file is not None:
        separator = " " if message.text else ""
        line += f"{separator}[file: {attachments.summary(message.file, times='x')} id {message.file.id}]"
    if message.edited is not None:
        line += " (edited)"
    return line


def print_message(message: Message, *, as_json: bool, out: TextIO) -> None:
    if as_json:
        # The frame as the protocol has it (`ref` dropped: it belongs to the sending session).
        text = encode_payload(message.model_copy(update={"ref": None})).decode()
    else:
        text = format_message(message)
    out.write(text + "\n")
    out.flush()


# --- admin --------------------------------------------------------------------------------------


def run_admin(
    servers: Sequence[Server],
    nick: str,
    *,
    frame: Request,
    cafile: Path | None,
    password: str | None,
    out: TextIO | None = None,
) -> int:
    """Log in as an administrator, make one request, print its result; exit code."""
    _quiet_asyncio()
    try:
        return asyncio.run(_admin(servers, nick, frame, cafile, password, out or sys.stdout))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


async def _admin(
    servers: Sequence[Server],
    nick: str,
    frame: Request,
    cafile: Path | None,
    password: str | None,
    out: TextIO,
) -> int:
    client = _client(servers, nick, cafile=cafile, password=password, reconnect=False)
    try:
        welcome = await client.connect()
        if not welcome.admin:
            _say(f"{welcome.nick} is not an administrator of {format_servers(servers)}")
            return EXIT_REFUSED
        reply = await client.request(frame)
    except Exception as exc:
        _say(_failure(exc, client.address))
        return exit_code(exc)
    finally:
        await client.close()
    if isinstance(reply, Users):
        for user in reply.users:
            out.write(f"{user.nick}\t{'online' if user.online else 'offline'}\n")
    else:
        out.write("ok\n")
    out.flush()
    return EXIT_OK


# --- known hosts --------------------------------------------------------------------------------


async def server_fingerprint(host: str, port: int, seconds: float = 10.0) -> str:
    """The SHA-256 fingerprint of the certificate `host:port` presents (nothing verified: the
    caller compares it, as trust on first use does)."""
    ctx = tls.client_context(verify=False)
    async with asyncio.timeout(seconds):
        _, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            raise ConnectionClosed("the server presented no certificate")
        return tls.fingerprint(der)
    finally:
        writer.transport.abort()


def run_trust(
    host: str, port: int, *, fingerprint: str | None, known_hosts: Path | None = None
) -> int:
    """Pin the certificate `host:port` presents now (only if it is `fingerprint`, when given)."""
    _quiet_asyncio()
    store = KnownHosts(known_hosts)
    wanted = None
    if fingerprint is not None:
        wanted = normalize_fingerprint(fingerprint)
        if wanted is None:
            _say(f"--fingerprint: not a SHA-256 fingerprint: {fingerprint!r}")
            return EXIT_USAGE
    try:
        seen = asyncio.run(server_fingerprint(host, port))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        _say(_failure(exc, format_hostport(host, port)))
        return exit_code(exc)
    if wanted is not None and seen != wanted:
        _say(f"{host}:{port} presents fingerprint {seen}, not {wanted}: not trusted")
        return EXIT_TRUST
    try:
        old = store.lookup(host, port)
        store.add(host, port, seen)
    except OSError as exc:
        _say(f"cannot update {store.path}: {exc.strerror or exc}")
        return EXIT_USAGE
    if old is not None and old != seen:
        print(f"{host}:{port} was pinned to {old}; now trusted: {seen}")
    else:
        print(f"{host}:{port} trusted: {seen}")
    return EXIT_OK


def run_forget(host: str, port: int, *, known_hosts: Path | None = None) -> int:
    store = KnownHosts(known_hosts)
    try:
        removed = store.remove(host, port)
    except OSError as exc:
        _say(f"cannot update {store.path}: {exc.strerror or exc}")
        return EXIT_USAGE
    print(f"{host}:{port} forgotten" if removed else f"{host}:{port} was not in {store.path}")
    return EXIT_OK


# --- search -------------------------------------------------------------------------------------


def run_search(
    servers: Sequence[Server],
    nick: str,
    *,
    query: str,
    with_: str | None,
    limit: int,
    as_json: bool,
    cafile: Path | None,
    password: str | None,
) -> int:
    """Search the server's history (PROTOCOL.md "Search"); print matches newest first."""
    _quiet_asyncio()
    if not _with_is_valid(with_):
        return EXIT_USAGE
    try:
        return asyncio.run(_search(servers, nick, query, with_, limit, as_json, cafile, password))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK


async def _search(
    servers: Sequence[Server],
    nick: str,
    query: str,
    with_: str | None,
    limit: int,
    as_json: bool,
    cafile: Path | None,
    password: str | None,
) -> int:
    client = _client(servers, nick, cafile=cafile, password=password, reconnect=False)
    try:
        await client.connect()
        result = await client.search(query, with_=with_, limit=limit)
    except Exception as exc:
        _say(_failure(exc, client.address))
        return exit_code(exc)
    finally:
        await client.close()
    for message in result.messages:
        print_message(message, as_json=as_json, out=sys.stdout)
    if result.more and not as_json:
        _say(f"more than {len(result.messages)} matches; showing the newest")
    return EXIT_OK
