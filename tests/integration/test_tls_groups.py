"""PROTOCOL.md "Transport" on a real socket: versions, suites and groups, probed with `openssl s_client`."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import trustme
from tests.conftest import CertFiles
from tests.wire import timeout

from tlschat import tls
from tlschat.tls import TlsInfo

pytestmark = [
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl"),
    pytest.mark.store_agnostic,
]

Outcome = TlsInfo | Exception
"""What the server saw of one connection: the negotiated parameters, or the handshake error."""


@dataclass
class EchoServer:
    """A TLS echo server with server_context(); it records each handshake's outcome."""

    port: int
    outcomes: asyncio.Queue[Outcome] = field(default_factory=asyncio.Queue)

    async def next_outcome(self) -> Outcome:
        async with asyncio.timeout(timeout(20)):
            return await self.outcomes.get()


StartEcho = Callable[..., Awaitable[EchoServer]]


@pytest.fixture(scope="module")
def rsa_cert_files(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    """An RSA server certificate: only with one can a server accept RSA key exchange at all."""
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    issued = ca.issue_cert("localhost", "127.0.0.1", key_type=trustme.KeyType.RSA)
    folder = tmp_path_factory.mktemp("rsa")
    files = CertFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    ca.cert_pem.write_to_path(str(files.ca))
    files.cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(files.key))
    return files


