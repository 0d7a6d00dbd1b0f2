"""The daemon as a whole: transport rules before and around TLS, the `serve` command, durability."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
from tests.conftest import CertFiles
from tests.wire import Closed, Wire, timeout

from tlschat import tls
from tlschat.protocol import ALPN
from tlschat.server.daemon import listen_port

TLSCHAT = [sys.executable, "-m", "tlschat"]


async def _open_and_hello(port: int, ctx: ssl.SSLContext, nick: str) -> dict[str, Any]:
    wire = await Wire.open(port, ctx)
    return await wire.hello(nick)


# --- transport ------------------------------------------------------------------------------------


async def test_tls12_only_client_is_refused(server: Any, cert_files: CertFiles) -> None:
    ctx = ssl.create_default_context(cafile=str(cert_files.ca))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols([ALPN])
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", server.port, ssl=ctx, server_hostname="localhost"),
            timeout(5),
        )


async def test_tls12_allowed_with_tls_min_12(start_server: Any, cert_files: CertFiles) -> None:
    server = await start_server(tls_min="1.2")
    ctx = ssl.create_default_context(cafile=str(cert_files.ca))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols([ALPN])
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", server.port, ssl=ctx, server_hostname="localhost"),
        timeout(5),
    )
    ssl_object = writer.get_extra_info("ssl_object")
    assert ssl_object.version() == "TLSv1.2"
    assert "ECDHE" in ssl_object.cipher()[0]
    assert "GCM" in ssl_object.cipher()[0] or "CHACHA" in ssl_object.cipher()[0]
    wire = Wire(reader, writer)
    welcome = await wire.hello("old-client")
    assert welcome["type"] == "welcome"
    await wire.close()


async def test_client_negotiates_tls13_and_alpn(connect: Any) -> None:
    wire = await connect("alice")
    ssl_object = wire.writer.get_extra_info("ssl_object")
    assert ssl_object.version() == "TLSv1.3"
    assert ssl_object.selected_alpn_protocol() == ALPN


async def test_plaintext_bytes_get_no_reply(server: Any) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b'\x00\x00\x00\x10{"type":"hello"}')
    await writer.drain()
    data = await asyncio.wait_for(reader.read(1024), timeout(5))
    assert data == b""  # closed, and not one byte in reply
    writer.close()


async def test_silent_connection_is_cut_at_the_handshake_deadline(start_server: Any) -> None:
    server = await start_server(handshake_timeout=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    data = await asyncio.wait_for(reader.read(1024), timeout(5))
    assert data == b""
    writer.close()


async def test_connection_without_alpn_is_closed(server: Any, cert_files: CertFiles) -> None:
    ctx = ssl.create_default_context(cafile=str(cert_files.ca))  # offers no ALPN at all
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", server.port, ssl=ctx, server_hostname="localhost"),
        timeout(5),
    )
    wire = Wire(reader, writer)
    await wire.send({"type": "hello", "v": 1, "nick": "curl"})
    with pytest.raises(Closed):
        await wire.recv(5)


async def test_connection_with_another_alpn_is_closed(server: Any, cert_files: CertFiles) -> None:
    ctx = ssl.create_default_context(cafile=str(cert_files.ca))
    ctx.set_alpn_protocols(["http/1.1"])
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", server.port, ssl=ctx, server_hostname="localhost"),
        timeout(5),
    )
    wire = Wire(reader, writer)
    await wire.send({"type": "hello", "v": 1, "nick": "web"})
    with pytest.raises(Closed):
        await wire.recv(5)


async def test_untrusted_server_certificate_fails_verification(server: Any) -> None:
    other_ca = trustme.CA()
    ctx = tls.client_context()
    other_ca.configure_trust(ctx)
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", server.port, ssl=ctx, server_hostname="localhost"),
            timeout(5),
        )


async def test_wrong_host_name_fails_verification(server: Any, client_ctx: ssl.SSLContext) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1", server.port, ssl=client_ctx, server_hostname="example.org"
            ),
            timeout(5),
        )


async def test_max_per_ip_applies_to_loopback(
    start_server: Any, client_ctx: ssl.SSLContext
) -> None:
    server = await start_server(max_per_ip=2)
    first = await Wire.open(server.port, client_ctx)
    second = await Wire.open(server.port, client_ctx)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError, Closed)):
        await _open_and_hello(server.port, client_ctx, "third")
    for wire in (first, second):
        assert (await wire.request({"type": "ping"}))["type"] == "pong"
        await wire.close()


async def test_close_sends_bye_to_every_client(
    start_server: Any, client_ctx: ssl.SSLContext
) -> None:
    server = await start_server()
    a = await Wire.open(server.port, client_ctx)
    await a.hello("alice")
    b = await Wire.open(server.port, client_ctx)
    await b.hello("bob")
    await server.close()
    for wire in (a, b):
        bye = await wire.recv_type("bye")
        assert bye["reason"]
        assert await wire.closed_by_server()


# --- mutual TLS -----------------------------------------------------------------------------------


async def test_client_ca_allows_only_the_certificate_common_name(
    start_server: Any, cert_files: CertFiles, tmp_path: Path
) -> None:
    client_ca = trustme.CA()
    ca_file = tmp_path / "client-ca.pem"
    client_ca.cert_pem.write_to_path(str(ca_file))
    server = await start_server(client_ca=ca_file)
    issued = client_ca.issue_cert("alice@example.org", common_name="alice")
    ctx = tls.client_context(cafile=cert_files.ca)
    issued.configure_cert(ctx)
    wire = await Wire.open(server.port, ctx)
    refused = await wire.hello("mallory")
    assert refused["type"] == "error"
    assert refused["code"] == "nick_invalid"
    assert (await wire.hello("Alice"))["type"] == "welcome"
    await wire.close()
    # Without a client certificate, no handshake.
    with pytest.raises((ssl.SSLError, ConnectionError, Closed)):
        await _open_and_hello(server.port, tls.client_context(cafile=cert_files.ca), "alice")


# --- the serve command ----------------------------------------------------------------------------


def _spawn(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `tlschat ARGS` (starting a process does not block the loop for long)."""
    return subprocess.Popen(
        [*TLSCHAT, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _serve(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return _spawn(["serve", "--host", "127.0.0.1", *args], env)


def _wait_listening(proc: subprocess.Popen[str]) -> tuple[int, list[str]]:
    """Read stderr until the daemon says where it listens; return the port and the lines seen."""
    assert proc.stderr is not None
    lines = []
    deadline = time.monotonic() + timeout(30)
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        port = listen_port(line)
        if port is not None:
            lines.append(proc.stderr.readline())  # certificate
            lines.append(proc.stderr.readline())  # fingerprint
            return port, lines
    proc.kill()
    raise AssertionError("daemon did not start: " + "".join(lines))


def _run_cli(args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TLSCHAT, *args], capture_output=True, text=True, timeout=60, **kw)


def _one_clear_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "no message on stderr"
    return lines[-1]


async def test_sigterm_sends_bye_and_exits_zero(tmp_path: Path) -> None:
    proc = _serve(["--port", "0", "--data-dir", str(tmp_path / "d")])
    try:
        port, lines = await asyncio.to_thread(_wait_listening, proc)
        assert any("SHA-256 fingerprint:" in line for line in lines)
        cert = tmp_path / "d" / "tls" / "server.pem"
        assert cert.exists()
        wire = await Wire.open(port, tls.client_context(cafile=tmp_path / "d" / "tls" / "ca.pem"))
        assert (await wire.hello("alice"))["type"] == "welcome"
        proc.send_signal(signal.SIGTERM)
        bye = await wire.recv_type("bye", 10)
        assert bye["type"] == "bye"
        code = await asyncio.to_thread(proc.wait, 20)
        assert code == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_kill_9_loses_nothing_acknowledged(tmp_path: Path) -> None:
    data = tmp_path / "d"
    proc = _serve(["--port", "0", "--data-dir", str(data), "--rate-burst", "1000"])
    try:
        port, _ = await asyncio.to_thread(_wait_listening, proc)
        ctx = tls.client_context(cafile=data / "tls" / "ca.pem")
        alice = await Wire.open(port, ctx)
        assert (await alice.hello("alice", "pw-alice"))["type"] == "welcome"
        bob = await Wire.open(port, ctx)
        assert (await bob.hello("bob", "pw-bob"))["type"] == "welcome"
        await bob.close()
        acked = []
        for i in range(50):
            echo = await alice.request({"type": "send", "to": "@bob", "text": f"note {i}"})
            assert echo["type"] == "message"
            acked.append(echo["id"])
        proc.kill()  # SIGKILL: no shutdown, no flush
        await asyncio.to_thread(proc.wait, 10)
    finally:
        if proc.poll() is None:
            proc.kill()
    proc = _serve(["--port", "0", "--data-dir", str(data)])
    try:
        port, _ = await asyncio.to_thread(_wait_listening, proc)
        bob = await Wire.open(port, tls.client_context(cafile=data / "tls" / "ca.pem"))
        welcome = await bob.hello("bob", "pw-bob")
        assert welcome["type"] == "welcome"
        replayed = [await bob.recv_type("message") for _ in acked]
        assert [m["id"] for m in replayed] == acked
        await bob.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 20)


def test_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run_cli(
            ["serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp_path)]
        )
    assert "already in use" in _one_clear_line(result)


def test_missing_cert_file_is_one_clear_line(tmp_path: Path, cert_files: CertFiles) -> None:
    result = _run_cli(
        ["serve", "--port", "0", "--data-dir", str(tmp_path), "--cert", str(tmp_path / "nope.pem"),
         "--key", str(cert_files.key)]
    )  # fmt: skip
    assert "nope.pem" in _one_clear_line(result)


def test_key_not_matching_cert_is_one_clear_line(tmp_path: Path, cert_files: CertFiles) -> None:
    other = trustme.CA().issue_cert("localhost")
    other_key = tmp_path / "other.key"
    other.private_key_pem.write_to_path(str(other_key))
    result = _run_cli(
        ["serve", "--port", "0", "--data-dir", str(tmp_path), "--cert", str(cert_files.cert),
         "--key", str(other_key)]
    )  # fmt: skip
    line = _one_clear_line(result)
    assert "match" in line.lower() or "key" in line.lower()


def test_cert_without_key_is_refused(tmp_path: Path, cert_files: CertFiles) -> None:
    result = _run_cli(["serve", "--data-dir", str(tmp_path), "--cert", str(cert_files.cert)])
    assert "--key" in _one_clear_line(result)


def test_unwritable_data_dir_is_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = _run_cli(["serve", "--port", "0", "--data-dir", str(blocker / "data")])
    assert "data directory" in _one_clear_line(result)


@pytest.mark.parametrize(
    "args",
    [
        ["--port", "abc"],
        ["--port", "70000"],
        ["--tls-min", "1.1"],
        ["--max-queue", "0"],
        ["--rate-per-sec", "fast"],
    ],
)
def test_malformed_values_are_one_clear_line(tmp_path: Path, args: list[str]) -> None:
    result = _run_cli(["serve", "--data-dir", str(tmp_path), *args])
    _one_clear_line(result)


def test_bad_config_file_is_one_clear_line(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("max_queue = 'lots'\n")
    result = _run_cli(["serve", "--config", str(config)])
    assert "max_queue" in _one_clear_line(result)
    config.write_text("this is [not toml\n")
    assert "TOML" in _one_clear_line(_run_cli(["serve", "--config", str(config)]))
    assert "c2.toml" in _one_clear_line(_run_cli(["serve", "--config", str(tmp_path / "c2.toml")]))


async def test_config_file_env_and_flags_layer(tmp_path: Path) -> None:
    """The TOML file sets max_text; the environment overrides it; a flag overrides both."""
    config = tmp_path / "c.toml"
    config.write_text('[serve]\nmax_text = 11\nhost = "127.0.0.1"\nport = 0\n')
    env = {"TLSCHAT_MAX_TEXT": "22", "TLSCHAT_DATA_DIR": str(tmp_path / "d")}

    async def max_text(extra: list[str]) -> int:
        proc = _spawn(["serve", "--config", str(config), *extra], env)
        try:
            port, _ = await asyncio.to_thread(_wait_listening, proc)
            wire = await Wire.open(
                port, tls.client_context(cafile=tmp_path / "d" / "tls" / "ca.pem")
            )
            welcome = await wire.hello("probe")
            await wire.close()
            return int(welcome["limits"]["max_text"])
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.wait, 20)

    assert await max_text([]) == 22
    assert await max_text(["--max-text", "33"]) == 33
    env.pop("TLSCHAT_MAX_TEXT")
    assert await max_text([]) == 11


def test_gen_certs_writes_a_usable_deployment(tmp_path: Path) -> None:
    result = _run_cli(["gen-certs", "--out", str(tmp_path / "out"), "--name", "chat.example.org"])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "server.pem").exists()
    assert (tmp_path / "out" / "server.key").exists()
    assert "fingerprint" in result.stdout.lower()
    again = _run_cli(["gen-certs", "--out", str(tmp_path / "out"), "--name", "chat.example.org"])
    _one_clear_line(again)


async def test_a_flood_of_refusals_is_logged_once(
    start_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(max_unauth_per_ip=2, max_per_ip=1000, handshake_timeout=2.0)
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
    try:
        await asyncio.sleep(0.5)
    finally:
        for s in socks:
            s.close()
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1
    assert "max_unauth_per_ip" in refusals[0].getMessage()
