"""TLS settings of PROTOCOL.md "Transport": the only place an SSLContext is built."""

from __future__ import annotations

import ctypes
import hashlib
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from tlschat.protocol import ALPN, TlsChatError

TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
"""The TLS 1.3 cipher suites PROTOCOL.md allows (no CCM)."""

TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!PSK:!aNULL:!SHA1"
"""With `--tls-min 1.2`: ECDHE key exchange and AEAD ciphers only (no RSA key exchange, no CBC)."""

GROUPS = ("X25519", "P-256", "P-384")
"""The key-exchange groups PROTOCOL.md allows, in order of preference."""

_TLS_VERSIONS = {"1.3": ssl.TLSVersion.TLSv1_3, "1.2": ssl.TLSVersion.TLSv1_2}

# ssl.h: SSL_CTX_set1_groups_list(ctx, s) is SSL_CTX_ctrl(ctx, SSL_CTRL_SET_GROUPS_LIST, 0, s).
_SSL_CTRL_SET_GROUPS_LIST = 92
# ssl.h: SSL_CTX_set_mode(ctx, m) is SSL_CTX_ctrl(ctx, SSL_CTRL_MODE, m, NULL).
_SSL_CTRL_MODE = 33
_SSL_MODE_RELEASE_BUFFERS = 0x10


class TlsConfigError(TlsChatError):
    """A certificate, key or CA file that cannot be used; the message is one line naming it."""


# --- contexts -----------------------------------------------------------------------------------


