"""The hostile cases of issue 9, gathered so they stay covered: floods, parallel guesses,
account farming, bombs, bad numbers, probing, reused identities, broken starts, a full disk.
Every test drives a real server over real TLS (or a real daemon process)."""

from __future__ import annotations

import asyncio
import io
import signal
import socket
import sqlite3
import ssl
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from tests.integration.helpers_rules import Dialer, assert_error, drain, drain_all, say
from tests.integration.test_files import download, png_declaring, upload, uploaded
from tests.wire import Wire, timeout

from tlschat import tls
from tlschat.server.daemon import listen_port

PASSWORD = "correct horse battery staple"
pytestmark = pytest.mark.usefixtures("conformance")


# --- 1. silent connections from many addresses -----------------------------------------------


def _silent_flood(port: int, addresses: int, per_address: int) -> list[socket.socket]:
    socks = []
    for n in range(addresses):
        for _ in range(per_address):
            s = socket.socket()
            s.bind((f"127.0.0.{2 + n}", 0))
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            socks.append(s)
    return socks


@pytest.mark.slow
async def test_silent_flood_from_many_addresses_never_shuts_out_a_prompt_login(
    start_server: Any, client_ctx: ssl.SSLContext
) -> None:
    """PROTOCOL.md: 8 not-logged-in connections per IP, 256 in all, the longest waiting evicted.
    An attacker re-opening silent connections from 40 addresses slows a prompt client down but
    never shuts it out."""
    server = await start_server(
        max_unauth=256, max_unauth_per_ip=8, max_per_ip=16, max_conns=2000, handshake_timeout=10
    )
    socks: list[socket.socket] = []
    stop = asyncio.Event()

    async def attack() -> None:
        while not stop.is_set():  # re-open as they are closed, for as long as the test runs
            for s in socks:
                s.close()
            socks[:] = await asyncio.to_thread(_silent_flood, server.port, 40, 8)
            await asyncio.sleep(0.3)

    attacker = asyncio.create_task(attack())
    try:
        await asyncio.sleep(1.0)
        for attempt in range(5):
            began = time.monotonic()
            wire = await Wire.open(server.port, client_ctx, local="127.0.0.1")
            welcome = await wire.hello(f"prompt{attempt}")
            assert welcome["type"] == "welcome"
            assert time.monotonic() - began < timeout(5)
            await wire.close()
    finally:
        stop.set()
        await attacker
        for s in socks:
            s.close()


# --- 2. failed logins -------------------------------------------------------------------------


async def test_parallel_guesses_are_counted_when_they_start(
    start_server: Any, dial: Dialer
) -> None:
    """15 connections guessing at once from one IP get 3 checks, not 15."""
    server = await start_server(max_login_failures=3, max_nick_failures=20)
    await (await dial.open(server, "dave", PASSWORD)).close()
    guessers = [await dial.open(server) for _ in range(15)]
    replies = await asyncio.gather(*(g.hello("dave", f"guess{i}") for i, g in enumerate(guessers)))
    codes = sorted(r["code"] for r in replies)
    assert codes.count("auth_failed") == 3, codes
    assert codes.count("rate_limited") == 12, codes


async def test_the_owner_gets_in_while_others_guess_its_password(
    start_server: Any, dial: Dialer
) -> None:
    """The per-nick limit (here 4) never refuses the right password from an IP that has not
    failed for that nick: guessers on other addresses cannot lock the owner out."""
    server = await start_server(max_login_failures=2, max_nick_failures=4)
    await (await dial.open(server, "dave", PASSWORD)).close()
    for n in range(2):  # 4 wrong guesses from 2 other addresses fill the nick's window
        wire = await Wire.open(server.port, dial.ctx, local=f"127.0.0.{10 + n}")
        dial.opened.append(wire)
        for _ in range(2):
            assert_error(await wire.hello("dave", "wrong"), "auth_failed")
    guesser = await Wire.open(server.port, dial.ctx, local="127.0.0.20")
    dial.opened.append(guesser)
    assert_error(await guesser.hello("dave", "wrong"), "auth_failed")
    assert_error(await guesser.hello("dave", PASSWORD), "rate_limited")  # it has failed
    owner = await dial.open(server)
    assert (await owner.hello("dave", PASSWORD))["type"] == "welcome"


async def test_registrations_are_limited_per_address(start_server: Any, dial: Dialer) -> None:
    server = await start_server(max_registrations=3)
    for n in range(3):
        await dial.open(server, f"farm{n}", PASSWORD)
    wire = await dial.open(server)
    refused = await wire.hello("farm3", PASSWORD)
    assert_error(refused, "rate_limited")
    assert refused["retry_after_ms"] > 0
    other = await Wire.open(server.port, dial.ctx, local="127.0.0.2")
    dial.opened.append(other)
    assert (await other.hello("farm3", PASSWORD))["type"] == "welcome"


# --- 4. invalid frames are billed -------------------------------------------------------------


