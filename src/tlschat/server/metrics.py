"""Prometheus metrics (`--metrics HOST:PORT`, PRODUCT.md "Operating it"), with prometheus-client.

The hot path only increments module-level counters (no labels but an error code, a bounded set);
what can be read off the live server (connections, sessions, users online) is read at scrape
time by `ServerCollector`, so it costs nothing between scrapes. Each `ChatServer` serves its own
`CollectorRegistry`: the process-wide counters plus its own gauges.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from threading import Thread
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from tlschat.server.daemon import ChatServer

log = logging.getLogger("tlschat.server.metrics")

# Not registered anywhere by themselves: `_Process` hands them to each server's registry.
MESSAGES_STORED = Counter(
    "tlschat_messages_stored", "Messages (and edits, deletions) stored.", registry=None
)
MESSAGES_DELIVERED = Counter(
    "tlschat_messages_delivered",
    "Message frames queued to sessions (every recipient session, echo included).",
    registry=None,
)
FANOUT = Counter(
    "tlschat_fanout_deliveries",
    "Frames queued to sessions by fan-out (messages and events to other users' sessions).",
    registry=None,
)
BYTES_IN = Counter("tlschat_bytes_received", "Bytes read from clients (after TLS).", registry=None)
BYTES_OUT = Counter("tlschat_bytes_sent", "Bytes written to clients (before TLS).", registry=None)
UPLOAD_BYTES = Counter(
    "tlschat_upload_bytes", "File bytes received in upload chunks.", registry=None
)
ERRORS = Counter(
    "tlschat_errors", "Error frames sent to clients, by code.", ["code"], registry=None
)
RATE_LIMITED = Counter(
    "tlschat_rate_limit_refusals", "Requests refused with rate_limited.", registry=None
)
SLOW_CONSUMERS = Counter(
    "tlschat_slow_consumer_drops",
    "Sessions dropped because their outgoing queue overflowed.",
    registry=None,
)
STALE_MESSAGES = Counter(
    "tlschat_stale_messages_dropped",
    "Message frames not queued because the session already had that id or a newer one (the "
    "replay after a hello overlapping messages released late by the cluster's stream order).",
    registry=None,
)
LOGINS = Counter("tlschat_logins", "Successful hello.", registry=None)
LOGIN_FAILURES = Counter(
    "tlschat_login_failures", "hello refused for a wrong password.", registry=None
)
COMMIT_SECONDS = Histogram(
    "tlschat_store_commit_seconds",
    "Time of one store transaction (a group commit), from BEGIN to COMMIT.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=None,
)
COMMIT_BATCH = Histogram(
    "tlschat_store_commit_batch_size",
    "Writes committed together in one store transaction.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
    registry=None,
)
LOOP_LAG = Histogram(
    "tlschat_event_loop_lag_seconds",
    "How late a timer set for every 0.5 s fires: the event loop's scheduling delay.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=None,
)
LOOP_LAG_LAST = Gauge(
    "tlschat_event_loop_lag_last_seconds", "The last event-loop lag measured.", registry=None
)

_PROCESS_METRICS: tuple[Any, ...] = (
    MESSAGES_STORED,
    MESSAGES_DELIVERED,
    FANOUT,
    BYTES_IN,
    BYTES_OUT,
    UPLOAD_BYTES,
    ERRORS,
    RATE_LIMITED,
    SLOW_CONSUMERS,
    STALE_MESSAGES,
    LOGINS,
    LOGIN_FAILURES,
    COMMIT_SECONDS,
    COMMIT_BATCH,
    LOOP_LAG,
    LOOP_LAG_LAST,
)


def error_sent(code: str) -> None:
    """Count an error frame (called by the connection layer for every `error` it queues)."""
    ERRORS.labels(code).inc()
    if code == "rate_limited":
        RATE_LIMITED.inc()


class _Process(Collector):
    def collect(self) -> Iterator[Any]:
        for metric in _PROCESS_METRICS:
            yield from metric.collect()


class ServerCollector(Collector):
    """Gauges read from one live server at scrape time."""

    def __init__(self, server: ChatServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Any]:
        server = self.server
        connections = GaugeMetricFamily(
            "tlschat_connections", "Open connections, by state.", labels=["state"]
        )
        for state, count in server.connection_states().items():
            connections.add_metric([state], count)
        yield connections
        yield GaugeMetricFamily(
            "tlschat_sessions", "Logged-in sessions.", value=sum(1 for _ in server.hub.sessions())
        )
        yield GaugeMetricFamily(
            "tlschat_users_online", "Users with at least one session.", value=len(server.hub.users)
        )
        if server.config.redis is not None:
            yield from _cluster_gauges(server)


def _cluster_gauges(server: ChatServer) -> Iterator[Any]:
    """With --redis: is Redis answering, and how many messages wait for another node."""
    from tlschat.server.redis_hub import RedisHub

    hub = server.hub
    if not isinstance(hub, RedisHub):
        return
    yield GaugeMetricFamily(
        "tlschat_cluster_redis_connected",
        "1 while Redis answers; 0 while messages are refused with unavailable.",
        value=1 if hub.connected else 0,
    )
    yield GaugeMetricFamily(
        "tlschat_cluster_messages_held",
        "Messages stored but held back until every live node's position has passed them.",
        value=hub.held(),
    )
    yield GaugeMetricFamily(
        "tlschat_cluster_position",
        "This node's stream position: every id it will still commit is above it.",
        value=hub.position(),
    )


def make_registry(server: ChatServer) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Process())
    registry.register(ServerCollector(server))
    return registry


def parse_address(value: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[ADDR]:PORT`); ValueError with a message otherwise."""
    text = value.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = text.rpartition(":")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise ValueError(f"--metrics wants HOST:PORT, not {value!r}")
    return host, int(port_text)


class MetricsServer:
    """The plain-HTTP endpoint on the one address given (never 0.0.0.0 unless asked)."""

    def __init__(self, registry: CollectorRegistry, address: str) -> None:
        self.registry = registry
        self.host, self.port = parse_address(address)
        self._server: Any = None
        self._thread: Thread | None = None

    def start(self) -> None:
        from prometheus_client import start_http_server

        self._server, self._thread = start_http_server(
            self.port, addr=self.host, registry=self.registry
        )
        self.port = self._server.server_address[1]
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


async def watch_loop_lag(interval: float = 0.5) -> None:
    """Sleep `interval` again and again; how late each wake-up is, is the loop's lag."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(interval)
        lag = max(0.0, loop.time() - start - interval)
        LOOP_LAG.observe(lag)
        LOOP_LAG_LAST.set(lag)


def observe_commit(seconds: float, size: int) -> None:
    """From the store's writer thread (prometheus-client's metrics are thread-safe)."""
    COMMIT_SECONDS.observe(seconds)
    COMMIT_BATCH.observe(size)


def now() -> float:
    return time.perf_counter()