def server_context(
    certfile: Path,
    keyfile: Path,
    *,
    tls_min: str = "1.3",
    client_ca: Path | None = None,
    keylog: Path | None = None,
) -> ssl.SSLContext:
    """The listener's context: restricted versions, suites and groups, ALPN `tlschat/1`.

    `client_ca` turns on mutual TLS: only clients with a certificate from that CA complete the
    handshake (read the nick with `peer_common_name()`). `keylog` writes TLS secrets (debugging
    only). Raise TlsConfigError if a file cannot be used.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _restrict(ctx, tls_min)
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    # An idle connection then holds no OpenSSL record buffers (about 34 KiB each otherwise):
    # most of a chat server's connections are idle most of the time.
    _Native.get().release_buffers(ctx)
    _load_cert_chain(ctx, certfile, keyfile)
    if client_ca is not None:
        _load_ca(ctx, client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    if keylog is not None:
        _set_keylog(ctx, keylog)
    return ctx


def client_context(
    *,
    cafile: Path | None = None,
    verify: bool = True,
    tls_min: str = "1.3",
    certfile: Path | None = None,
    keyfile: Path | None = None,
) -> ssl.SSLContext:
    """A client context that offers ALPN `tlschat/1` and the same versions, suites and groups.

    It trusts `cafile`, or the system trust store when None. `verify=False` checks neither the
    chain nor the host name: only for trust on first use, where the caller must then compare
    `fingerprint()` of the peer certificate with the pinned one. `certfile`/`keyfile` present a
    client certificate (mutual TLS). SSLKEYLOGFILE in the environment is honoured.
    """
    if (certfile is None) != (keyfile is None):
        raise TlsConfigError("a client certificate needs both certfile and keyfile")
    if cafile is not None:
        _check_ca(cafile)
    try:
        # create_default_context also applies SSLKEYLOGFILE: keep it as the base for that reason.
        # With a cafile it trusts that file only; without, the system trust store.
        ctx = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=None if cafile is None else str(cafile)
        )
    except (ssl.SSLError, OSError) as exc:
        raise TlsConfigError(f"cannot use CA file {cafile}: {_reason(exc)}") from None
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    _restrict(ctx, tls_min)
    if certfile is not None and keyfile is not None:
        _load_cert_chain(ctx, certfile, keyfile)
    return ctx


def _restrict(ctx: ssl.SSLContext, tls_min: str) -> None:
    """Apply the PROTOCOL.md "Transport" rules that both sides share."""
    version = _TLS_VERSIONS.get(tls_min)
    if version is None:
        raise TlsConfigError(f"tls_min must be 1.3 or 1.2, not {tls_min!r}")
    ctx.minimum_version = version
    ctx.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    # set_ciphers() governs TLS 1.2 only; TLS 1.3 suites need _Native.set_tls13_suites().
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.set_alpn_protocols([ALPN])
    native = _Native.get()
    native.set_tls13_suites(ctx, TLS13_SUITES)
    native.set_groups(ctx, GROUPS)
    _check_ciphers(ctx)


def _check_ciphers(ctx: ssl.SSLContext) -> None:
    """Refuse a context whose cipher list is not exactly what we asked for."""
    ciphers = ctx.get_ciphers()
    tls13 = {c["name"] for c in ciphers if c["protocol"] == "TLSv1.3"}
    if tls13 != set(TLS13_SUITES):
        raise TlsConfigError(f"TLS 1.3 suites did not take effect: {sorted(tls13)}")
    for cipher in ciphers:
        if cipher["protocol"] == "TLSv1.3":
            continue
        if not cipher["aead"] or cipher["kea"] != "kx-ecdhe":
            raise TlsConfigError(f"unexpected TLS 1.2 cipher {cipher['name']}")


# --- OpenSSL calls Python 3.11 does not expose ---------------------------------------------------


class _Native:
    """SSL_CTX_set1_groups_list and SSL_CTX_set_ciphersuites through ctypes.

    Python 3.11's ssl module cannot set the key-exchange groups (`set_ecdh_curve()` keeps ONE
    curve, so X25519, P-256 and P-384 cannot all be offered) nor the TLS 1.3 suites (OpenSSL's
    default list happens to be right today, but PROTOCOL.md fixes it). So we call OpenSSL on the
    SSL_CTX behind the SSLContext:

    - the functions are looked up through the `_ssl` extension's own handle, so they come from
      the very libssl that owns the SSL_CTX, never from another copy on the system;
    - the SSL_CTX pointer is the first field after PyObject_HEAD of CPython's PySSLContext;
      before each use we check that OpenSSL reports the same options as `SSLContext.options`;
    - each setter's return value is checked (OpenSSL returns 0 for an unknown name);
    - once per process, a self-test restricts a probe client context and reads its ClientHello
      from a memory BIO: it must offer exactly GROUPS and TLS13_SUITES on the wire.

    OpenSSL has no getter for a context's configured groups (SSL_get1_groups returns the
    peer's), hence the ClientHello check. Any failure raises TlsConfigError rather than
    running with OpenSSL's wider defaults.
    """

    _instance: _Native | None = None

    def __init__(self) -> None:
        import _ssl

        try:
            lib = ctypes.CDLL(_ssl.__file__)
            self._ctx_ctrl = _function(
                lib,
                "SSL_CTX_ctrl",
                ctypes.c_long,
                [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p],
            )
            self._set_suites = _function(
                lib, "SSL_CTX_set_ciphersuites", ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p]
            )
            self._get_options = _function(
                lib, "SSL_CTX_get_options", ctypes.c_uint64, [ctypes.c_void_p]
            )
        except (OSError, AttributeError) as exc:
            raise TlsConfigError(
                f"cannot reach the OpenSSL of the ssl module ({ssl.OPENSSL_VERSION}) "
                f"to restrict TLS groups: {exc}"
            ) from None

    @classmethod
    def get(cls) -> _Native:
        """The process-wide instance, self-tested on first use."""
        if cls._instance is None:
            native = cls()
            native._self_test()
            cls._instance = native
        return cls._instance

    def _ctx_pointer(self, ctx: ssl.SSLContext) -> int:
        pointer = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
        if not pointer or self._get_options(pointer) != ctx.options:
            raise TlsConfigError("cannot locate the OpenSSL context of an ssl.SSLContext")
        return pointer

    def set_tls13_suites(self, ctx: ssl.SSLContext, suites: tuple[str, ...]) -> None:
        if self._set_suites(self._ctx_pointer(ctx), ":".join(suites).encode()) != 1:
            raise TlsConfigError(f"OpenSSL refused the TLS 1.3 suites {':'.join(suites)}")

    def set_groups(self, ctx: ssl.SSLContext, groups: tuple[str, ...]) -> None:
        names = ctypes.c_char_p(":".join(groups).encode())
        pointer = ctypes.cast(names, ctypes.c_void_p)
        if self._ctx_ctrl(self._ctx_pointer(ctx), _SSL_CTRL_SET_GROUPS_LIST, 0, pointer) != 1:
            raise TlsConfigError(f"OpenSSL refused the key-exchange groups {':'.join(groups)}")

    def release_buffers(self, ctx: ssl.SSLContext) -> None:
        """SSL_MODE_RELEASE_BUFFERS: free a connection's read/write buffers while it is idle."""
        mode = self._ctx_ctrl(
            self._ctx_pointer(ctx), _SSL_CTRL_MODE, _SSL_MODE_RELEASE_BUFFERS, None
        )
        if not mode & _SSL_MODE_RELEASE_BUFFERS:
            raise TlsConfigError("OpenSSL refused SSL_MODE_RELEASE_BUFFERS")

    def _self_test(self) -> None:
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        probe.minimum_version = ssl.TLSVersion.TLSv1_3
        self.set_tls13_suites(probe, TLS13_SUITES)
        self.set_groups(probe, GROUPS)
        hello = client_hello(probe)
        if hello.groups != list(GROUPS) or hello.tls13_suites != list(TLS13_SUITES):
            raise TlsConfigError(
                f"restricting TLS groups/suites did not take effect with {ssl.OPENSSL_VERSION}: "
                f"offered groups {hello.groups}, suites {hello.tls13_suites}"
            )


