"""`tlschat send`, `tlschat tail` and `tlschat search`: the client library without a UI; never
asks about trust."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TextIO

from tlschat import __version__
from tlschat.client.connection import (
    ChatClient,
    ConnectionState,
    StateChanged,
    Trust,
    TrustError,
    describe,
)
from tlschat.protocol import (
    ConnectionClosed,
    Message,
    RequestFailed,
    TlsChatError,
    encode_payload,
    has_forbidden_controls,
    name_key,
    parse_address,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def _say(text: str) -> None:
    """One line on stderr, as every tlschat command reports a problem."""
    print(f"tlschat: {text}", file=sys.stderr, flush=True)


def _failure(exc: BaseException, host: str, port: int) -> str:
    """The one line that explains why a connection or a request failed."""
    if isinstance(exc, TrustError):
        if exc.reason == "changed":
            return str(exc)
        return (
            f"server certificate is not trusted (fingerprint {exc.fingerprint}); use --cafile "
            "or connect once with `tlschat tui` to trust it"
        )
    if isinstance(exc, RequestFailed):
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, ConnectionClosed):
        return f"connection to {host}:{port} closed: {exc}"
    if isinstance(exc, OSError):  # refused, unreachable, unknown host, TLS errors, timeouts
        return f"cannot connect to {host}:{port}: {describe(exc)}"
    if isinstance(exc, TlsChatError):
        return str(exc)
    return f"unexpected error: {exc.__class__.__name__}: {exc}"


def _quiet_asyncio() -> None:
    # asyncio logs transport teardown noise ("Fatal error on SSL transport") to stderr when a
    # peer vanishes; the commands report failures themselves, in one line.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    logging.getLogger("tlschat").setLevel(logging.ERROR)


def _client(
    host: str, port: int, nick: str, *, cafile: Path | None, password: str | None, reconnect: bool
) -> ChatClient:
    return ChatClient(
        host,
        port,
        nick,
        password=password,
        trust=Trust(cafile=cafile, ask=None),
        reconnect=reconnect,
        client_name=f"tlschat-cli/{__version__}",
    )


# --- send ---------------------------------------------------------------------------------------


def run_send(
    host: str,
    port: int,
    nick: str,
    *,
    to: str,
    text: str,
    cafile: Path | None,
    password: str | None,
) -> int:
    """Connect, send one message, wait for its echo (the server's acknowledgement); exit code."""
    _quiet_asyncio()
    try:
        parse_address(to)
    except ValueError as exc:
        _say(f"--to: {exc}")
        return EXIT_FAILED
    if has_forbidden_controls(text):
        _say("the text holds control characters, which tlschat refuses")
        return EXIT_FAILED
    try:
        return asyncio.run(_send(host, port, nick, to, text, cafile, password))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


async def _send(
    host: str, port: int, nick: str, to: str, text: str, cafile: Path | None, password: str | None
) -> int:
    client = _client(host, port, nick, cafile=cafile, password=password, reconnect=False)
    try:
        await client.connect()
        await client.send_message(to, text)
    except Exception as exc:
        _say(_failure(exc, host, port))
        return EXIT_FAILED
    finally:
        await client.close()
    return EXIT_OK


# --- tail ---------------------------------------------------------------------------------------


def run_tail(
    host: str,
    port: int,
    nick: str,
    *,
    as_json: bool,
    with_: str | None,
    cafile: Path | None,
    password: str | None,
) -> int:
    """Print messages as they arrive until interrupted (Ctrl-C: exit 0); reconnect on drops."""
    _quiet_asyncio()
    if with_ is not None:
        try:
            parse_address(with_)
        except ValueError as exc:
            _say(f"--with: {exc}")
            return EXIT_FAILED
    try:
        return asyncio.run(_tail(host, port, nick, as_json, with_, cafile, password))
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
    host: str,
    port: int,
    nick: str,
    as_json: bool,
    with_: str | None,
    cafile: Path | None,
    password: str | None,
) -> int:
    client = _client(host, port, nick, cafile=cafile, password=password, reconnect=True)
    try:
        try:
            await client.connect()
        except Exception as exc:
            _say(_failure(exc, host, port))
            return EXIT_FAILED
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
                    _say(f"reconnected to {host}:{port}")
                    reconnecting = False
                elif event.state is ConnectionState.CLOSED:
                    _say(event.detail or "connection closed")
                    return EXIT_FAILED
        return EXIT_FAILED  # events() only ends with CLOSED, reported above
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
        line += f" [file {message.file.name}, {message.file.size} bytes]"
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


# --- search -------------------------------------------------------------------------------------


def run_search(
    host: str,
    port: int,
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
    if with_ is not None:
        try:
            parse_address(with_)
        except ValueError as exc:
            _say(f"--with: {exc}")
            return EXIT_FAILED
    try:
        return asyncio.run(
            _search(host, port, nick, query, with_, limit, as_json, cafile, password)
        )
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK


async def _search(
    host: str,
    port: int,
    nick: str,
    query: str,
    with_: str | None,
    limit: int,
    as_json: bool,
    cafile: Path | None,
    password: str | None,
) -> int:
    client = _client(host, port, nick, cafile=cafile, password=password, reconnect=False)
    try:
        await client.connect()
        result = await client.search(query, with_=with_, limit=limit)
    except Exception as exc:
        _say(_failure(exc, host, port))
        return EXIT_FAILED
    finally:
        await client.close()
    for message in result.messages:
        print_message(message, as_json=as_json, out=sys.stdout)
    if result.more and not as_json:
        _say(f"more than {len(result.messages)} matches; showing the newest")
    return EXIT_OK
