"""tlschat.certs: the generated CA and server certificate, their files, and scripts/gen_certs.py."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from tlschat import certs, tls
from tlschat.certs import CertError
from tlschat.protocol import TlsChatError

REPO = Path(__file__).resolve().parents[2]


def load_chain(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def san(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = ext.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]
    return dns, ips


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def handshake_ok(files: certs.DeploymentFiles, hostname: str) -> str:
    """Verify the server certificate for `hostname` as a client does; return the TLS version."""
    server = tls.server_context(files.server_cert, files.server_key)
    client = tls.client_context(cafile=files.ca_cert)
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_hostname=hostname)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side, out, peer_in in ((c, c_out, s_in), (s, s_out, c_in)):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
            peer_in.write(out.read())
        if c.version() and s.version():
            c.do_handshake()
            return str(c.version())
    raise AssertionError("handshake did not finish")


@pytest.fixture
def deployment(tmp_path: Path) -> certs.DeploymentFiles:
    return certs.write_deployment(tmp_path / "out", ["chat.example.org", "192.0.2.7"])


# --- write_deployment ---------------------------------------------------------------------------


def test_deployment_layout(deployment: certs.DeploymentFiles, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert deployment.ca_cert == out / "ca.pem"
    assert deployment.ca_key == out / "ca" / "ca.key"
    assert deployment.server_cert == out / "server.pem"
    assert deployment.server_key == out / "server.key"
    for path in (out / "ca" / "ca.pem", out / "ca" / "ca.key", out / "server.pem"):
        assert path.is_file()
    assert mode(deployment.server_key) == 0o600
    assert mode(deployment.ca_key) == 0o600
    assert mode(out / "ca") == 0o700
    assert deployment.ca_cert.read_bytes() == (out / "ca" / "ca.pem").read_bytes()
    assert not list(out.rglob("*.tmp"))


def test_server_cert_names(deployment: certs.DeploymentFiles) -> None:
    leaf = load_chain(deployment.server_cert)[0]
    dns, ips = san(leaf)
    assert {"chat.example.org", "localhost"} <= set(dns)
    assert {"192.0.2.7", "127.0.0.1", "::1"} <= set(ips)
    assert "192.0.2.7" not in dns  # IPs are IPAddress entries, not DNS names


def test_server_cert_is_ecdsa_p256_for_server_auth(deployment: certs.DeploymentFiles) -> None:
    leaf, ca = load_chain(deployment.server_cert)
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert leaf.issuer == ca.subject
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    basic = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert not basic.ca
    days = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days
    assert 820 <= days <= 826


def test_ca_constraints(deployment: certs.DeploymentFiles) -> None:
    (ca,) = load_chain(deployment.ca_cert)
    key = ca.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert isinstance(key.curve, ec.SECP256R1)
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical
    assert basic.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    validity = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert validity >= datetime.timedelta(days=3650)
    assert load_chain(deployment.server_cert)[1] == ca


@pytest.mark.parametrize("hostname", ["chat.example.org", "localhost", "127.0.0.1", "192.0.2.7"])
def test_clients_verify_the_generated_cert(
    deployment: certs.DeploymentFiles, hostname: str
) -> None:
    assert handshake_ok(deployment, hostname) == "TLSv1.3"


def test_wrong_hostname_is_refused(deployment: certs.DeploymentFiles) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake_ok(deployment, "other.example.org")


def test_describe_has_the_fingerprint(deployment: certs.DeploymentFiles) -> None:
    lines = dict(deployment.describe())
    value = lines["server fingerprint (SHA-256)"]
    assert value == deployment.fingerprint == tls.fingerprint_file(deployment.server_cert)
    assert deployment.server_cert in lines.values()
    assert deployment.ca_cert in lines.values()


def test_refuses_to_overwrite(deployment: certs.DeploymentFiles, tmp_path: Path) -> None:
    before = deployment.server_key.read_bytes()
    with pytest.raises(CertError, match=r"server\.key") as exc:
        certs.write_deployment(tmp_path / "out", ["chat.example.org"])
    assert isinstance(exc.value, TlsChatError)
    assert deployment.server_key.read_bytes() == before


def test_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CertError) as exc:
        certs.write_deployment(blocker / "out", ["example.org"])
    assert str(blocker) in str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("bad", ["", "bad name", "-x.example.org", "a..b", "x" * 64 + ".org"])
def test_bad_names(tmp_path: Path, bad: str) -> None:
    with pytest.raises(CertError):
        certs.write_deployment(tmp_path / "out", [bad])
    assert not (tmp_path / "out").exists()


def test_name_normalisation() -> None:
    names = certs.san_names(["Chat.Example.org.", "[2001:db8::1]", "bücher.example", "localhost"])
    assert names[:3] == ["chat.example.org", "2001:db8::1", "xn--bcher-kva.example"]
    assert names.count("localhost") == 1
    assert ipaddress.ip_address("2001:db8::1")


# --- ensure_server_cert -------------------------------------------------------------------------


def test_ensure_server_cert_generates_then_reuses(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cert, key = certs.ensure_server_cert(data, ["chat.example.org"])
    assert (cert, key) == (data / "tls" / "server.pem", data / "tls" / "server.key")
    assert mode(key) == 0o600
    assert mode(data / "tls" / "ca" / "ca.key") == 0o600
    assert (data / "tls" / "ca.pem").is_file()
    assert "chat.example.org" in san(load_chain(cert)[0])[0]
    first = cert.read_bytes(), key.read_bytes()

    assert certs.ensure_server_cert(data, ["other.example.org"]) == (cert, key)
    assert (cert.read_bytes(), key.read_bytes()) == first
    tls.server_context(cert, key)  # usable as is


def test_ensure_server_cert_recovers_from_a_lone_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "tls").mkdir(parents=True)
    (data / "tls" / "server.key").write_text("left over\n")
    cert, key = certs.ensure_server_cert(data)
    tls.server_context(cert, key)


def test_ensure_server_cert_refuses_a_cert_without_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "tls").mkdir(parents=True)
    (data / "tls" / "server.pem").write_text("mine\n")
    with pytest.raises(CertError, match=r"server\.key"):
        certs.ensure_server_cert(data)


def test_ensure_server_cert_unusable_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("")
    with pytest.raises(CertError):
        certs.ensure_server_cert(blocker)


# --- the command-line wrappers ------------------------------------------------------------------


def test_gen_certs_script(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    command = [sys.executable, str(REPO / "scripts" / "gen_certs.py"), "--out", str(out)]
    command += ["--name", "example.org"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert tls.fingerprint_file(out / "server.pem") in done.stdout
    assert "example.org" in san(load_chain(out / "server.pem")[0])[0]

    again = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode != 0
    assert "server.key" in again.stderr
    assert "Traceback" not in again.stderr


def test_cli_gen_certs(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tlschat.cli import cli

    result = CliRunner().invoke(
        cli, ["gen-certs", "--out", str(tmp_path / "o"), "--name", "h.example"]
    )
    assert result.exit_code == 0, result.output
    assert "server fingerprint (SHA-256): " in result.output
    assert tls.fingerprint_file(tmp_path / "o" / "server.pem") in result.output


def test_days_sets_the_server_certificate_lifetime(tmp_path: Path) -> None:
    from cryptography import x509 as _x509

    files = certs.write_deployment(tmp_path / "short", ["example.org"], days=90)
    leaf = _x509.load_pem_x509_certificates(files.server_cert.read_bytes())[0]
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert 89 <= lifetime.days <= 90
    default = certs.write_deployment(tmp_path / "long", ["example.org"])
    leaf = _x509.load_pem_x509_certificates(default.server_cert.read_bytes())[0]
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days >= 824


@pytest.mark.parametrize("days", [0, -1, 826])
def test_days_out_of_range_is_refused_before_writing(tmp_path: Path, days: int) -> None:
    with pytest.raises(CertError, match="days"):
        certs.write_deployment(tmp_path / "out", ["example.org"], days=days)
    assert not (tmp_path / "out").exists()
