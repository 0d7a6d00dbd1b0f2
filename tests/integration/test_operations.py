"""Operating the daemon (PRODUCT.md "Operating it"): the log an operator reads, SIGHUP reload,
certificate expiry, as a real `tlschat serve` process over real TLS."""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import logging
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from tests.integration.daemon_proc import TLSCHAT, Daemon, context_for, peer_fingerprint
from tests.wire import Wire

from tlschat import certs
from tlschat.server.logs import setup_logging

pytestmark = pytest.mark.store_agnostic  # run once, not again on PostgreSQL

PASSWORD = "correct horse battery staple"
MARKER = "zebra-marker-7731"
SECRET = "pw-marker-5519"


async def _login(port: int, data: Path, nick: str, password: str | None = None) -> Wire:
    wire = await Wire.open(port, context_for(data))
    welcome = await wire.hello(nick, password)
    assert welcome["type"] == "welcome", welcome
    return wire


async def test_log_lines_at_debug_never_hold_text_or_passwords(tmp_path: Path) -> None:
    data = tmp_path / "d"
    daemon = Daemon(["--data-dir", str(data), "--log-level", "DEBUG"])
    try:
        port = daemon.started()
        bob = await _login(port, data, "bob", SECRET)
        alice = await _login(port, data, "alice")
        echo = await alice.request({"type": "send", "to": "@bob", "text": f"hi {MARKER}"})
        assert echo["type"] == "message"
        await alice.request({"type": "create", "room": "Den", "topic": MARKER})
        wrong = await Wire.open(port, context_for(data))
        assert (await wrong.hello("bob", f"{SECRET}-wrong"))["code"] == "auth_failed"
        await wrong.close()
        await alice.close()
        daemon.wait_for(r"logout: alice from 127\.0\.0\.1 \(0 sessions left\)")
        await bob.close()
        daemon.wait_for(r"logout: bob from 127\.0\.0\.1")
    finally:
        code, log = daemon.stop()
    assert code == 0
    assert "login: bob from 127.0.0.1 (account, 1 sessions)" in log
    assert "login: alice from 127.0.0.1 (guest, 1 sessions)" in log
    assert "login failed: bob from 127.0.0.1: wrong password" in log
    assert "registered bob from 127.0.0.1" in log
    assert "shutting down" in log
    assert "stopped: storage flushed" in log
    assert MARKER not in log
    assert SECRET not in log
    start = [line for line in log.splitlines() if "listening on" in line]
    assert len(start) == 1
    assert "SHA-256 fingerprint" in start[0]
    assert "expires 20" in start[0]
    assert "tlschat 0." in start[0] or "tlschat 1." in start[0]


async def test_json_log_format(tmp_path: Path) -> None:
    data = tmp_path / "d"
    daemon = Daemon(["--data-dir", str(data), "--log-format", "json"])
    try:
        port = daemon.started()
        alice = await _login(port, data, "alice")
        await alice.close()
        daemon.wait_for("logout: alice")
    finally:
        code, log = daemon.stop()
    assert code == 0
    events = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert {"ts", "level", "logger", "msg"} <= set(events[0])
    assert any(e["msg"].startswith("login: alice from 127.0.0.1") for e in events)
    assert any("listening on" in e["msg"] for e in events)


