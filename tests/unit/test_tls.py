"""tlschat.tls: the contexts' settings, in-memory handshakes (no sockets), fingerprints, errors."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
import trustme
from tests.conftest import CertFiles

from tlschat import tls
from tlschat.protocol import ALPN, TlsChatError
from tlschat.tls import TlsConfigError

TLS13 = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}


def handshake(
    client: ssl.SSLContext,
    server: ssl.SSLContext,
    hostname: str | None = "localhost",
) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """Run a TLS handshake between two contexts through memory BIOs; return (client, server)."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_side=False, server_hostname=hostname)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    c_done = s_done = False
    for _ in range(20):
        if not c_done:
            try:
                c.do_handshake()
                c_done = True
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        if not s_done:
            try:
                s.do_handshake()
                s_done = True
            except ssl.SSLWantReadError:
                pass
        c_in.write(s_out.read())
        if c_done and s_done:
            # TLS 1.3: the server's verdict on a client certificate arrives with the first read.
            s.write(b"x")
            c_in.write(s_out.read())
            c.write(b"y")
            s_in.write(c_out.read())
            assert s.read(1) == b"y"
            assert c.read(1) == b"x"
            return c, s
    raise AssertionError("handshake did not finish")


@pytest.fixture
def server_ctx(cert_files: CertFiles) -> ssl.SSLContext:
    return tls.server_context(cert_files.cert, cert_files.key)


# --- settings -----------------------------------------------------------------------------------


def test_server_context_defaults_to_tls13_only(server_ctx: ssl.SSLContext) -> None:
    assert server_ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert server_ctx.verify_mode == ssl.CERT_NONE
    assert server_ctx.options & ssl.OP_NO_COMPRESSION
    assert server_ctx.options & ssl.OP_NO_RENEGOTIATION
    assert server_ctx.keylog_filename is None


