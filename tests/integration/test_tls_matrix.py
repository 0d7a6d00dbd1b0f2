"""The `openssl s_client` matrix of scripts/tls_audit.sh, against the real daemon.

test_tls_groups.py probes server_context() on an echo server; this probes what `tlschat serve`
really listens with. A refusal counts only if s_client did send its ClientHello (seen with
`-msg`) and got no ServerHello back, so a client that cannot offer the version or group (as
OpenSSL builds that drop old protocols would) fails the test instead of passing it.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from tests.conftest import CertFiles
from tests.wire import timeout

pytestmark = [
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl"),
    pytest.mark.store_agnostic,
]

SUITES = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]
OLD = ["-cipher", "DEFAULT@SECLEVEL=0"]  # lets OpenSSL 3 offer TLS 1.0/1.1 at all


@dataclass(frozen=True)
class Probe:
    returncode: int
    output: str

    def cipher(self) -> str | None:
        match = re.search(r"^New, TLSv1\.3, Cipher is (\S+)$", self.output, re.M)
        return match.group(1) if match else None

    def sent_client_hello(self, version: str) -> bool:
        return re.search(rf"^>>> TLS {re.escape(version)}, Handshake .*, ClientHello$",
                         self.output, re.M) is not None  # fmt: skip

    @property
    def got_server_hello(self) -> bool:
        return re.search(r"^<<< .*, ServerHello$", self.output, re.M) is not None


async def s_client(port: int, cafile: str, *args: str, name: str = "localhost") -> Probe:
    """`openssl s_client -msg` with ALPN tlschat/1 and strict verification of `name`."""
    proc = await asyncio.create_subprocess_exec(
        "openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", name,
        "-verify_hostname", name, "-CAfile", cafile, "-verify_return_error",
        "-alpn", "tlschat/1", "-msg", *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with asyncio.timeout(timeout(30)):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return Probe(proc.returncode, out.decode("utf-8", "replace"))


def assert_accepted(probe: Probe) -> str:
    assert probe.returncode == 0, probe.output
    assert "Verify return code: 0 (ok)" in probe.output, probe.output
    assert "ALPN protocol: tlschat/1" in probe.output, probe.output
    cipher = probe.cipher()
    assert cipher in SUITES, probe.output
    return cipher


async def test_default_handshake(server: Any, cert_files: CertFiles) -> None:
    probe = await s_client(server.port, str(cert_files.ca))
    assert_accepted(probe)
    assert "Server Temp Key: X25519" in probe.output, probe.output


@pytest.mark.parametrize("suite", SUITES)
async def test_each_allowed_suite(server: Any, cert_files: CertFiles, suite: str) -> None:
    probe = await s_client(server.port, str(cert_files.ca), "-ciphersuites", suite)
    assert assert_accepted(probe) == suite


@pytest.mark.parametrize(
    ("group", "temp_key"),
    [("X25519", "X25519"), ("P-256", "prime256v1"), ("P-384", "secp384r1")],
)
async def test_each_allowed_group(
    server: Any, cert_files: CertFiles, group: str, temp_key: str
) -> None:
    probe = await s_client(server.port, str(cert_files.ca), "-groups", group)
    assert_accepted(probe)
    assert re.search(rf"^Server Temp Key: .*{temp_key}", probe.output, re.M), probe.output


@pytest.mark.parametrize(
    ("hello_version", "args"),
    [
        pytest.param("1.2", ["-tls1_2"], id="TLS1.2"),
        pytest.param("1.1", ["-tls1_1", *OLD], id="TLS1.1"),
        pytest.param("1.0", ["-tls1", *OLD], id="TLS1.0"),
        pytest.param("1.3", ["-groups", "X448"], id="X448"),
        pytest.param("1.3", ["-groups", "P-521"], id="P-521"),
        pytest.param("1.3", ["-groups", "ffdhe2048"], id="ffdhe2048"),
        pytest.param("1.3", ["-ciphersuites", "TLS_AES_128_CCM_SHA256"], id="CCM"),
        pytest.param("1.3", ["-ciphersuites", "TLS_AES_128_CCM_8_SHA256"], id="CCM_8"),
    ],
)
async def test_refused(
    server: Any, cert_files: CertFiles, hello_version: str, args: list[str]
) -> None:
    probe = await s_client(server.port, str(cert_files.ca), *args)
    assert probe.sent_client_hello(hello_version), probe.output
    assert not probe.got_server_hello, probe.output
    assert probe.returncode != 0
    assert "Cipher is (NONE)" in probe.output, probe.output


async def test_wrong_host_name_fails_verification(server: Any, cert_files: CertFiles) -> None:
    probe = await s_client(server.port, str(cert_files.ca), name="wrong.example")
    assert probe.returncode != 0
    assert "hostname mismatch" in probe.output, probe.output


async def test_other_ca_fails_verification(server: Any, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    probe = await s_client(server.port, str(other))
    assert probe.returncode != 0
    assert "verify error:num=20:unable to get local issuer certificate" in probe.output, (
        probe.output
    )