def _function(lib: ctypes.CDLL, name: str, restype: Any, argtypes: list[Any]) -> Callable[..., Any]:
    func = getattr(lib, name)
    func.restype = restype
    func.argtypes = argtypes
    return func  # type: ignore[no-any-return]


# IANA code points (RFC 8446 4.2.7, B.4).
_GROUP_NAMES = {
    0x001D: "X25519",
    0x0017: "P-256",
    0x0018: "P-384",
    0x001E: "X448",
    0x0019: "P-521",
    0x0100: "ffdhe2048",
    0x0101: "ffdhe3072",
}
_TLS13_SUITE_NAMES = {
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0x1304: "TLS_AES_128_CCM_SHA256",
    0x1305: "TLS_AES_128_CCM_8_SHA256",
}


@dataclass(frozen=True)
class ClientHello:
    """What a client context offers on the wire (see client_hello())."""

    groups: list[str]
    """supported_groups, in order; unknown ones as `0xNNNN`."""
    tls13_suites: list[str]


def client_hello(ctx: ssl.SSLContext) -> ClientHello:
    """Start a handshake of `ctx` in memory and decode the groups and TLS 1.3 suites it offers."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_side=False, server_hostname="probe.invalid")
    try:
        conn.do_handshake()
    except ssl.SSLWantReadError:
        pass
    try:
        return _parse_client_hello(outgoing.read())
    except (IndexError, ValueError):
        raise TlsConfigError("could not decode the ClientHello OpenSSL produced") from None


def _parse_client_hello(data: bytes) -> ClientHello:
    # record header (5) + handshake header (4) + version (2) + random (32)
    if len(data) < 43 or data[0] != 22 or data[5] != 1:
        raise ValueError("not a ClientHello")
    pos = 43
    pos += 1 + data[pos]  # session id
    suites_len = int.from_bytes(data[pos : pos + 2], "big")
    suite_ids = [
        int.from_bytes(data[i : i + 2], "big") for i in range(pos + 2, pos + 2 + suites_len, 2)
    ]
    pos += 2 + suites_len
    pos += 1 + data[pos]  # compression methods
    end = pos + 2 + int.from_bytes(data[pos : pos + 2], "big")
    pos += 2
    groups: list[str] = []
    while pos + 4 <= end:
        ext_type = int.from_bytes(data[pos : pos + 2], "big")
        ext_len = int.from_bytes(data[pos + 2 : pos + 4], "big")
        body = data[pos + 4 : pos + 4 + ext_len]
        if ext_type == 10:  # supported_groups
            ids = [int.from_bytes(body[i : i + 2], "big") for i in range(2, len(body), 2)]
            groups = [_GROUP_NAMES.get(gid, f"0x{gid:04x}") for gid in ids]
        pos += 4 + ext_len
    suites = [_TLS13_SUITE_NAMES[sid] for sid in suite_ids if sid in _TLS13_SUITE_NAMES]
    return ClientHello(groups=groups, tls13_suites=suites)


# --- files --------------------------------------------------------------------------------------


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TlsConfigError(f"{what} file {path} does not exist") from None
    except IsADirectoryError:
        raise TlsConfigError(f"{what} file {path} is a directory") from None
    except OSError as exc:
        raise TlsConfigError(f"cannot read {what} file {path}: {exc.strerror}") from None


def _load_cert_chain(ctx: ssl.SSLContext, certfile: Path, keyfile: Path) -> None:
    """load_cert_chain, after checks that name the faulty file instead of an OpenSSL dump."""
    cert_pem = _read(certfile, "certificate")
    key_pem = _read(keyfile, "key")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise TlsConfigError(
            f"certificate file {certfile} holds no valid PEM certificate"
        ) from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise TlsConfigError(f"key file {keyfile} is encrypted; give an unencrypted key") from None
    except ValueError:
        raise TlsConfigError(f"key file {keyfile} holds no valid PEM private key") from None
    except UnsupportedAlgorithm:
        raise TlsConfigError(f"key file {keyfile} holds an unsupported private key") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, public) != cert.public_key().public_bytes(der, public):
        raise TlsConfigError(f"key file {keyfile} does not match certificate {certfile}")
    try:
        # The password callback stops OpenSSL from ever prompting on the terminal.
        ctx.load_cert_chain(str(certfile), str(keyfile), password=_no_password)
    except (ssl.SSLError, OSError) as exc:
        raise TlsConfigError(
            f"cannot use certificate {certfile} with key {keyfile}: {_reason(exc)}"
        ) from None


def _no_password() -> bytes:
    return b""


def _check_ca(cafile: Path) -> None:
    """Raise TlsConfigError naming `cafile` unless it holds at least one PEM certificate."""
    try:
        x509.load_pem_x509_certificates(_read(cafile, "CA"))
    except ValueError:
        raise TlsConfigError(f"CA file {cafile} holds no valid PEM certificate") from None


def _load_ca(ctx: ssl.SSLContext, cafile: Path) -> None:
    _check_ca(cafile)
    try:
        ctx.load_verify_locations(cafile=str(cafile))
    except (ssl.SSLError, OSError) as exc:
        raise TlsConfigError(f"cannot use CA file {cafile}: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    """A short cause for a one-line message: OpenSSL's reason code or the OS error text."""
    return str(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__)