async def test_invalid_frames_are_billed_and_counted(start_server: Any, dial: Dialer) -> None:
    server = await start_server(rate_burst=5, rate_per_sec=0.01, max_bad_frames=100)
    wire = await dial.open(server)
    for _ in range(5):
        await wire.send_payload(b"\xff not json")
        assert_error(await wire.recv_type("error"), "bad_frame")
    await wire.send_payload(b"\xff not json")
    assert_error(await wire.recv_type("error"), "rate_limited")


# --- 5. image bombs ---------------------------------------------------------------------------


def _big_flat_png(side: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (side, side)).save(out, format="PNG", optimize=True)
    return out.getvalue()


def _gif_of_frames(count: int) -> bytes:
    """A GIF with `count` frames of one pixel each."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame * count + b"\x3b"


@pytest.mark.slow
async def test_image_bombs_are_refused_and_do_not_hold_up_others(
    start_server: Any, dial: Dialer
) -> None:
    server = await start_server(max_upload=20 * 1024 * 1024, upload_rate=64 * 1024 * 1024)
    bomber = await dial.open(server, "bomber", PASSWORD)
    bomber2 = await dial.open(server, "bomber", PASSWORD)  # a second session of the same user
    other = await dial.open(server, "other")
    big = _big_flat_png(7071)  # ~200 KB that would decode to 50 megapixels
    refused = await upload(bomber, big, "big.png")
    assert_error(refused, "bad_file")
    assert "too large" in refused["message"]
    assert_error(await upload(bomber, png_declaring(100_000, 100_000), "b.png"), "bad_file")
    # Two GIFs of 300 000 frames each from one user; another user's small image meanwhile.
    gif = _gif_of_frames(300_000)
    bombs = [
        asyncio.create_task(upload(wire, gif, f"g{i}.gif"))
        for i, wire in enumerate((bomber, bomber2))
    ]
    await asyncio.sleep(0.2)
    began = time.monotonic()
    small = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(small, format="PNG")
    meta = await uploaded(other, small.getvalue(), "red.png")
    waited = time.monotonic() - began
    assert meta["mime"] == "image/png"
    assert waited < timeout(10), waited
    for reply in await asyncio.gather(*bombs):
        assert reply["type"] in ("uploaded", "error"), reply


# --- 6. numbers and strings -------------------------------------------------------------------


@pytest.mark.parametrize("value", [2**53, 2**63, 2**64 + 1, -1, 10**30])
async def test_ids_beyond_2_53_are_bad_requests(connect: Any, value: int) -> None:
    alice = await connect("alice")
    assert_error(
        await alice.request({"type": "history", "with": "@alice", "before": value}), "bad_request"
    )
    fresh = await connect()
    assert_error(await fresh.hello("bob", last_seen=value), "bad_request")
    assert (await fresh.hello("bob", last_seen=2**53 - 1))["type"] == "welcome"


async def test_before_zero_finds_nothing(connect: Any) -> None:
    alice = await connect("alice")
    await say(alice, "@alice", "note")
    page = await alice.request({"type": "history", "with": "@alice", "before": 0})
    assert page["messages"] == []


async def test_lone_surrogate_is_a_bad_frame_and_the_connection_stays(connect: Any) -> None:
    alice = await connect("alice")
    await alice.send_payload(b'{"type":"ping","ref":"\\ud800"}')
    assert_error(await alice.recv_type("error"), "bad_frame")
    await alice.send_payload(b'{"type":"send","to":"@alice","text":"\\udfff x"}')
    assert_error(await alice.recv_type("error"), "bad_frame")
    assert (await alice.request({"type": "ping"}))["type"] == "pong"


# --- 7. private rooms cannot be probed --------------------------------------------------------


async def test_a_private_room_answers_outsiders_as_an_absent_one(connect: Any) -> None:
    alice = await connect("alice")
    mallory = await connect("mallory")
    await alice.request({"type": "create", "room": "secret"})
    await drain_all(alice, mallory)
    for request in (
        {"type": "history", "with": "#secret"},
        {"type": "send", "to": "#secret", "text": "hi"},
        {"type": "invite", "room": "secret", "nick": "alice"},
        {"type": "leave", "room": "secret"},
        {"type": "join", "room": "secret"},
    ):
        real = await mallory.request(request)
        absent = await mallory.request(
            {k: (v.replace("secret", "nothing") if isinstance(v, str) else v)
             for k, v in request.items()}
        )  # fmt: skip
        assert real["code"] == absent["code"] == "no_such_room", (request, real, absent)
    for kind in ("accept", "decline"):
        assert_error(await mallory.request({"type": kind, "room": "secret"}), "no_invite")
    assert_error(await mallory.request({"type": "create", "room": "secret"}), "room_exists")


# --- 8. guest identities are never reused -----------------------------------------------------


async def test_a_new_guest_reads_nothing_of_an_old_one_after_a_restart(
    start_server: Any, dial: Dialer, server_config: Any
) -> None:
    server = await start_server(guest_hold=0)  # the old guest's hold ends as it leaves
    old = await dial.open(server, "alice")
    bob = await dial.open(server, "bob", PASSWORD)
    await drain_all(old, bob)
    await say(bob, "@alice", "for the first alice only")
    meta = await uploaded(bob, b"secret file", "s.txt")
    shared = await bob.request({"type": "send", "to": "@alice", "text": "", "file": meta["id"]})
    assert shared["type"] == "message"
    await dial.close_all()
    await server.close()
    again = await start_server(guest_hold=0)
    new = await dial.open(again, "alice")
    page = await new.request({"type": "history", "with": "@bob"})
    assert page["messages"] == []
    assert_error(await download(new, meta["id"]), "no_such_file")


# --- 9. start-up failures exit at once ---------------------------------------------------------


def _serve(data_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tlschat", "serve", "--host", "127.0.0.1", "--port", "0",
         "--data-dir", str(data_dir), *extra],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _refused(proc: subprocess.Popen[str]) -> str:
    """The one line a refused start printed, after checking it exited 2 promptly."""
    try:
        _, err = proc.communicate(timeout=timeout(20))
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the daemon hung instead of exiting") from None
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.sqlite_only
@pytest.mark.parametrize("damage", ["garbage", "newer schema"])
def test_a_database_that_cannot_be_opened_exits_2(tmp_path: Path, damage: str) -> None:
    data = tmp_path / "d"
    data.mkdir()
    if damage == "garbage":
        (data / "tlschat.db").write_bytes(b"this is not a database" * 100)
    else:
        with sqlite3.connect(data / "tlschat.db") as db:
            db.execute("PRAGMA user_version = 999")
    line = _refused(_serve(data))
    assert "database" in line


def test_a_second_daemon_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    first = _serve(tmp_path / "d")
    try:
        assert first.stderr is not None
        for line in first.stderr:
            if listen_port(line) is not None:
                break
        line = _refused(_serve(tmp_path / "d"))
        assert "another tlschat" in line
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout(20))


# --- 10. a full disk --------------------------------------------------------------------------


@pytest.mark.sqlite_only  # PostgreSQL's: test_pg_store.py, PostgreSQL stopped and restarted
async def test_a_full_store_answers_unavailable_and_recovers(
    start_server: Any, dial: Dialer
) -> None:
    server = await start_server()
    alice = await dial.open(server, "alice", PASSWORD)
    bob = await dial.open(server, "bob", PASSWORD)
    await drain_all(alice, bob)
    pages = await server.store.read("PRAGMA page_count")
    # SQLite's own "database or disk is full": the store may not grow past its current size.
    await server.store._write(lambda c: c.execute(f"PRAGMA max_page_count = {pages[0][0]}"))
    refused = None
    for n in range(200):
        reply = await say(alice, "@bob", "x" * 3000 + str(n))
        if reply["type"] == "error":
            refused = reply
            break
    assert refused is not None
    assert_error(refused, "unavailable")
    delivered = [f for f in await drain(bob) if f.get("text", "").endswith(str(n))]
    assert delivered == []  # nothing is delivered that was not stored
    await server.store._write(lambda c: c.execute("PRAGMA max_page_count = 1073741823"))
    assert (await say(alice, "@bob", "stored again"))["type"] == "message"


# --- 11. secrets in files ---------------------------------------------------------------------


@pytest.mark.sqlite_only  # it checks the modes of tlschat.db and its WAL files too
def test_the_daemon_creates_private_files_and_folders(tmp_path: Path) -> None:
    data = tmp_path / "d"
    proc = _serve(data)
    try:
        assert proc.stderr is not None
        port = None
        for line in proc.stderr:
            port = listen_port(line)
            if port is not None:
                break
        assert port is not None
        asyncio.run(_log_in_and_send(port, data / "tls" / "ca.pem"))
        modes = {
            path.relative_to(data).as_posix(): stat.S_IMODE(path.stat().st_mode)
            for path in [data, *data.rglob("*")]
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout(20))
    assert modes["."] == 0o700
    for name in ("tlschat.db", "tlschat.db-wal", "tlschat.db-shm", "tls/server.key"):
        assert modes[name] & 0o077 == 0, (name, oct(modes[name]))
    for name, mode in modes.items():
        assert mode & 0o077 == 0 or name.endswith(".pem"), (name, oct(mode))


async def _log_in_and_send(port: int, cafile: Path) -> None:
    wire = await Wire.open(port, tls.client_context(cafile=cafile))
    assert (await wire.hello("alice", PASSWORD))["type"] == "welcome"
    assert (await say(wire, "@alice", "note"))["type"] == "message"
    await wire.close()


# --- 12. signals ------------------------------------------------------------------------------


def test_sighup_does_not_stop_the_daemon(tmp_path: Path) -> None:
    proc = _serve(tmp_path / "d")
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if listen_port(line) is not None:
                break
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout(20)) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
