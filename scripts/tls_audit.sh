#!/usr/bin/env bash
# TLS audit of tlschat (docs/encryption.md): sslyze against Mozilla's "modern" profile, then an
# `openssl s_client` matrix (TLS 1.2/1.1/1.0, other groups, CCM refused; bad names refused).
#
#   scripts/tls_audit.sh                                  a fresh local server (what CI runs)
#   scripts/tls_audit.sh --target HOST:PORT --cafile CA [--name NAME]   your running server
#
# Exit status 0 only if sslyze reports "Compliant" and every row of the matrix passes.
# sslyze lives in its own virtual environment (.venv-sslyze, or $SSLYZE_VENV): it pins its own
# `cryptography` and is AGPL-licensed, so it is never a dependency of tlschat.
set -euo pipefail
cd "$(dirname "$0")/.."

SSLYZE_VERSION=${SSLYZE_VERSION:-6.3.1}
SSLYZE_VENV=${SSLYZE_VENV:-.venv-sslyze}
TLSCHAT=${TLSCHAT:-.venv/bin/tlschat}
PY=${PYTHON:-python3}

target="" cafile="" name="localhost"
while [ $# -gt 0 ]; do
    case "$1" in
        --target) target=$2; shift 2 ;;
        --cafile) cafile=$2; shift 2 ;;
        --name) name=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "tls_audit: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -n "$target" ] && [ -z "$cafile" ]; then
    echo "tls_audit: --target needs --cafile (the CA that signed the server's certificate)" >&2
    exit 2
fi
command -v openssl >/dev/null || { echo "tls_audit: openssl is not installed" >&2; exit 2; }

work=$(mktemp -d)
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# --- sslyze, in its own virtual environment ------------------------------------------------------

# (Captured first: `| grep -q` could end the pipe early and fail it under pipefail.)
sslyze_help=$("$SSLYZE_VENV/bin/python" -m sslyze --help 2>/dev/null || true)
if ! grep -q "SSLyze version $SSLYZE_VERSION" <<<"$sslyze_help"; then
    echo "== installing sslyze $SSLYZE_VERSION into $SSLYZE_VENV"
    "$PY" -m venv "$SSLYZE_VENV"
    "$SSLYZE_VENV/bin/python" -m pip install -q --disable-pip-version-check "sslyze==$SSLYZE_VERSION"
fi

# --- a fresh server -----------------------------------------------------------------------------

