"""`tlschat send` and `tlschat tail` as subprocesses against a real server over real TLS."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import ssl
import stat
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from tests.events import EventLog
from tests.wire import timeout

from tlschat.client import Backoff, ChatClient, ConnectionState, StateChanged
from tlschat.client.guest_tokens import GuestTokens
from tlschat.protocol import Message, Presence

HOST = "127.0.0.1"
PASSWORD = "hunter2 hunter2"


class Collector(EventLog):
    """The event log plus the presence wait these tests repeat."""

    async def online(self, nick: str) -> None:
        await self.wait_for(lambda e: isinstance(e, Presence) and e.nick == nick and e.online)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The subprocesses' environment: a private config dir (known_hosts), never the user's."""
    values = dict(os.environ)
    values["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    values["HOME"] = str(tmp_path / "home")
    values.pop("SSLKEYLOGFILE", None)
    return values


@pytest.fixture
async def chat(server: Any, client_ctx: ssl.SSLContext) -> AsyncIterator[Callable[..., Any]]:
    """`await chat("bob")`: a logged-in ChatClient and its event collector."""
    made: list[ChatClient] = []

    async def factory(nick: str, **options: Any) -> tuple[ChatClient, Collector]:
        client = ChatClient(
            HOST,
            server.port,
            nick,
            ssl_context=client_ctx,
            backoff=Backoff(base=0.05, cap=0.2),
            **options,
        )
        made.append(client)
        async with asyncio.timeout(timeout(15)):
            await client.connect()
        return client, Collector(client)

    yield factory
    for client in made:
        await client.close()


async def tlschat(
    *args: str, env: dict[str, str], stdin: bytes | None = None, seconds: float = 30
) -> tuple[int, str, str]:
    """Run `tlschat ARGS...` to completion; (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tlschat",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        async with asyncio.timeout(timeout(seconds)):
            out, err = await proc.communicate(stdin or b"")
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def assert_one_clean_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("tlschat: "), stderr
    return lines[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


# --- send ---------------------------------------------------------------------------------------


async def test_send_delivers_quietly(
    server: Any, cert_files: Any, chat: Any, env: dict[str, str]
) -> None:
    _bob, bob_events = await chat("bob")
    code, out, err = await tlschat(
        "send", f"{HOST}:{server.port}", "alice", "--to", "@bob", "--cafile", str(cert_files.ca),
        "hello", "bob", env=env,
    )  # fmt: skip
    assert (code, out, err) == (0, "", "")
    message = await bob_events.wait_for(lambda e: isinstance(e, Message))
    assert isinstance(message, Message)
    assert (message.from_, message.to, message.text) == ("alice", "@bob", "hello bob")


async def test_send_reads_standard_input(
    server: Any, cert_files: Any, chat: Any, env: dict[str, str]
) -> None:
    _bob, bob_events = await chat("bob")
    code, _, err = await tlschat(
        "send", f"{HOST}:{server.port}", "alice", "--to", "@bob", "--cafile", str(cert_files.ca),
        env=env, stdin=b"line one\nline two\n",
    )  # fmt: skip
    assert code == 0, err
    message = await bob_events.wait_for(lambda e: isinstance(e, Message))
    assert isinstance(message, Message)
    assert message.text == "line one\nline two"


async def test_send_error_is_one_line_with_the_code(
    server: Any, cert_files: Any, env: dict[str, str]
) -> None:
    code, out, err = await tlschat(
        "send", f"{HOST}:{server.port}", "alice", "--to", "@nobody", "--cafile",
        str(cert_files.ca), "hi", env=env,
    )  # fmt: skip
    assert code == 6
    assert out == ""
    assert assert_one_clean_line(err).startswith("tlschat: no_such_user: ")


async def test_send_with_password_env(
    server: Any, cert_files: Any, chat: Any, env: dict[str, str]
) -> None:
    registered, _ = await chat("carol", password=PASSWORD)
    await registered.close()
    _bob, bob_events = await chat("bob")
    args = [
        "send",
        f"{HOST}:{server.port}",
        "Carol",
        "--to",
        "@bob",
        "--cafile",
        str(cert_files.ca),
    ]
    code, _, err = await tlschat(
        *args, "--password-env", "CAROL_PW", "signed", env={**env, "CAROL_PW": PASSWORD}
    )
    assert code == 0, err
    message = await bob_events.wait_for(lambda e: isinstance(e, Message))
    assert isinstance(message, Message)
    assert message.from_ == "carol"

    code, _, err = await tlschat(
        *args, "--password-env", "CAROL_PW", "nope", env={**env, "CAROL_PW": "wrong"}
    )
    assert code == 3
    assert assert_one_clean_line(err).startswith("tlschat: auth_failed: ")

    code, _, err = await tlschat(*args, "no password", env=env)
    assert code == 3
    assert assert_one_clean_line(err).startswith("tlschat: auth_required: ")


async def test_send_to_unreachable_server(cert_files: Any, env: dict[str, str]) -> None:
    code, out, err = await tlschat(
        "send", f"{HOST}:{free_port()}", "alice", "--to", "@bob", "--cafile", str(cert_files.ca),
        "hi", env=env,
    )  # fmt: skip
    assert code != 0
    assert out == ""
    line = assert_one_clean_line(err)
    assert "cannot connect" in line


async def test_send_tries_the_next_address(
    server: Any, cert_files: Any, chat: Any, env: dict[str, str]
) -> None:
    _bob, bob_events = await chat("bob")
    code, out, err = await tlschat(
        "send", f"{HOST}:1,{HOST}:{server.port}", "alice", "--to", "@bob",
        "--cafile", str(cert_files.ca), "via the second address", env=env,
    )  # fmt: skip
    assert (code, out, err) == (0, "", "")
    message = await bob_events.wait_for(lambda e: isinstance(e, Message))
    assert isinstance(message, Message)
    assert message.text == "via the second address"


async def test_send_when_no_address_answers_names_each(
    cert_files: Any, env: dict[str, str]
) -> None:
    first, second = free_port(), free_port()
    code, out, err = await tlschat(
        "send", f"{HOST}:{first},{HOST}:{second}", "alice", "--to", "@bob",
        "--cafile", str(cert_files.ca), "hi", env=env,
    )  # fmt: skip
    assert (code, out) == (5, "")
    line = assert_one_clean_line(err)
    assert "cannot connect: no address answered" in line
    assert f"{HOST}:{first}: " in line
    assert f"{HOST}:{second}: " in line


@pytest.mark.parametrize("address", ["host:abc,host:1", "host:1,,host:2", "host:1,"])
async def test_send_bad_server_list(address: str, env: dict[str, str]) -> None:
    code, out, err = await tlschat("send", address, "alice", "--to", "@bob", "hi", env=env)
    assert (code, out) == (2, "")
    assert_one_clean_line(err)


@pytest.mark.parametrize("address", ["host:abc", "host:99999", "host:port:extra", "[::1", ":7700"])
async def test_send_bad_host_port(address: str, env: dict[str, str]) -> None:
    code, out, err = await tlschat("send", address, "alice", "--to", "@bob", "hi", env=env)
    assert code != 0
    assert out == ""
    assert_one_clean_line(err)


async def test_send_bad_address(server: Any, cert_files: Any, env: dict[str, str]) -> None:
    code, _, err = await tlschat(
        "send", f"{HOST}:{server.port}", "alice", "--to", "bob", "--cafile", str(cert_files.ca),
        "hi", env=env,
    )  # fmt: skip
    assert code == 2
    assert "--to" in assert_one_clean_line(err)


async def test_send_untrusted_certificate(server: Any, env: dict[str, str]) -> None:
    # No --cafile: the test CA is in no system store, and headless commands never ask.
    code, out, err = await tlschat(
        "send", f"{HOST}:{server.port}", "alice", "--to", "@bob", "hi", env=env
    )
    assert code == 4
    assert out == ""
    line = assert_one_clean_line(err)
    assert line == (
        f"tlschat: server certificate is not trusted (fingerprint {server.fingerprint}); "
        "use --cafile or connect once with `tlschat tui` to trust it"
    )
    assert not (Path(env["XDG_CONFIG_HOME"]) / "tlschat" / "known_hosts").exists()


async def test_send_trusts_a_pinned_certificate(
    server: Any, env: dict[str, str], tmp_path: Path
) -> None:
    known = Path(env["XDG_CONFIG_HOME"]) / "tlschat" / "known_hosts"
    known.parent.mkdir(parents=True)
    known.write_text(f"{HOST}:{server.port} SHA256:{server.fingerprint}\n")
    code, _, err = await tlschat(
        "send", f"{HOST}:{server.port}", "alice", "--to", "@alice", "note", env=env
    )
    assert code == 0, err


# --- tail ---------------------------------------------------------------------------------------


class Tail:
    """A running `tlschat tail`."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, *args: str, env: dict[str, str]) -> Tail:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tlschat",
            "tail",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        return cls(proc)

    async def line(self, seconds: float = 10) -> str:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout(seconds)):
            raw = await self.proc.stdout.readline()
        assert raw, "tail ended"
        return raw.decode().rstrip("\n")

    async def interrupt(self) -> tuple[int, str]:
        """Ctrl-C; the exit code and everything it wrote on stderr."""
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.stderr is not None
        async with asyncio.timeout(timeout(10)):
            err = await self.proc.stderr.read()
            code = await self.proc.wait()
        return code, err.decode()

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


