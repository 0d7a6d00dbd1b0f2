"""A CA and a server certificate with `cryptography`, for serve's first start and gen-certs."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import re
import secrets
import socket
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tlschat.protocol import TlsChatError
from tlschat.tls import fingerprint

CA_DAYS = 3650
"""Validity of a generated CA: ten years."""
SERVER_DAYS = 825
"""Validity of a server certificate: the longest clients such as Apple's accept."""
CLOCK_SKEW = datetime.timedelta(minutes=5)
"""Certificates start this long in the past, so a peer whose clock is a bit behind accepts them."""

DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
"""Always in a generated server certificate, with socket.gethostname()."""

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


class CertError(TlsChatError):
    """A certificate could not be made or written; the message is one line for the user."""


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, as PEM."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.cert.public_bytes(serialization.Encoding.DER))


# --- names --------------------------------------------------------------------------------------


def san_names(extra_names: Sequence[str] = ()) -> list[str]:
    """The names of a generated server certificate: extra names first, then the defaults.

    Raise CertError for an extra name that is neither an IP address nor a valid host name.
    Duplicates (ignoring case) are dropped. The local host name is added only if valid.
    """
    names: list[str] = []
    seen: set[str] = set()

    def add(name: str) -> None:
        key = name.lower()
        if key not in seen:
            seen.add(key)
            names.append(name)

    for raw in extra_names:
        add(_normalise(raw))
    for default in DEFAULT_NAMES:
        add(default)
    with contextlib.suppress(CertError, OSError):
        add(_normalise(socket.gethostname()))
    return names


