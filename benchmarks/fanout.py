"""Group fan-out benchmark: N TLS clients in one room, one sender, for T seconds.

Starts `tlschat serve` in its own process (so its memory can be read), logs N clients into one
public room over real TLS, then one of them sends as fast as the server acknowledges (a window
of in-flight messages) for T seconds. Prints deliveries per second, delivery latency
percentiles (send to receipt, across processes on one machine's monotonic clock) and the
server's resident memory per connection.

    python benchmarks/fanout.py --clients 100 --seconds 10
    python benchmarks/fanout.py --clients 1000 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from daemon_process import start_daemon

from tlschat import tls
from tlschat.protocol import HEADER, encode_raw


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start_server(data_dir: Path, clients: int) -> tuple[subprocess.Popen[str], int]:
    room = str(clients + 16)
    return start_daemon(
        data_dir,
        *("--max-members", room, "--max-per-ip", room, "--max-unauth", room, "--max-conns", room),
        *("--max-unauth-per-ip", room),
        *("--rate-burst", "1000000", "--rate-per-sec", "1000000", "--max-queue", str(4 << 20)),
    )


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def frame(self) -> dict[str, object]:
        head = await self.reader.readexactly(4)
        (length,) = HEADER.unpack(head)
        result: dict[str, object] = json.loads(await self.reader.readexactly(length))
        return result

    async def until(self, kind: str) -> dict[str, object]:
        while True:
            frame = await self.frame()
            if frame["type"] == kind:
                return frame

    def send(self, obj: dict[str, object]) -> None:
        self.writer.write(encode_raw(obj))


async def open_client(port: int, ctx: object, nick: str, join: bool = True) -> Client:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname="localhost", limit=1 << 20
    )
    client = Client(reader, writer)
    client.send({"type": "hello", "v": 1, "nick": nick})
    await client.until("welcome")
    if join:
        client.send({"type": "join", "room": "bench"})
        await client.until("joined")
    return client


async def receive(
    client: Client, latencies: list[float], stop: asyncio.Event, window: asyncio.Semaphore | None
) -> int:
    """Count deliveries; the probe receiver (the one given `window`) paces the sender."""
    count = 0
    while not stop.is_set():
        try:
            frame = await asyncio.wait_for(client.frame(), 1.0)
        except TimeoutError:
            continue
        if frame["type"] == "message":
            sent = float(str(frame["text"]).split()[0])
            latencies.append(time.monotonic() - sent)
            count += 1
            if window is not None:
                window.release()
    return count


async def bench(clients: int, seconds: float, window: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the server inherits it
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(Path(tmp), clients)
        try:
            ctx = tls.client_context(cafile=Path(tmp) / "tls" / "ca.pem")
            base = rss_kib(proc.pid)
            sender = await open_client(port, ctx, "sender", join=False)
            sender.send({"type": "create", "room": "bench", "public": True})
            await sender.until("joined")
            receivers: list[Client] = []
            started = time.monotonic()
            for start in range(0, clients - 1, 50):
                batch = range(start, min(start + 50, clients - 1))
                receivers += await asyncio.gather(*(open_client(port, ctx, f"r{i}") for i in batch))
            login_s = time.monotonic() - started

            async def settle(client: Client) -> None:
                # Drain what the logins queued (presence, member lists) up to a fresh pong.
                client.send({"type": "ping", "ref": "settle"})
                while (await client.frame()).get("ref") != "settle":
                    pass

            await asyncio.gather(*(settle(c) for c in receivers))
            connected = rss_kib(proc.pid)
            per_conn = (connected - base) / clients

            latencies: list[float] = []
            stop = asyncio.Event()
            # End-to-end flow control: at most `window` messages not yet seen by the last
            # receiver, so the figures describe a pipeline that keeps up, not a growing backlog.
            inflight = asyncio.Semaphore(window)
            tasks = [
                asyncio.create_task(
                    receive(c, latencies, stop, inflight if c is receivers[-1] else None)
                )
                for c in receivers
            ]
            sent = 0

            async def drain_echoes() -> None:
                while True:
                    await sender.frame()

            ack_task = asyncio.create_task(drain_echoes())
            t0 = time.monotonic()
            while time.monotonic() - t0 < seconds:
                await inflight.acquire()
                sender.send(
                    {
                        "type": "send",
                        "ref": str(sent),
                        "to": "#bench",
                        "text": f"{time.monotonic()} x",
                    }
                )
                sent += 1
            elapsed = time.monotonic() - t0
            await asyncio.sleep(2.0)  # let the last deliveries land
            stop.set()
            counts = await asyncio.gather(*tasks)
            dropped = sum(1 for c in receivers if c.reader.at_eof())
            ack_task.cancel()
            peak = rss_kib(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    delivered = sum(counts)
    expected = sent * (clients - 1)
    latencies.sort()
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 100 else [float("nan")] * 99
    print(f"clients            {clients} (1 sender, {clients - 1} receivers, one room)")
    print(f"logins             {login_s:.2f} s for {clients} TLS connections (hello + join)")
    print(f"messages sent      {sent} in {elapsed:.1f} s ({sent / elapsed:.0f}/s, window {window})")
    print(f"deliveries         {delivered} of {expected} ({delivered / max(expected, 1):.1%})")
    print(f"deliveries/s       {delivered / elapsed:,.0f}")
    print(f"dropped clients    {dropped} (disconnected as slow consumers or otherwise)")
    print(f"latency p50        {q[49] * 1000:.1f} ms")
    print(f"latency p99        {q[98] * 1000:.1f} ms")
    print(f"server RSS         {base / 1024:.1f} MiB idle, {connected / 1024:.1f} MiB with clients, "
          f"{peak / 1024:.1f} MiB after the run")  # fmt: skip
    print(f"RSS per connection {per_conn:.1f} KiB")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--window", type=int, default=32, help="messages sent but not yet received")
    args = parser.parse_args()
    asyncio.run(bench(args.clients, args.seconds, args.window))


if __name__ == "__main__":
    main()