@pytest.fixture
async def tails() -> AsyncIterator[list[Tail]]:
    started: list[Tail] = []
    yield started
    for tail in started:
        tail.kill()
        await tail.proc.wait()


async def test_tail_json_prints_messages(
    server: Any, cert_files: Any, chat: Any, env: dict[str, str], tails: list[Tail]
) -> None:
    bob, bob_events = await chat("bob")
    tail = await Tail.start(
        f"{HOST}:{server.port}", "alice", "--json", "--cafile", str(cert_files.ca), env=env
    )
    tails.append(tail)
    await bob_events.online("alice")
    sent = await bob.send_message("@alice", 'hi "alice" <b>not bold</b>')
    frame = json.loads(await tail.line())
    assert frame == {
        "type": "message",
        "id": sent.id,
        "ts": sent.ts,
        "from": "bob",
        "to": "@alice",
        "text": 'hi "alice" <b>not bold</b>',
    }
    code, err = await tail.interrupt()
    assert code == 0
    assert "Traceback" not in err
    assert err == ""


async def test_tail_with_filters_one_conversation(
    server: Any, cert_files: Any, chat: Any, env: dict[str, str], tails: list[Tail]
) -> None:
    bob, bob_events = await chat("bob")
    carol, _ = await chat("carol")
    tail = await Tail.start(
        f"{HOST}:{server.port}", "alice", "--with", "@Carol", "--cafile", str(cert_files.ca),
        env=env,
    )  # fmt: skip
    tails.append(tail)
    await bob_events.online("alice")
    await bob.send_message("@alice", "from bob: filtered out")
    await carol.send_message("@bob", "carol to bob: filtered out")
    await carol.send_message("@alice", "carol to alice")
    line = await tail.line()
    assert re.fullmatch(r"\[\d\d:\d\d:\d\d\] carol -> @alice: carol to alice", line), line
    code, _ = await tail.interrupt()
    assert code == 0