def test_unknown_log_level_is_refused_with_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [*TLSCHAT, "serve", "--data-dir", str(tmp_path), "--log-level", "LOUD"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "log-level" in result.stderr


def test_asyncio_warnings_come_out_in_the_json_format() -> None:
    stream = io.StringIO()
    setup_logging("INFO", "json", stream)
    try:
        logging.getLogger("asyncio").warning("Executing <Task> took 0.353 seconds")
    finally:
        setup_logging("INFO", "text")
    event = json.loads(stream.getvalue())
    assert (event["logger"], event["level"]) == ("asyncio", "WARNING")


def test_log_level_sets_tlschat_loggers_only() -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    setup_logging("DEBUG", "text")
    try:
        assert logging.getLogger("tlschat").level == logging.DEBUG
        assert logging.getLogger("tlschat.server").getEffectiveLevel() == logging.DEBUG
        assert (list(root.handlers), root.level) == before
    finally:
        setup_logging("INFO", "text")


async def test_sighup_reloads_the_certificate(tmp_path: Path) -> None:
    data = tmp_path / "d"
    daemon = Daemon(["--data-dir", str(data)])
    try:
        port = daemon.started()
        first = await _login(port, data, "alice")
        old = peer_fingerprint(first)
        # A new generated pair: remove the old one, SIGHUP makes and loads a new one.
        shutil.rmtree(data / "tls")
        daemon.signal(signal.SIGHUP)
        daemon.wait_for("reloaded certificate")
        second = await _login(port, data, "bob")
        assert peer_fingerprint(second) != old
        # the connection made before the reload goes on
        assert (await first.request({"type": "users"}))["type"] == "users"
    finally:
        code, _ = daemon.stop()
    assert code == 0


async def test_sighup_with_a_broken_pair_keeps_the_old_one(tmp_path: Path) -> None:
    made = certs.write_deployment(tmp_path / "certs", ["localhost", "127.0.0.1"])
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copy(made.server_cert, cert)
    shutil.copy(made.server_key, key)
    data = tmp_path / "d"
    daemon = Daemon(["--data-dir", str(data), "--cert", str(cert), "--key", str(key)])
    try:
        port = daemon.started()
        cert.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n")
        daemon.signal(signal.SIGHUP)
        daemon.wait_for("reload refused, keeping the current certificate")
        from tlschat import tls

        wire = await Wire.open(port, tls.client_context(cafile=made.ca_cert))
        assert peer_fingerprint(wire) == made.fingerprint
        assert (await wire.hello("alice"))["type"] == "welcome"
    finally:
        code, _ = daemon.stop()
    assert code == 0


def _issue_expiring(folder: Path, days_left: float) -> None:
    """Replace the generated server certificate in `folder` by one ending in `days_left` days."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now + datetime.timedelta(days=days_left))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (folder / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def test_expired_generated_certificate_is_made_again(tmp_path: Path) -> None:
    cert, _ = certs.ensure_server_cert(tmp_path)
    _issue_expiring(cert.parent, -1)
    assert certs.cert_expiry(cert) < datetime.datetime.now(datetime.UTC)
    again, _ = certs.ensure_server_cert(tmp_path)
    assert again == cert
    assert certs.cert_expiry(again) > datetime.datetime.now(datetime.UTC) + datetime.timedelta(
        days=30
    )


@pytest.mark.parametrize("days_left", [5])
async def test_certificate_near_expiry_is_warned_about_at_start(
    tmp_path: Path, days_left: int
) -> None:
    data = tmp_path / "d"
    certs.ensure_server_cert(data)
    _issue_expiring(data / "tls", days_left)
    daemon = Daemon(["--data-dir", str(data)])
    try:
        daemon.started()
        line = daemon.wait_for("expires on")
        assert "WARNING" in line
        assert "SIGHUP" in line
    finally:
        code, _ = daemon.stop()
    assert code == 0
    await asyncio.sleep(0)


async def test_readiness_is_told_to_systemd(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(20)
    data = tmp_path / "d"
    daemon = Daemon(["--data-dir", str(data)], env={"NOTIFY_SOCKET": str(path)})
    try:
        daemon.started()
        assert await asyncio.to_thread(sock.recv, 100) == b"READY=1"
    finally:
        code, _ = daemon.stop()
        stopping = await asyncio.to_thread(sock.recv, 100)
        sock.close()
    assert code == 0
    assert stopping == b"STOPPING=1"


async def test_rate_limit_refusals_are_logged_aggregated(tmp_path: Path) -> None:
    data = tmp_path / "d"
    daemon = Daemon(["--data-dir", str(data), "--rate-burst", "3", "--rate-per-sec", "0.5"])
    try:
        port = daemon.started()
        alice = await _login(port, data, "alice")
        for _ in range(30):
            await alice.send({"type": "ping"})
        await alice.close()
        daemon.wait_for("logout: alice")
    finally:
        code, log = daemon.stop()
    assert code == 0
    lines = [line for line in log.splitlines() if "rate limit:" in line]
    assert len(lines) == 1, lines  # one line for the whole burst, not one per refusal
    assert "from 127.0.0.1" in lines[0]


async def test_start_line_is_written_at_any_log_level(tmp_path: Path) -> None:
    daemon = Daemon(["--data-dir", str(tmp_path / "d"), "--log-level", "ERROR"])
    try:
        daemon.started()
    finally:
        code, log = daemon.stop()
    assert code == 0
    assert "listening on" in log
    assert "shutting down" not in log  # the rest follows --log-level