def test_tls_min_12_allows_tls12_with_ecdhe_aead_only(cert_files: CertFiles) -> None:
    ctx = tls.server_context(cert_files.cert, cert_files.key, tls_min="1.2")
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    tls12 = [c for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12
    for cipher in tls12:
        assert cipher["kea"] == "kx-ecdhe", cipher
        assert cipher["aead"], cipher
        assert "CBC" not in cipher["description"]


@pytest.mark.parametrize("tls_min", ["1.3", "1.2"])
def test_tls13_suites_are_exactly_the_allowed_three(cert_files: CertFiles, tls_min: str) -> None:
    for ctx in (
        tls.server_context(cert_files.cert, cert_files.key, tls_min=tls_min),
        tls.client_context(cafile=cert_files.ca, tls_min=tls_min),
    ):
        names = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.3"}
        assert names == TLS13


@pytest.mark.parametrize("tls_min", ["1.3", "1.2"])
def test_client_offers_only_the_allowed_groups_and_suites(tls_min: str) -> None:
    hello = tls.client_hello(tls.client_context(tls_min=tls_min))
    assert hello.groups == ["X25519", "P-256", "P-384"]
    assert set(hello.tls13_suites) == TLS13


def test_client_hello_decoder_sees_python_defaults() -> None:
    # The check above only means something if the decoder can see a wider list.
    hello = tls.client_hello(ssl.create_default_context())
    assert "X448" in hello.groups or "ffdhe2048" in hello.groups


def test_bad_tls_min(cert_files: CertFiles) -> None:
    with pytest.raises(TlsConfigError, match=r"1\.1"):
        tls.server_context(cert_files.cert, cert_files.key, tls_min="1.1")
    with pytest.raises(TlsConfigError):
        tls.client_context(tls_min="1.0")


def test_client_context_verifies_by_default(cert_files: CertFiles) -> None:
    ctx = tls.client_context(cafile=cert_files.ca)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert tls.client_context(tls_min="1.2").minimum_version == ssl.TLSVersion.TLSv1_2


def test_client_context_uses_system_store_without_cafile() -> None:
    ctx = tls.client_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname


def test_client_context_without_verification() -> None:
    ctx = tls.client_context(verify=False)
    assert ctx.verify_mode == ssl.CERT_NONE
    assert not ctx.check_hostname


def test_client_honours_sslkeylogfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keylog = tmp_path / "keys.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(keylog))
    assert tls.client_context().keylog_filename == str(keylog)


def test_server_keylog(cert_files: CertFiles, tmp_path: Path) -> None:
    keylog = tmp_path / "server-keys.log"
    ctx = tls.server_context(cert_files.cert, cert_files.key, keylog=keylog)
    assert ctx.keylog_filename == str(keylog)
    handshake(tls.client_context(cafile=cert_files.ca), ctx)
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in keylog.read_text()


def test_client_ca_requires_client_certificates(cert_files: CertFiles) -> None:
    ctx = tls.server_context(cert_files.cert, cert_files.key, client_ca=cert_files.ca)
    assert ctx.verify_mode == ssl.CERT_REQUIRED


# --- in-memory handshakes -----------------------------------------------------------------------


def test_handshake_negotiates_tls13_and_alpn(
    server_ctx: ssl.SSLContext, cert_files: CertFiles
) -> None:
    client, server = handshake(tls.client_context(cafile=cert_files.ca), server_ctx)
    for side in (client, server):
        info = tls.tls_info(side)
        assert info.version == "TLSv1.3"
        assert info.cipher in TLS13
        assert info.alpn == ALPN == "tlschat/1"
    assert tls.peer_common_name(server) is None


def test_untrusted_server_is_refused(server_ctx: ssl.SSLContext) -> None:
    other_ca = trustme.CA()
    ctx = tls.client_context()
    other_ca.configure_trust(ctx)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(ctx, server_ctx)


def test_verify_false_connects_and_pins_by_fingerprint(
    server_ctx: ssl.SSLContext, cert_files: CertFiles
) -> None:
    client, _ = handshake(tls.client_context(verify=False), server_ctx, hostname="elsewhere")
    der = client.getpeercert(binary_form=True)
    assert der is not None
    assert tls.fingerprint(der) == tls.fingerprint_file(cert_files.cert)


def test_mutual_tls_gives_the_common_name(
    ca: trustme.CA, cert_files: CertFiles, tmp_path: Path
) -> None:
    issued = ca.issue_cert("alice@example.org", common_name="alice")
    cert, key = tmp_path / "alice.pem", tmp_path / "alice.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    server_ctx = tls.server_context(cert_files.cert, cert_files.key, client_ca=cert_files.ca)
    client_ctx = tls.client_context(cafile=cert_files.ca, certfile=cert, keyfile=key)
    _, server = handshake(client_ctx, server_ctx)
    assert tls.peer_common_name(server) == "alice"


def test_mutual_tls_refuses_a_client_without_certificate(cert_files: CertFiles) -> None:
    server_ctx = tls.server_context(cert_files.cert, cert_files.key, client_ca=cert_files.ca)
    with pytest.raises(ssl.SSLError):
        handshake(tls.client_context(cafile=cert_files.ca), server_ctx)


def test_client_cert_needs_key(cert_files: CertFiles) -> None:
    with pytest.raises(TlsConfigError):
        tls.client_context(certfile=cert_files.cert)


# --- fingerprints -------------------------------------------------------------------------------


def test_fingerprint_format() -> None:
    value = tls.fingerprint(b"hello")
    assert value == (
        "2C:F2:4D:BA:5F:B0:A3:0E:26:E8:3B:2A:C5:B9:E2:9E:"
        "1B:16:1E:5C:1F:A7:42:5E:73:04:33:62:93:8B:98:24"
    )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_fingerprint_matches_openssl(cert_files: CertFiles) -> None:
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(cert_files.cert)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    expected = out.strip().split("=", 1)[1]
    assert tls.fingerprint_file(cert_files.cert) == expected


def test_fingerprint_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(TlsConfigError, match=r"nope\.pem"):
        tls.fingerprint_file(missing)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(TlsConfigError, match=r"garbage\.pem"):
        tls.fingerprint_file(garbage)


# --- errors name the file, in one line ----------------------------------------------------------


def _one_line(exc: pytest.ExceptionInfo[TlsConfigError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert isinstance(exc.value, TlsChatError)
    return message


def test_missing_cert_file(cert_files: CertFiles, tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError) as exc:
        tls.server_context(tmp_path / "absent.pem", cert_files.key)
    assert "absent.pem" in _one_line(exc)


def test_missing_key_file(cert_files: CertFiles, tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError) as exc:
        tls.server_context(cert_files.cert, tmp_path / "absent.key")
    assert "absent.key" in _one_line(exc)


def test_cert_is_a_directory(cert_files: CertFiles, tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError) as exc:
        tls.server_context(tmp_path, cert_files.key)
    assert str(tmp_path) in _one_line(exc)


def test_bad_pem_cert(cert_files: CertFiles, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(TlsConfigError) as exc:
        tls.server_context(bad, cert_files.key)
    assert "bad.pem" in _one_line(exc)


def test_bad_pem_key(cert_files: CertFiles, tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("hello\n")
    with pytest.raises(TlsConfigError) as exc:
        tls.server_context(cert_files.cert, bad)
    assert "bad.key" in _one_line(exc)


def test_key_and_cert_swapped(cert_files: CertFiles) -> None:
    with pytest.raises(TlsConfigError) as exc:
        tls.server_context(cert_files.key, cert_files.cert)
    assert str(cert_files.key) in _one_line(exc)


def test_key_does_not_match_cert(ca: trustme.CA, cert_files: CertFiles, tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    ca.issue_cert("localhost").private_key_pem.write_to_path(str(other))
    with pytest.raises(TlsConfigError, match="does not match") as exc:
        tls.server_context(cert_files.cert, other)
    message = _one_line(exc)
    assert "other.key" in message
    assert str(cert_files.cert) in message


def test_encrypted_key_is_refused_without_prompting(cert_files: CertFiles, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(cert_files.key.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(TlsConfigError, match="encrypted") as exc:
        tls.server_context(cert_files.cert, encrypted)
    assert "encrypted.key" in _one_line(exc)


def test_bad_client_ca(cert_files: CertFiles, tmp_path: Path) -> None:
    bad = tmp_path / "clients-ca.pem"
    bad.write_text("nope\n")
    with pytest.raises(TlsConfigError) as exc:
        tls.server_context(cert_files.cert, cert_files.key, client_ca=bad)
    assert "clients-ca.pem" in _one_line(exc)


def test_bad_cafile(tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError) as exc:
        tls.client_context(cafile=tmp_path / "missing-ca.pem")
    assert "missing-ca.pem" in _one_line(exc)


def test_unwritable_keylog(cert_files: CertFiles, tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError) as exc:
        tls.server_context(cert_files.cert, cert_files.key, keylog=tmp_path / "no" / "keys.log")
    assert "keys.log" in _one_line(exc)


def test_cafile_replaces_the_system_store(cert_files: CertFiles) -> None:
    ctx = tls.client_context(cafile=cert_files.ca)
    assert ctx.cert_store_stats()["x509_ca"] == 1