def _normalise(raw: str) -> str:
    """An IP address in canonical form, or a DNS name in ASCII (IDNA) without a trailing dot."""
    name = raw.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    host = name.rstrip(".")
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise CertError(f"{raw!r} is not a valid host name or IP address") from None
    labels = ascii_host.split(".")
    if labels and labels[0] == "*" and len(labels) > 2:
        labels = labels[1:]  # a wildcard for one level of subdomains, e.g. *.example.org
    if len(ascii_host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise CertError(f"{raw!r} is not a valid host name or IP address")
    return ascii_host.lower()


def _general_names(names: Sequence[str]) -> list[x509.GeneralName]:
    general: list[x509.GeneralName] = []
    for name in names:
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            general.append(x509.DNSName(name))
    return general


# --- certificates -------------------------------------------------------------------------------


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """ECDSA keys sign: handshakes (both), and certificates and CRLs (the CA only)."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(common_name: str | None = None) -> Issued:
    """A new ECDSA P-256 CA (CA:TRUE, pathlen 0, keyCertSign), valid CA_DAYS."""
    key = ec.generate_private_key(ec.SECP256R1())
    # A random suffix keeps two tlschat CAs on one host from having the same issuer name.
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tlschat"),
            x509.NameAttribute(
                NameOID.COMMON_NAME, common_name or f"tlschat CA {secrets.token_hex(4)}"
            ),
        ]
    )
    now = _now()
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def make_server_cert(ca: Issued, names: Sequence[str], days: int = SERVER_DAYS) -> Issued:
    """A new ECDSA P-256 server certificate signed by `ca` for `names` (already normalised),
    valid for `days` (never past the CA)."""
    if not names:
        raise CertError("a server certificate needs at least one name")
    if not 1 <= days <= SERVER_DAYS:
        raise CertError(f"a server certificate lasts 1 to {SERVER_DAYS} days, not {days}")
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    now = _now()
    not_after = min(now + datetime.timedelta(days=days), ca.cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_general_names(names)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(cert, key)


# --- files --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentFiles:
    """What write_deployment() / ensure_server_cert() wrote."""

    ca_cert: Path
    """Public copy of the CA certificate, for clients' `--cafile`."""
    ca_key: Path
    """The CA's private key, in its own directory: keep it offline."""
    server_cert: Path
    """The server certificate followed by the CA (the chain `serve --cert` presents)."""
    server_key: Path
    fingerprint: str
    """SHA-256 fingerprint of the server certificate."""
    names: tuple[str, ...]

    def describe(self) -> list[tuple[str, Path | str]]:
        """(label, value) lines for the user, e.g. `gen-certs` output."""
        return [
            ("CA certificate (for clients: --cafile)", self.ca_cert),
            ("CA key (keep it offline)", self.ca_key),
            ("server certificate (serve --cert)", self.server_cert),
            ("server key (serve --key)", self.server_key),
            ("server names", ", ".join(self.names)),
            ("server fingerprint (SHA-256)", self.fingerprint),
        ]


def _layout(folder: Path) -> tuple[Path, Path, Path, Path, Path]:
    """(ca.pem, ca/ca.pem, ca/ca.key, server.pem, server.key) under `folder`."""
    return (
        folder / "ca.pem",
        folder / "ca" / "ca.pem",
        folder / "ca" / "ca.key",
        folder / "server.pem",
        folder / "server.key",
    )


def _write(path: Path, data: bytes, *, secret: bool, replace: bool) -> None:
    """Write atomically: a temporary file in the same directory, fsync, then rename.

    Secret files are created 0600 from the start. With replace=False an existing file is never
    overwritten, even by a concurrent writer (os.link fails if the name exists).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o600 if secret else 0o644)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise CertError(f"{path} already exists; not overwriting it") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _mkdir(path: Path, mode: int) -> None:
    try:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
    except OSError as exc:
        raise CertError(f"cannot create directory {path}: {exc.strerror}") from None
    if not path.is_dir():
        raise CertError(f"{path} is not a directory")


def _generate(
    folder: Path, names: list[str], *, replace_keys: bool, days: int = SERVER_DAYS
) -> DeploymentFiles:
    ca_public, ca_cert, ca_key, server_cert, server_key = _layout(folder)
    ca = make_ca()
    server = make_server_cert(ca, names, days)
    _mkdir(folder, 0o700)
    _mkdir(ca_key.parent, 0o700)
    try:
        # Keys before certificates: a server.pem never exists without its server.key.
        _write(ca_key, ca.key_pem, secret=True, replace=replace_keys)
        _write(ca_cert, ca.cert_pem, secret=False, replace=True)
        _write(ca_public, ca.cert_pem, secret=False, replace=True)
        _write(server_key, server.key_pem, secret=True, replace=replace_keys)
        _write(server_cert, server.cert_pem + ca.cert_pem, secret=False, replace=True)
    except OSError as exc:
        where = Path(exc.filename).parent if exc.filename else folder
        raise CertError(f"cannot write to {where}: {exc.strerror}") from None
    return DeploymentFiles(
        ca_cert=ca_public,
        ca_key=ca_key,
        server_cert=server_cert,
        server_key=server_key,
        fingerprint=server.fingerprint,
        names=tuple(names),
    )


def ensure_server_cert(data_dir: Path, extra_names: Sequence[str] = ()) -> tuple[Path, Path]:
    """(server.pem, server.key) under DATA/tls, generating a CA and a certificate if missing.

    For `tlschat serve` without `--cert`: an existing pair is returned untouched (its names are
    not compared with `extra_names`). Print `tlschat.tls.fingerprint_file(cert)` for the user.
    """
    folder = data_dir / "tls"
    _, _, _, server_cert, server_key = _layout(folder)
    if server_cert.exists() and server_key.exists():
        try:
            expired = cert_expiry(server_cert) <= _now()
        except (OSError, ValueError):
            expired = False  # unreadable: serve refuses it with its own clear line
        if not expired:
            return server_cert, server_key
        # A generated certificate that expired is made again (PRODUCT.md "Operating it"): the
        # fingerprint changes, so trust-on-first-use clients are asked again.
        files = _generate(folder, san_names(extra_names), replace_keys=True)
        return files.server_cert, files.server_key
    if server_cert.exists():
        raise CertError(f"{server_cert} exists without {server_key}; remove it or pass --key")
    files = _generate(folder, san_names(extra_names), replace_keys=True)
    return files.server_cert, files.server_key


def cert_expiry(pem_path: Path) -> datetime.datetime:
    """When the first certificate in a PEM file stops being valid (UTC)."""
    cert = x509.load_pem_x509_certificate(pem_path.read_bytes())
    return cert.not_valid_after_utc


def write_deployment(
    out_dir: Path, names: Sequence[str], *, days: int = SERVER_DAYS
) -> DeploymentFiles:
    """A new CA and server certificate for a real deployment (`tlschat gen-certs`), the server
    certificate valid for `days` (825 by default; 90 meets Mozilla's "modern" profile, at the
    cost of a new fingerprint for trust-on-first-use clients at each renewal).

    Writes out_dir/ca/ca.pem and ca/ca.key (the CA, kept apart), out_dir/server.pem (leaf then
    CA), out_dir/server.key and out_dir/ca.pem (public copy for clients). Never overwrites a
    key: raise CertError if server.key or ca/ca.key already exists.
    """
    all_names = san_names(names)
    _, _, ca_key, _, server_key = _layout(out_dir)
    for existing in (server_key, ca_key):
        if existing.exists():
            raise CertError(f"{existing} already exists; not overwriting it")
    return _generate(out_dir, all_names, replace_keys=False, days=days)
