"""`--metrics HOST:PORT`: Prometheus text over real HTTP, counters that move with real traffic."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.integration.helpers_rules import PASSWORD, Dialer, drain_all, say

from tlschat.server.metrics import parse_address


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return await asyncio.to_thread(_scrape, port)


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_move_with_traffic(start_server: Any, dial: Dialer) -> None:
    server = await start_server(metrics="127.0.0.1:0")
    assert server.metrics is not None
    port = server.metrics.port
    before = await scrape(port)
    alice = await dial.open(server, "alice", PASSWORD)
    bob = await dial.open(server, "bob")
    carol = await dial.open(server, "carol")
    await alice.request({"type": "create", "room": "Pub", "public": True})
    await bob.request({"type": "join", "room": "Pub"})
    await carol.request({"type": "join", "room": "Pub"})
    await drain_all(alice, bob, carol)
    for n in range(5):
        assert (await say(alice, "#Pub", f"m{n}"))["type"] == "message"
    await alice.request({"type": "join", "room": "Nope"})  # an error: no_such_room
    await drain_all(alice, bob, carol)
    after = await scrape(port)

    def grew(name: str, by: float = 1, **labels: str) -> bool:
        return value(after, name, **labels) - value(before, name, **labels) >= by

    assert grew("tlschat_messages_stored_total", 5)
    assert grew("tlschat_messages_delivered_total", 15)  # echo + two members, five times
    assert grew("tlschat_fanout_deliveries_total", 10)
    assert grew("tlschat_bytes_received_total", 100)
    assert grew("tlschat_bytes_sent_total", 100)
    assert grew("tlschat_errors_total", 1, code="no_such_room")
    assert grew("tlschat_logins_total", 3)
    assert grew("tlschat_store_commit_seconds_count", 1)
    assert grew("tlschat_store_commit_batch_size_count", 1)
    assert grew("tlschat_store_commit_batch_size_sum", 5)
    assert value(after, "tlschat_sessions") == 3
    assert value(after, "tlschat_users_online") == 3
    assert value(after, "tlschat_connections", state="logged_in") == 3
    assert ("tlschat_event_loop_lag_seconds_count", ()) in after
    assert ("tlschat_rate_limit_refusals_total", ()) in after
    assert ("tlschat_slow_consumer_drops_total", ()) in after
    assert ("tlschat_upload_bytes_total", ()) in after


async def test_metrics_serve_only_on_the_address_given(start_server: Any) -> None:
    server = await start_server(metrics="127.0.0.1:0")
    assert server.metrics is not None
    bound = server.metrics._server.server_address
    assert bound[0] == "127.0.0.1"
    # Not on the chat port, and not another address of this host.
    others = [
        info[4][0]
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        if not info[4][0].startswith("127.")
    ]
    for addr in others[:1]:
        with pytest.raises((ConnectionRefusedError, TimeoutError)):
            socket.create_connection((addr, server.metrics.port), timeout=1).close()


async def test_no_metrics_unless_asked(start_server: Any) -> None:
    server = await start_server()
    assert server.metrics is None


@pytest.mark.parametrize("bad", ["nope", "host:", ":9700", "h:99999"])
def test_metrics_address_is_checked(bad: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address(bad)