def _set_keylog(ctx: ssl.SSLContext, keylog: Path) -> None:
    try:
        # TLS secrets: the file must be private before OpenSSL appends to it. fchmod also
        # tightens a file that already exists (OpenSSL would keep its mode).
        fd = os.open(keylog, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        ctx.keylog_filename = str(keylog)
    except OSError as exc:
        raise TlsConfigError(f"cannot write key log file {keylog}: {exc.strerror}") from None


# --- certificates and connections ---------------------------------------------------------------


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate as `AB:CD:...`, like `openssl x509 -fingerprint -sha256`."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def fingerprint_file(pem_path: Path) -> str:
    """fingerprint() of the first certificate in a PEM file (the leaf of a chain file)."""
    data = _read(pem_path, "certificate")
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise TlsConfigError(
            f"certificate file {pem_path} holds no valid PEM certificate"
        ) from None
    return fingerprint(cert.public_bytes(serialization.Encoding.DER))


@dataclass(frozen=True)
class TlsInfo:
    """What a finished handshake negotiated (for logs and the TUI status bar)."""

    version: str
    """E.g. `TLSv1.3`."""
    cipher: str
    """E.g. `TLS_AES_256_GCM_SHA384`."""
    alpn: str | None


SslConnection = ssl.SSLObject | ssl.SSLSocket
"""What `transport.get_extra_info("ssl_object")` returns (or a blocking TLS socket)."""


def tls_info(ssl_object: SslConnection) -> TlsInfo:
    """The version, cipher and ALPN protocol of a connection whose handshake is complete."""
    cipher = ssl_object.cipher()
    return TlsInfo(
        version=ssl_object.version() or "unknown",
        cipher=cipher[0] if cipher else "unknown",
        alpn=ssl_object.selected_alpn_protocol(),
    )


def peer_common_name(ssl_object: SslConnection) -> str | None:
    """The common name of the peer's certificate, or None without one (mutual TLS nick).

    Only meaningful when the context verified the peer (server_context with `client_ca`).
    """
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    try:
        cert = x509.load_der_x509_certificate(der)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        return None
    if not names:
        return None
    value = names[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")
