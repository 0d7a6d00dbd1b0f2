"""Several nodes against one: fan-out and direct messages on 1 node and on 3 (issue 15).

Starts a PostgreSQL and a Redis of its own (tests/pgserver.py, tests/redisd.py: temporary
directories, free ports, stopped by PID) and, for each topology, `tlschat serve` subprocesses on
a fresh database:

  1 node             --database (no Redis): the single-node baseline on the same store
  1 node + Redis     --database --redis: what the Redis hub costs one node by itself
  3 nodes            --database --redis, three processes; clients spread over them

Scenarios (each bounded in count and time):

  fanout   a public room of `--members` guests spread round-robin over the nodes; one member
           sends `--messages` with a window of 16; every member receives every message (its echo
           included). Server CPU per delivery = the daemons' utime+stime (/proc/PID/stat, all
           threads, summed over the cluster) / deliveries.
  latency  the same room, the same sender at a fixed `--rate` (messages/s): send-to-receipt
           latency over all members, p50/p99 (one process, one monotonic clock).
  dm       `--pairs` pairs ping-pong direct messages, the two of a pair on different nodes when
           there are several; CPU per delivery (each message reaches two sessions: echo and
           recipient) and the round trip p50/p99.

With `--pin`, the daemons, PostgreSQL and Redis run on core 0 and the load generator on core 1
(taskset / sched_setaffinity); on two cores the three nodes then share one, as the single node
has it alone: CPU per delivery is the comparable figure, throughput is not.

    python benchmarks/cluster.py --pin                       # ~1 minute
    python benchmarks/cluster.py --members 100 --messages 300 --pairs 20 --rounds 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from run import Client, make_certs, proc_cpu

from tlschat import tls

REPOSITORY = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on \S+:(\d+)")
HOST = "127.0.0.1"


@dataclass
class Topology:
    name: str
    nodes: int
    redis: bool


TOPOLOGIES = (
    Topology("1 node", 1, False),
    Topology("1 node + Redis", 1, True),
    Topology("3 nodes", 3, True),
)


# --- the servers ---------------------------------------------------------------------------------


class Node:
    def __init__(self, workdir: Path, certs: Path, flags: list[str], pin: bool) -> None:
        self.log = workdir / "stderr"
        workdir.mkdir(parents=True)
        cmd = [
            sys.executable, "-m", "tlschat", "serve", "--host", HOST, "--port", "0",
            "--data-dir", str(workdir / "data"), "--log-level", "WARNING",
            "--cert", str(certs / "server.pem"), "--key", str(certs / "server.key"),
            "--max-members", "1000", "--max-per-ip", "1000", "--max-unauth", "1000",
            "--max-unauth-per-ip", "1000", "--max-conns", "2000",
            "--rate-burst", "1000000", "--rate-per-sec", "1000000",
            "--max-queue", str(64 << 20), "--max-nick-failures", "100000",
            "--max-login-failures", "100000", "--max-registrations", "100000", *flags,
        ]  # fmt: skip
        if pin:
            cmd = ["taskset", "-c", "0", *cmd]
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        self.port = 0

    def wait_port(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            match = LISTENING.search(self.log.read_text())
            if match:
                self.port = int(match.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit(f"tlschat serve did not start:\n{self.log.read_text()[-2000:]}")

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Cluster:
    def __init__(
        self, topo: Topology, workdir: Path, certs: Path, dsn: str, redis: str, pin: bool
    ) -> None:
        flags = ["--database", dsn]
        if topo.redis:
            flags += ["--redis", redis]
        self.nodes = [
            Node(workdir / f"{topo.name.replace(' ', '_')}-{i}", certs, flags, pin)
            for i in range(topo.nodes)
        ]
        for node in self.nodes:
            node.wait_port()

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def cpu(self) -> float:
        return sum(node.cpu() for node in self.nodes)

    def quiesce(self, limit: float = 30.0) -> None:
        """Until the daemons use under 5 % of a core together for 0.5 s."""
        start = time.monotonic()
        last = self.cpu()
        while time.monotonic() - start < limit:
            time.sleep(0.5)
            now = self.cpu()
            if now - last <= 0.025:
                return
            last = now

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


# --- the load ------------------------------------------------------------------------------------


async def login(port: int, nick: str, ctx: ssl.SSLContext) -> Client:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(
        lambda: Client(nick), HOST, port, ssl=ctx, server_hostname="localhost"
    )
    await client.request({"type": "hello", "v": 1, "nick": nick, "ref": "h"}, b'"welcome"', 30)
    return client


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")


@dataclass
class Result:
    deliveries: int = 0
    cpu: float = 0.0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def us_per_delivery(self) -> float:
        return self.cpu / self.deliveries * 1e6 if self.deliveries else float("nan")


async def room_of(
    ports: list[int], members: int, ctx: ssl.SSLContext, tag: str
) -> tuple[list[Client], str]:
    clients = []
    for i in range(members):
        clients.append(await login(ports[i % len(ports)], f"{tag}{i}", ctx))
    room = f"{tag}room"
    await clients[0].request(
        {"type": "create", "room": room, "public": True, "ref": "c"}, b'"joined"', 30
    )
    for client in clients[1:]:
        await client.request({"type": "join", "room": room, "ref": "j"}, b'"joined"', 30)
    # Every node has seen every join once the last member's `members` reached the first.
    await asyncio.sleep(0.5)
    return clients, room


async def fanout(
    cluster: Cluster, ctx: ssl.SSLContext, members: int, messages: int, rate: float, tag: str
) -> tuple[Result, Result]:
    """(windowed fan-out: CPU per delivery; paced fan-out: latency)."""
    clients, room = await room_of(cluster.ports, members, ctx, tag)
    sender = clients[0]
    loop = asyncio.get_running_loop()
    received = 0
    expected = 0
    done = loop.create_future()
    latencies: list[float] = []
    send_next: Callable[[], None] = lambda: None  # noqa: E731

    def on_frame(client: Client, payload: bytes) -> None:
        nonlocal received
        if b'"type":"message"' not in payload:
            return
        frame = json.loads(payload)
        sent_at = int(frame["text"].split()[1])
        latencies.append((time.monotonic_ns() - sent_at) / 1e6)
        received += 1
        if client is sender:
            send_next()
        if received >= expected and not done.done():
            done.set_result(None)

    for client in clients:
        client.handler = on_frame

    def send(seq: int) -> None:
        sender.send({"type": "send", "to": f"#{room}", "text": f"{seq} {time.monotonic_ns()}"})

    # Windowed: as fast as the cluster acknowledges.
    sent = 0

    def windowed() -> None:
        nonlocal sent
        if sent < messages:
            send(sent)
            sent += 1

    send_next = windowed
    expected = messages * members
    await asyncio.to_thread(cluster.quiesce)
    cpu0, t0 = cluster.cpu(), time.monotonic()
    for _ in range(16):
        windowed()
    await asyncio.wait_for(done, 60)
    elapsed = time.monotonic() - t0
    await asyncio.to_thread(cluster.quiesce)
    bulk = Result(expected, cluster.cpu() - cpu0, elapsed)

    # Paced: a fixed rate well under capacity, so latency is the path, not a queue.
    send_next = lambda: None  # noqa: E731
    received, latencies[:] = 0, []
    paced = max(20, int(rate * 2))
    expected = paced * members
    done = loop.create_future()
    for seq in range(paced):
        send(seq)
        await asyncio.sleep(1 / rate)
    await asyncio.wait_for(done, 60)
    slow = Result(expected, 0.0, 0.0, list(latencies))
    for client in clients:
        if client.transport is not None:
            client.transport.close()
    return bulk, slow


async def dm(cluster: Cluster, ctx: ssl.SSLContext, pairs: int, rounds: int, tag: str) -> Result:
    ports = cluster.ports
    n = len(ports)
    a_side = [await login(ports[i % n], f"{tag}a{i}", ctx) for i in range(pairs)]
    b_side = [await login(ports[(i + 1) % n], f"{tag}b{i}", ctx) for i in range(pairs)]
    loop = asyncio.get_running_loop()
    left = pairs
    done = loop.create_future()
    latencies: list[float] = []
    count: dict[str, int] = {}

    def on_a(client: Client, payload: bytes) -> None:
        nonlocal left
        if b'"type":"message"' not in payload or b'"from":"' + tag.encode() + b"b" not in payload:
            return
        frame = json.loads(payload)
        latencies.append((time.monotonic_ns() - int(frame["text"])) / 1e6)
        count[client.nick] = count.get(client.nick, 0) + 1
        if count[client.nick] < rounds:
            client.send(
                {"type": "send", "to": "@" + frame["from"], "text": str(time.monotonic_ns())}
            )
        else:
            left -= 1
            if not left and not done.done():
                done.set_result(None)

    def on_b(client: Client, payload: bytes) -> None:
        if b'"type":"message"' not in payload or b'"from":"' + tag.encode() + b"a" not in payload:
            return
        frame = json.loads(payload)
        client.send({"type": "send", "to": "@" + frame["from"], "text": frame["text"]})

    for client in a_side:
        client.handler = on_a
    for client in b_side:
        client.handler = on_b
    await asyncio.to_thread(cluster.quiesce)
    cpu0, t0 = cluster.cpu(), time.monotonic()
    for a, b in zip(a_side, b_side, strict=True):
        a.send({"type": "send", "to": f"@{b.nick}", "text": str(time.monotonic_ns())})
    await asyncio.wait_for(done, 60)
    elapsed = time.monotonic() - t0
    await asyncio.to_thread(cluster.quiesce)
    # Each round is two messages, each delivered to two sessions (the echo and the other).
    result = Result(pairs * rounds * 4, cluster.cpu() - cpu0, elapsed, latencies)
    for client in (*a_side, *b_side):
        if client.transport is not None:
            client.transport.close()
    return result


# --- the run ---------------------------------------------------------------------------------------


async def create_database(admin_dsn: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pin", action="store_true", help="servers on core 0, load on core 1")
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20.0, help="paced fan-out, messages/s")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()

    sys.path.insert(0, str(REPOSITORY))  # tests/pgserver.py, tests/redisd.py
    from tests.pgserver import PgServer
    from tests.redisd import RedisServer

    if args.pin:
        if shutil.which("taskset") is None or len(os.sched_getaffinity(0)) < 2:
            raise SystemExit("--pin needs taskset and two cores")
        os.sched_setaffinity(0, {1})
    workdir = Path(tempfile.mkdtemp(prefix="tlschat-cluster-bench-"))
    certs = workdir / "certs"
    make_certs(certs)
    ctx = tls.client_context(cafile=certs / "ca.pem")
    pg = PgServer()
    redis = RedisServer(workdir / "redis")
    redis.folder.mkdir()
    rows: list[tuple[str, Result, Result, Result]] = []
    try:
        pg.start()
        redis.start()
        if args.pin:
            assert pg.pid is not None
            assert redis.process is not None
            for pid in (pg.pid, redis.process.pid):
                os.sched_setaffinity(pid, {0})  # PostgreSQL's backends inherit it
        for number, topo in enumerate(TOPOLOGIES):
            database = f"bench{number}"
            asyncio.run(create_database(pg.dsn(), database))
            cluster = Cluster(topo, workdir, certs, pg.dsn(database), redis.url, args.pin)
            try:
                bulk, paced = asyncio.run(
                    fanout(cluster, ctx, args.members, args.messages, args.rate, f"f{number}x")
                )
                direct = asyncio.run(dm(cluster, ctx, args.pairs, args.rounds, f"d{number}x"))
            finally:
                cluster.stop()
            rows.append((topo.name, bulk, paced, direct))
            print(f"{topo.name}: done", file=sys.stderr)
    finally:
        redis.stop()
        pg.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)

    base = rows[0]
    print(
        f"\nfan-out: room of {args.members}, {args.messages} messages (window 16); latency at"
        f" {args.rate:g} msg/s; dm: {args.pairs} pairs x {args.rounds} round trips"
        f"{'; pinned' if args.pin else ''}\n"
    )
    print(
        "| topology | fan-out µs CPU/delivery | × 1 node | deliveries/s | fan-out latency"
        " p50 / p99 ms | dm µs CPU/delivery | × 1 node | dm round trip p50 / p99 ms |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, bulk, paced, direct in rows:
        print(
            f"| {name} | {bulk.us_per_delivery:.1f} |"
            f" {bulk.us_per_delivery / base[1].us_per_delivery:.2f} |"
            f" {bulk.deliveries / bulk.seconds:,.0f} |"
            f" {statistics.median(paced.latencies):.2f} / {percentile(paced.latencies, 0.99):.2f} |"
            f" {direct.us_per_delivery:.1f} |"
            f" {direct.us_per_delivery / base[3].us_per_delivery:.2f} |"
            f" {statistics.median(direct.latencies):.2f} /"
            f" {percentile(direct.latencies, 0.99):.2f} |"
        )
    one, three = rows[0], rows[-1]
    print(
        "\nadded by the Redis hop (3 nodes − 1 node): fan-out latency p50"
        f" {statistics.median(three[2].latencies) - statistics.median(one[2].latencies):+.2f} ms,"
        f" p99 {percentile(three[2].latencies, 0.99) - percentile(one[2].latencies, 0.99):+.2f}"
        f" ms; dm round trip p50"
        f" {statistics.median(three[3].latencies) - statistics.median(one[3].latencies):+.2f} ms,"
        f" p99 {percentile(three[3].latencies, 0.99) - percentile(one[3].latencies, 0.99):+.2f} ms"
    )


if __name__ == "__main__":
    main()