async def restart(server: Any, start_server: Any, events: Collector) -> None:
    """Restart the server on its port; return once the client behind `events` is back."""
    port = server.port
    await server.close()
    await start_server(port=port)
    lost = await events.index(
        lambda e: isinstance(e, StateChanged) and e.state is ConnectionState.RECONNECTING
    )
    await events.index(
        lambda e: isinstance(e, StateChanged) and e.state is ConnectionState.CONNECTED,
        start=lost,
    )


async def test_tail_reconnects_after_a_restart(
    server: Any,
    start_server: Any,
    cert_files: Any,
    chat: Any,
    env: dict[str, str],
    tails: list[Tail],
) -> None:
    registered, _ = await chat("alice", password=PASSWORD)
    await registered.close()
    bob, bob_events = await chat("bob", password=PASSWORD)
    tail = await Tail.start(
        f"{HOST}:{server.port}", "alice", "--json", "--password-env", "ALICE_PW", "--cafile",
        str(cert_files.ca), env={**env, "ALICE_PW": PASSWORD},
    )  # fmt: skip
    tails.append(tail)
    await bob_events.online("alice")
    first = await bob.send_message("@alice", "before")
    assert json.loads(await tail.line())["id"] == first.id

    await restart(server, start_server, bob_events)
    second = await bob.send_message("@alice", "after")  # stored if alice is not back yet
    assert json.loads(await tail.line(seconds=20))["id"] == second.id
    code, err = await tail.interrupt()
    assert code == 0
    assert "Traceback" not in err
    assert "reconnect" in err  # it told the user on stderr, stdout stays clean