if [ -z "$target" ]; then
    [ -x "$TLSCHAT" ] || { echo "tls_audit: $TLSCHAT not found; run scripts/test.sh first" >&2; exit 2; }
    echo "== certificates: 'tlschat gen-certs --days 90' (Mozilla's modern profile: at most 90 days)"
    "$TLSCHAT" gen-certs --out "$work/certs" --name localhost --days 90 >/dev/null
    cp "$work/certs/server.pem" "$work/audit.pem"
    cp "$work/certs/server.key" "$work/audit.key"
    cafile=$work/certs/ca.pem

    echo "== starting tlschat serve on 127.0.0.1, port 0"
    "$TLSCHAT" serve --host 127.0.0.1 --port 0 --cert "$work/audit.pem" --key "$work/audit.key" \
        --data-dir "$work/data" --log-level WARNING 2>"$work/serve.log" &
    server_pid=$!
    port=""
    for _ in $(seq 300); do
        port=$(sed -n 's/.*tlschat [^ ]* listening on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$work/serve.log")
        [ -n "$port" ] && break
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        echo "tls_audit: the server did not start:" >&2
        cat "$work/serve.log" >&2
        exit 1
    fi
    grep -E 'listening on' "$work/serve.log" || true
    target=127.0.0.1:$port
fi

failures=0

# --- sslyze: Mozilla "modern" --------------------------------------------------------------------

echo "== sslyze --mozilla_config=modern $target (SNI $name, CA $cafile)"
set +e
"$SSLYZE_VENV/bin/python" -m sslyze --mozilla_config=modern --certinfo_ca_file "$cafile" \
    --sni "$name" "$target" >"$work/sslyze.txt" 2>&1
sslyze_status=$?
set -e
sed -n '/COMPLIANCE AGAINST/,$p' "$work/sslyze.txt"
# sslyze exits 0 also when it could not connect at all, so the verdict line is required too.
if [ "$sslyze_status" -ne 0 ] || ! grep -q ": OK - Compliant" "$work/sslyze.txt"; then
    echo "FAIL  sslyze: not compliant with Mozilla's modern profile (exit $sslyze_status). Full output:"
    cat "$work/sslyze.txt"
    failures=$((failures + 1))
else
    echo "PASS  sslyze: compliant with Mozilla's modern profile"
fi

# --- openssl s_client matrix ---------------------------------------------------------------------

s_client() {  # s_client NAME CAFILE ARGS... : output in $work/probe.txt, exit status returned
    local sni=$1 ca=$2
    shift 2
    timeout 30 openssl s_client -connect "$target" -servername "$sni" -verify_hostname "$sni" \
        -CAfile "$ca" -verify_return_error -alpn tlschat/1 -msg "$@" \
        </dev/null >"$work/probe.txt" 2>&1
}
report() {  # report OK|NO TEXT
    if [ "$1" = OK ]; then
        echo "PASS  $2"
    else
        echo "FAIL  $2"
        grep -vE '^ {4}' "$work/probe.txt" | head -20 | sed 's/^/      | /'
        failures=$((failures + 1))
    fi
}
expect_accepted() {  # expect_accepted TEXT ARGS... : TLS 1.3 with an allowed suite and ALPN tlschat/1
    local text=$1
    shift
    if s_client "$name" "$cafile" "$@" &&
        grep -qE '^New, TLSv1\.3, Cipher is TLS_(AES_128_GCM_SHA256|AES_256_GCM_SHA384|CHACHA20_POLY1305_SHA256)$' "$work/probe.txt" &&
        grep -q '^ALPN protocol: tlschat/1$' "$work/probe.txt" &&
        grep -q 'Verify return code: 0 (ok)' "$work/probe.txt"; then
        report OK "$text: $(sed -n 's/^New, \(.*\)$/\1/p' "$work/probe.txt"); $(sed -n 's/^Server Temp Key: //p' "$work/probe.txt")"
    else
        report NO "$text"
    fi
}
expect_refused() {  # expect_refused TEXT HELLO_VERSION ARGS... : ClientHello sent, no ServerHello
    local text=$1 version=$2
    shift 2
    if s_client "$name" "$cafile" "$@"; then
        report NO "$text: the handshake succeeded"
    elif ! grep -qE "^>>> TLS ${version//./\\.}, Handshake .*, ClientHello$" "$work/probe.txt"; then
        # Without this check, an openssl that cannot offer the version would pass the row.
        report NO "$text: this openssl did not send a TLS $version ClientHello"
    elif grep -qE '^<<< .*, ServerHello$' "$work/probe.txt"; then
        report NO "$text: the server answered with a ServerHello"
    else
        report OK "$text (ClientHello sent, no ServerHello)"
    fi
}
expect_unverified() {  # expect_unverified TEXT NAME CAFILE PATTERN
    if s_client "$2" "$3"; then
        report NO "$1: verification passed"
    elif grep -q "$4" "$work/probe.txt"; then
        report OK "$1 ($(grep -o "$4" "$work/probe.txt" | head -1))"
    else
        report NO "$1: failed, but not with '$4'"
    fi
}

echo "== openssl s_client matrix against $target ($(openssl version))"
old=(-cipher 'DEFAULT@SECLEVEL=0')  # lets OpenSSL 3 offer TLS 1.0/1.1 at all
expect_accepted "default handshake"
for suite in TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256; do
    expect_accepted "suite $suite" -ciphersuites "$suite"
done
for group in X25519 P-256 P-384; do
    expect_accepted "group $group" -groups "$group"
done
expect_refused "TLS 1.2 refused" 1.2 -tls1_2
expect_refused "TLS 1.1 refused" 1.1 -tls1_1 "${old[@]}"
expect_refused "TLS 1.0 refused" 1.0 -tls1 "${old[@]}"
for group in ffdhe2048 X448 P-521; do
    expect_refused "group $group refused" 1.3 -groups "$group"
done
for suite in TLS_AES_128_CCM_SHA256 TLS_AES_128_CCM_8_SHA256; do
    expect_refused "suite $suite refused" 1.3 -ciphersuites "$suite"
done
expect_unverified "wrong host name fails verification" wrong.example "$cafile" "hostname mismatch"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=other CA" -days 1 \
    -keyout "$work/other.key" -out "$work/other-ca.pem" 2>/dev/null
expect_unverified "another CA fails verification" "$name" "$work/other-ca.pem" "verify error:num=[0-9]*:[a-z -]*"

if [ "$failures" -ne 0 ]; then
    echo "== TLS audit of $target: $failures FAILED"
    exit 1
fi
echo "== TLS audit of $target: all checks passed"
