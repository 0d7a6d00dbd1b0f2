"""`tlschat serve --redis`: the daemon's rules work through a RedisHub over a real redis-server,
and a node without Redis answers `unavailable` instead of acknowledging a message."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import ServerFactory
from tests.redisd import RedisServer
from tests.wire import Wire

from tlschat.config import ConfigError, build_config, load_env
from tlschat.server.redis_hub import RedisHub


async def until(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.folder.mkdir()
    server.start()
    yield server
    server.stop()


def test_the_redis_url_comes_from_flags_toml_or_environment() -> None:
    assert build_config({}).redis is None
    assert build_config({"redis": "redis://10.0.0.5:6379/0"}).redis == "redis://10.0.0.5:6379/0"
    env = load_env({"TLSCHAT_REDIS": "unix:///run/redis.sock"})
    assert build_config(env).redis == "unix:///run/redis.sock"
    assert build_config({"redis": ""}).redis is None
    with pytest.raises(ConfigError, match="--redis"):
        build_config({"redis": "10.0.0.5:6379"})


async def test_a_node_with_redis_delivers_and_refuses_while_redis_is_away(
    start_server: ServerFactory, redis_server: RedisServer, client_ctx: ssl.SSLContext
) -> None:
    server = await start_server(redis=redis_server.url)
    assert isinstance(server.hub, RedisHub)
    wires: list[Wire] = []

    async def login(nick: str) -> Wire:
        wire = await Wire.open(server.port, client_ctx)
        wires.append(wire)
        welcome = await wire.hello(nick)
        assert welcome["type"] == "welcome"
        return wire

    try:
        alice = await login("alice")
        bob = await login("bob")
        await alice.recv_match(type="presence", nick="bob", online=True)
        echo = await alice.request({"type": "send", "to": "@bob", "text": "hi", "ref": "m1"})
        assert echo["type"] == "message"
        got: dict[str, Any] = await bob.recv_type("message")
        assert got["id"] == echo["id"]
        redis_server.stop()
        hub = server.hub
        await until(lambda: not hub.connected)
        refused = await alice.request({"type": "send", "to": "@bob", "text": "lost?", "ref": "m2"})
        assert (refused["type"], refused["code"]) == ("error", "unavailable")
        bob.backlog = [f for f in bob.backlog if f["type"] != "presence"]
        await bob.no_frame(0.2)
        redis_server.start()
        await until(lambda: hub.connected)
        again = await alice.request({"type": "send", "to": "@bob", "text": "back", "ref": "m3"})
        assert again["type"] == "message"
        assert again["id"] > echo["id"]
        assert (await bob.recv_type("message"))["text"] == "back"
    finally:
        for wire in wires:
            await wire.close()