async def test_tail_untrusted_certificate(server: Any, env: dict[str, str]) -> None:
    tail = await Tail.start(f"{HOST}:{server.port}", "alice", env=env)
    async with asyncio.timeout(timeout(20)):
        _, err = await tail.proc.communicate()
    assert tail.proc.returncode == 4
    assert "not trusted" in assert_one_clean_line(err.decode())


async def test_tail_unreachable_server(cert_files: Any, env: dict[str, str]) -> None:
    tail = await Tail.start(
        f"{HOST}:{free_port()}", "alice", "--cafile", str(cert_files.ca), env=env
    )
    async with asyncio.timeout(timeout(20)):
        _, err = await tail.proc.communicate()
    assert tail.proc.returncode == 5
    assert "cannot connect" in assert_one_clean_line(err.decode())


# --- files: send --file, tail, get ---------------------------------------------------------------


async def tlschat_raw(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> tuple[int, bytes, str]:
    """Run `tlschat ARGS...` in `cwd`; (exit code, stdout as bytes, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tlschat", *args, cwd=cwd, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(timeout(30)):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out, err.decode()


def png_bytes(width: int = 64, height: int = 48, color: str = "red") -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_send_file_tail_json_get_round_trip(
    server: Any,
    cert_files: Any,
    chat: Any,
    env: dict[str, str],
    tails: list[Tail],
    tmp_path: Path,
) -> None:
    original = png_bytes()
    picture = tmp_path / "red.png"
    picture.write_bytes(original)
    hostport, ca = f"{HOST}:{server.port}", str(cert_files.ca)
    # Registered users: several sessions at once (tail and get), conversations that outlast them.
    env = {**env, "ALICE_PW": PASSWORD, "ERIN_PW": PASSWORD}
    _bob, bob_events = await chat("bob")
    json_tail = await Tail.start(
        hostport, "alice", "--json", "--password-env", "ALICE_PW", "--cafile", ca, env=env
    )
    tails.append(json_tail)
    await bob_events.online("alice")
    plain_tail = await Tail.start(hostport, "carol", "--cafile", ca, env=env)
    tails.append(plain_tail)
    await bob_events.online("carol")

    code, out, err = await tlschat(
        "send", hostport, "erin", "--password-env", "ERIN_PW", "--to", "@alice", "--file", str(picture), "--cafile", ca,
        "a", "red", "one", env=env,
    )  # fmt: skip
    assert (code, out, err) == (0, "", "")
    frame = json.loads(await json_tail.line())
    meta = frame["file"]
    assert frame["text"] == "a red one"
    assert set(meta) == {"id", "name", "size", "mime", "sha256", "width", "height"}
    assert (meta["name"], meta["size"], meta["mime"]) == ("red.png", len(original), "image/png")
    assert (meta["width"], meta["height"]) == (64, 48)

    # A file alone (no text, nothing read from stdin), and the plain line of `tail`.
    code, _, err = await tlschat(
        "send",
        hostport,
        "erin",
        "--password-env",
        "ERIN_PW",
        "--to",
        "@carol",
        "--file",
        str(picture),
        "--cafile",
        ca,
        env=env,
    )
    assert (code, err) == (0, "")
    line = await plain_tail.line()
    assert re.fullmatch(
        r"\[\d\d:\d\d:\d\d\] erin -> @carol: \[file: red\.png \(image/png, \d+ B, 64x48\) id \S+\]",
        line,
    ), line

    # alice downloads it: to a path, to stdout, and by default under its own name.
    target = tmp_path / "got.png"
    code, out, err = await tlschat(
        "get",
        hostport,
        "alice",
        meta["id"],
        "--password-env",
        "ALICE_PW",
        "-o",
        str(target),
        "--cafile",
        ca,
        env=env,
    )
    assert (code, out, err) == (0, "", "")
    assert target.read_bytes() == original
    assert not list(tmp_path.glob("*.part"))  # noqa: ASYNC240 - a test's own check

    alice_get = ("get", hostport, "alice", meta["id"], "--password-env", "ALICE_PW", "--cafile", ca)
    code, raw, err = await tlschat_raw(*alice_get, "-o", "-", env=env)
    assert (code, err) == (0, "")
    assert raw == original

    workdir = tmp_path / "here"
    workdir.mkdir()
    code, _, err = await tlschat_raw(*alice_get, env=env, cwd=workdir)
    assert (code, err) == (0, "")
    assert (workdir / "red.png").read_bytes() == original
    # ... and never over an existing file without -o.
    code, _, err = await tlschat_raw(*alice_get, env=env, cwd=workdir)
    assert code != 0
    assert "exists" in assert_one_clean_line(err)

    # Someone who never received it may not download it.
    code, _, err = await tlschat(
        "get", hostport, "dave", meta["id"], "--sha256", meta["sha256"], "-o", "-",
        "--cafile", ca, env=env,
    )  # fmt: skip
    assert code != 0
    assert "may not download" in assert_one_clean_line(err)


async def test_get_verifies_a_file_older_than_the_newest_history_page(
    server: Any, cert_files: Any, chat: Any, env: dict[str, str], tmp_path: Path
) -> None:
    # The message carrying the file is not in the newest page (200) of its conversation: `get`
    # verifies it by the metadata of the download's first frame (docs/protocol.md "Files").
    original = png_bytes(color="blue")
    hostport, ca = f"{HOST}:{server.port}", str(cert_files.ca)
    env = {**env, "ALICE_PW": PASSWORD}
    alice, _ = await chat("alice", password=PASSWORD)  # registered: `get` logs in as her too
    bob, _ = await chat("bob")
    meta = await bob.upload("blue.png", original)
    await bob.send_message("@alice", "old news", file=meta.id)
    for n in range(201):
        await bob.send_message("@alice", f"newer {n}")
    page = await alice.history("@bob", limit=200)
    assert all(message.file is None for message in page.messages)
    base = ("get", hostport, "alice", meta.id, "--password-env", "ALICE_PW", "--cafile", ca)

    target = tmp_path / "got.png"
    code, out, err = await tlschat(*base, "-o", str(target), env=env)
    assert (code, out, err) == (0, "", "")
    assert target.read_bytes() == original
    # Without -o: under its own name, which only the first frame told.
    workdir = tmp_path / "here"
    workdir.mkdir()
    code, _, err = await tlschat_raw(*base, env=env, cwd=workdir)
    assert (code, err) == (0, "")
    assert (workdir / "blue.png").read_bytes() == original

    # --sha256 is checked as well: one the bytes do not have writes nothing.
    wrong = tmp_path / "wrong.png"
    code, _, err = await tlschat(*base, "--sha256", "0" * 64, "-o", str(wrong), env=env)
    assert code != 0
    assert "SHA-256" in assert_one_clean_line(err)
    assert not wrong.exists()
    code, raw, err = await tlschat_raw(*base, "--sha256", "0" * 64, "-o", "-", env=env)
    assert (code != 0, raw) == (True, b"")
    assert "SHA-256" in assert_one_clean_line(err)
    assert not list(tmp_path.glob("*.part"))  # noqa: ASYNC240 - a test's own check


async def test_send_file_errors_are_one_line(
    start_server: Any, cert_files: Any, env: dict[str, str], tmp_path: Path
) -> None:
    server = await start_server(max_upload=1000)
    hostport, ca = f"{HOST}:{server.port}", str(cert_files.ca)
    base = ("send", hostport, "bob", "--to", "@bob", "--cafile", ca)

    code, _, err = await tlschat(*base, "--file", str(tmp_path / "missing.png"), env=env)
    assert code != 0
    assert "no such file" in assert_one_clean_line(err)

    code, _, err = await tlschat(*base, "--file", str(tmp_path), env=env)
    assert code != 0
    assert "is a folder" in assert_one_clean_line(err)

    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 5000)
    code, _, err = await tlschat(*base, "--file", str(big), env=env)
    assert code != 0
    line = assert_one_clean_line(err)
    assert "too large" in line
    assert "1000 B" in line

    fake = tmp_path / "fake.png"
    fake.write_bytes(png_bytes()[:40] + b"garbage" * 10)
    code, _, err = await tlschat(*base, "--file", str(fake), env=env)
    assert code != 0
    assert "not a valid image" in assert_one_clean_line(err)


async def test_a_guest_tail_bot_keeps_its_groups_across_restarts(
    server: Any,
    start_server: Any,
    cert_files: Any,
    chat: Any,
    env: dict[str, str],
    tails: list[Tail],
    tmp_path: Path,
) -> None:
    """The guest `tail` keeps its resume token (on disk, 0600, per server and nick): restarted,
    and across a server restart, it is the same guest, still in its groups."""
    bob, bob_events = await chat("bob", password=PASSWORD)
    await bob.create_room("ops", public=True)
    target = f"{HOST}:{server.port}"
    args = (target, "bot", "--json", "--cafile", str(cert_files.ca))
    tail = await Tail.start(*args, env=env)
    tails.append(tail)
    await bob_events.online("bot")
    await bob.invite("ops", "bot")
    # tail cannot accept: the bot accepts once from a client of its own, with its token.
    tokens = GuestTokens(tmp_path / "home" / ".local" / "state" / "tlschat" / "guest_tokens.json")
    code, err = await tail.interrupt()
    assert code == 0, err
    token = tokens.load(HOST, server.port, "bot")
    assert token is not None
    assert stat.S_IMODE(tokens.path.stat().st_mode) == 0o600
    helper, _ = await chat("bot", resume=token)
    await helper.accept("ops")
    tokens.save(HOST, server.port, "bot", helper.resume or "")
    await helper.close()

    tail = await Tail.start(*args, env=env)  # restarted: the same guest, in #ops
    tails.append(tail)
    first = await bob.send_message("#ops", "to the bot")
    assert json.loads(await tail.line(seconds=20))["id"] == first.id

    await restart(server, start_server, bob_events)
    second = await bob.send_message("#ops", "after the restart")
    assert json.loads(await tail.line(seconds=20))["id"] == second.id
    code, err = await tail.interrupt()
    assert code == 0
