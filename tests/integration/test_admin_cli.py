"""`tlschat admin`, `trust`, `forget` and the headless exit codes (PRODUCT.md "Command line"):
0 ok, 2 usage, 3 authentication, 4 TLS trust, 5 connection, 6 refused by the server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from tests.integration.helpers_rules import Dialer
from tests.integration.test_headless import HOST, assert_one_clean_line, free_port, tlschat

from tlschat import tls
from tlschat.client.known_hosts import KnownHosts

PASSWORD = "root password here"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    values = dict(os.environ)
    values["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    values["HOME"] = str(tmp_path / "home")
    values["ROOT_PW"] = PASSWORD
    values["NEW_PW"] = "dave's new password"
    values.pop("SSLKEYLOGFILE", None)
    return values


@pytest.fixture
async def admin_server(start_server: Any) -> Any:
    return await start_server(admin=("root",), registration="closed")


async def admin(server: Any, cert_files: Any, env: dict[str, str], *args: str) -> Any:
    return await tlschat(
        "admin", f"{HOST}:{server.port}", "root", *args, "--cafile", str(cert_files.ca),
        "--password-env", "ROOT_PW", env=env,
    )  # fmt: skip


async def test_admin_commands(
    admin_server: Any, cert_files: Any, env: dict[str, str], dial: Dialer, tmp_path: Path
) -> None:
    server = admin_server
    # `register` with the new password from a variable; closed registration refuses others
    code, out, err = await admin(
        server, cert_files, env, "register", "dave", "--new-password-env", "NEW_PW"
    )
    assert (code, out) == (0, "ok\n"), err
    dave = await dial.open(server, "dave", env["NEW_PW"])
    alice = await dial.open(server, "alice")
    await alice.request({"type": "create", "room": "Pub", "public": True})
    await dave.request({"type": "join", "room": "Pub"})

    code, out, err = await admin(server, cert_files, env, "users")
    assert code == 0, err
    assert "dave\tonline" in out.splitlines()
    assert "alice\tonline" in out.splitlines()

    code, out, err = await admin(server, cert_files, env, "kick", "#Pub", "dave", "--reason", "x")
    assert code == 0, err
    left = await dave.recv_type("left")
    assert (left["by"], left["reason"]) == ("root", "x")

    code, _, err = await admin(server, cert_files, env, "ban", "dave", "--reason", "spam")
    assert code == 0, err
    assert (await dave.recv_type("bye"))["reason"] == "spam"
    # a banned user's headless command: exit 3 (authentication)
    code, _, err = await tlschat(
        "send", f"{HOST}:{server.port}", "dave", "--to", "@alice", "--cafile",
        str(cert_files.ca), "--password-env", "NEW_PW", "hi", env=env,
    )  # fmt: skip
    assert code == 3
    assert assert_one_clean_line(err).startswith("tlschat: banned: ")
    code, _, err = await admin(server, cert_files, env, "unban", "dave")
    assert code == 0, err
    code, _, err = await tlschat(
        "send", f"{HOST}:{server.port}", "dave", "--to", "@alice", "--cafile",
        str(cert_files.ca), "--password-env", "NEW_PW", "back", env=env,
    )  # fmt: skip
    assert code == 0, err

    # refused by the server: 6 (an administrator cannot be banned)
    code, _, err = await admin(server, cert_files, env, "ban", "root")
    assert code == 6
    assert assert_one_clean_line(err).startswith("tlschat: forbidden: ")
    # password from a file
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    code, out, err = await tlschat(
        "admin", f"{HOST}:{server.port}", "root", "users", "--cafile", str(cert_files.ca),
        "--password-file", str(secret), env=env,
    )  # fmt: skip
    assert code == 0, err


async def test_admin_exit_codes(
    admin_server: Any, cert_files: Any, env: dict[str, str], dial: Dialer
) -> None:
    server = admin_server
    where = f"{HOST}:{server.port}"
    ca = str(cert_files.ca)
    # 2: usage (wrong number of arguments, unknown action, malformed address)
    code, _, err = await tlschat("admin", where, "root", "ban", env=env)
    assert code == 2
    assert_one_clean_line(err)
    code, _, err = await tlschat("admin", where, "root", "explode", env=env)
    assert code == 2
    code, _, err = await tlschat("admin", "nohost:", "root", "users", env=env)
    assert code == 2
    await dial.open(server, "root", PASSWORD)  # root registers itself (allowed when closed)
    # 3: authentication
    code, _, err = await tlschat(
        "admin", where, "root", "users", "--cafile", ca, "--password-env", "NEW_PW", env=env
    )
    assert code == 3
    assert "auth_failed" in assert_one_clean_line(err)
    # 6: a logged-in non-administrator
    code, _, err = await tlschat("admin", where, "gus", "users", "--cafile", ca, env=env)
    assert code == 6
    assert "not an administrator" in assert_one_clean_line(err)
    # 4: TLS trust (no --cafile, nothing pinned)
    code, _, err = await tlschat(
        "admin", where, "root", "users", "--password-env", "ROOT_PW", env=env
    )
    assert code == 4
    assert "not trusted" in assert_one_clean_line(err)
    # 5: connection
    code, _, err = await tlschat(
        "admin", f"{HOST}:{free_port()}", "root", "users", "--cafile", ca, env=env
    )
    assert code == 5
    assert "cannot connect" in assert_one_clean_line(err)
    # and `send` / `tail` share them
    code, _, err = await tlschat(
        "send", f"{HOST}:{free_port()}", "a", "--to", "@b", "--cafile", ca, "x", env=env
    )
    assert code == 5
    code, _, err = await tlschat("tail", f"{HOST}:{free_port()}", "a", "--cafile", ca, env=env)
    assert code == 5


async def test_trust_and_forget(server: Any, cert_files: Any, env: dict[str, str]) -> None:
    where = f"{HOST}:{server.port}"
    known = KnownHosts(Path(env["XDG_CONFIG_HOME"]) / "tlschat" / "known_hosts")
    real = tls.fingerprint_file(cert_files.cert)
    wrong = ":".join(["AB"] * 32)
    # a wrong expected fingerprint: 4, nothing pinned
    code, _, err = await tlschat("trust", where, "--fingerprint", wrong, env=env)
    assert code == 4
    assert_one_clean_line(err)
    assert known.lookup(HOST, server.port) is None
    code, _, err = await tlschat("trust", where, "--fingerprint", "not-one", env=env)
    assert code == 2
    # untrusted until pinned: send exits 4
    code, _, _ = await tlschat("send", where, "alice", "--to", "@alice", "hi", env=env)
    assert code == 4
    code, out, err = await tlschat("trust", where, "--fingerprint", real.lower(), env=env)
    assert code == 0, err
    assert real in out
    assert known.lookup(HOST, server.port) == real
    code, _, err = await tlschat("send", where, "alice", "--to", "@alice", "hi", env=env)
    assert code == 0, err
    code, out, _ = await tlschat("forget", where, env=env)
    assert code == 0
    assert "forgotten" in out
    assert known.lookup(HOST, server.port) is None
    code, _, _ = await tlschat("send", where, "alice", "--to", "@alice", "hi", env=env)
    assert code == 4
    # without --fingerprint: whatever the server presents now is pinned (and printed)
    code, out, err = await tlschat("trust", where, env=env)
    assert code == 0, err
    assert known.lookup(HOST, server.port) == real
    # an unreachable server: 5
    code, _, _ = await tlschat("trust", f"{HOST}:{free_port()}", env=env)
    assert code == 5


async def test_admin_takes_a_server_list_and_trust_one_address(
    admin_server: Any, cert_files: Any, env: dict[str, str], dial: Dialer
) -> None:
    server = admin_server
    await dial.open(server, "root", PASSWORD)
    code, out, err = await tlschat(
        "admin", f"{HOST}:{free_port()},{HOST}:{server.port}", "root", "users",
        "--cafile", str(cert_files.ca), "--password-env", "ROOT_PW", env=env,
    )  # fmt: skip
    assert code == 0, err
    assert "root\tonline" in out.splitlines()
    # A pin is per address: `trust` refuses a list rather than read it as something else.
    code, _, err = await tlschat("trust", f"{HOST}:{server.port},{HOST}:1", env=env)
    assert code == 2
    assert "one address only" in assert_one_clean_line(err)