@pytest.fixture
async def start_echo(cert_files: CertFiles) -> AsyncIterator[StartEcho]:
    servers: list[asyncio.Server] = []
    writers: list[asyncio.StreamWriter] = []

    async def factory(files: CertFiles = cert_files, **options: str) -> EchoServer:
        ctx = tls.server_context(files.cert, files.key, **options)  # type: ignore[arg-type]
        echo: EchoServer

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            # TLS is started by hand, not by start_server(ssl=...), so that a refused
            # handshake reaches the test with its reason instead of a debug log line.
            try:
                await writer.start_tls(ctx)
            except (ssl.SSLError, OSError) as exc:
                echo.outcomes.put_nowait(exc)
                writer.close()
                return
            echo.outcomes.put_nowait(tls.tls_info(writer.get_extra_info("ssl_object")))
            try:
                while data := await reader.read(4096):
                    writer.write(data)
                    await writer.drain()
            except (ssl.SSLError, OSError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        echo = EchoServer(server.sockets[0].getsockname()[1])
        return echo

    yield factory
    for server in servers:
        server.close()
    for writer in writers:
        writer.close()
    for server in servers:
        await server.wait_closed()


@dataclass
class Probe:
    returncode: int
    output: str

    @property
    def connected(self) -> bool:
        return "CONNECTED(" in self.output

    def negotiated(self, version: str) -> str | None:
        """The cipher if s_client completed a handshake with `version`, else None."""
        match = re.search(rf"^New, {re.escape(version)}, Cipher is (\S+)$", self.output, re.M)
        return match.group(1) if match else None

    @property
    def refused(self) -> bool:
        return self.returncode != 0 and "Cipher is (NONE)" in self.output

    def temp_key(self) -> str | None:
        match = re.search(r"^Server Temp Key: (.*)$", self.output, re.M)
        return match.group(1) if match else None


async def s_client(port: int, ca: str, *args: str) -> Probe:
    """Run `openssl s_client ... </dev/null` against 127.0.0.1:port."""
    command = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost"]
    proc = await asyncio.create_subprocess_exec(
        *command,
        "-CAfile",
        ca,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(timeout(30)):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    probe = Probe(proc.returncode, out.decode("utf-8", "replace"))
    if not probe.connected:
        pytest.skip(f"this openssl cannot run s_client {' '.join(args)}: {probe.output[-300:]}")
    return probe


async def expect_accepted(echo: EchoServer, probe: Probe, version: str) -> str:
    cipher = probe.negotiated(version)
    assert probe.returncode == 0, probe.output
    assert cipher is not None, probe.output
    assert "Verify return code: 0 (ok)" in probe.output, probe.output
    outcome = await echo.next_outcome()
    assert isinstance(outcome, TlsInfo), outcome
    assert outcome.version == version
    assert outcome.cipher == cipher
    return cipher


async def expect_refused(echo: EchoServer, probe: Probe, reasons: set[str]) -> None:
    assert probe.refused, probe.output
    assert probe.negotiated("TLSv1.3") is None
    assert probe.negotiated("TLSv1.2") is None
    outcome = await echo.next_outcome()
    assert isinstance(outcome, ssl.SSLError), outcome
    assert outcome.reason in reasons, outcome


# --- groups -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "temp_key"),
    [("X25519", "X25519"), ("P-256", "prime256v1"), ("P-384", "secp384r1")],
)
async def test_each_allowed_group_alone_works(
    start_echo: StartEcho, cert_files: CertFiles, group: str, temp_key: str
) -> None:
    echo = await start_echo()
    probe = await s_client(echo.port, str(cert_files.ca), "-groups", group)
    await expect_accepted(echo, probe, "TLSv1.3")
    shown = probe.temp_key()
    if shown is not None:  # the line's wording varies across OpenSSL versions
        assert temp_key in shown or group in shown, shown


@pytest.mark.parametrize("group", ["ffdhe2048", "X448", "P-521"])
async def test_other_groups_are_refused(
    start_echo: StartEcho, cert_files: CertFiles, group: str
) -> None:
    echo = await start_echo()
    probe = await s_client(echo.port, str(cert_files.ca), "-groups", group)
    await expect_refused(echo, probe, {"NO_SUITABLE_KEY_SHARE", "NO_SHARED_GROUPS"})


# --- versions and suites ------------------------------------------------------------------------


async def test_tls12_is_refused_by_default(start_echo: StartEcho, cert_files: CertFiles) -> None:
    echo = await start_echo()
    probe = await s_client(echo.port, str(cert_files.ca), "-tls1_2")
    await expect_refused(echo, probe, {"UNSUPPORTED_PROTOCOL"})


@pytest.mark.parametrize("key_type", ["ecdsa", "rsa"])
async def test_tls12_with_tls_min_12_uses_ecdhe_gcm(
    start_echo: StartEcho, cert_files: CertFiles, rsa_cert_files: CertFiles, key_type: str
) -> None:
    files = rsa_cert_files if key_type == "rsa" else cert_files
    echo = await start_echo(files, tls_min="1.2")
    probe = await s_client(echo.port, str(files.ca), "-tls1_2")
    cipher = await expect_accepted(echo, probe, "TLSv1.2")
    assert re.fullmatch(rf"ECDHE-{key_type.upper()}-AES(128|256)-GCM-SHA(256|384)", cipher), cipher


@pytest.mark.parametrize(
    ("key_type", "cipher"),
    [
        ("rsa", "AES128-SHA"),  # RSA key exchange, CBC
        ("rsa", "AES128-GCM-SHA256"),  # RSA key exchange
        ("rsa", "ECDHE-RSA-AES128-SHA"),  # CBC
        ("rsa", "DHE-RSA-AES128-GCM-SHA256"),  # finite-field DH
        ("ecdsa", "ECDHE-ECDSA-AES128-SHA"),  # CBC
        ("ecdsa", "ECDHE-ECDSA-AES256-SHA384"),  # CBC
    ],
)
async def test_tls12_without_ecdhe_or_aead_is_refused(
    start_echo: StartEcho,
    cert_files: CertFiles,
    rsa_cert_files: CertFiles,
    key_type: str,
    cipher: str,
) -> None:
    files = rsa_cert_files if key_type == "rsa" else cert_files
    echo = await start_echo(files, tls_min="1.2")
    probe = await s_client(echo.port, str(files.ca), "-tls1_2", "-cipher", cipher)
    await expect_refused(echo, probe, {"NO_SHARED_CIPHER"})


@pytest.mark.parametrize("suite", ["TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"])
async def test_ccm_suites_are_refused(
    start_echo: StartEcho, cert_files: CertFiles, suite: str
) -> None:
    echo = await start_echo()
    probe = await s_client(echo.port, str(cert_files.ca), "-ciphersuites", suite)
    await expect_refused(echo, probe, {"NO_SHARED_CIPHER"})


@pytest.mark.parametrize(
    "suite", ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]
)
async def test_each_allowed_suite_works(
    start_echo: StartEcho, cert_files: CertFiles, suite: str
) -> None:
    echo = await start_echo()
    probe = await s_client(echo.port, str(cert_files.ca), "-ciphersuites", suite)
    assert await expect_accepted(echo, probe, "TLSv1.3") == suite


# --- tlschat's own client -----------------------------------------------------------------------


@pytest.mark.parametrize("tls_min", ["1.3", "1.2"])
async def test_python_client_gets_tls13_and_alpn(
    start_echo: StartEcho, cert_files: CertFiles, tls_min: str
) -> None:
    echo = await start_echo(tls_min=tls_min)
    ctx = tls.client_context(cafile=cert_files.ca, tls_min=tls_min)
    async with asyncio.timeout(timeout(20)):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", echo.port, ssl=ctx, server_hostname="localhost"
        )
        try:
            info = tls.tls_info(writer.get_extra_info("ssl_object"))
            assert info.version == "TLSv1.3"
            assert info.alpn == "tlschat/1"
            writer.write(b"ping")
            await writer.drain()
            assert await reader.readexactly(4) == b"ping"
        finally:
            writer.close()
            with contextlib.suppress(ssl.SSLError, OSError):
                await writer.wait_closed()
    server_side = await echo.next_outcome()
    assert isinstance(server_side, TlsInfo), server_side
    assert server_side.alpn == "tlschat/1"
    assert server_side.version == "TLSv1.3"
