"""tlschat's benchmark suite: the scenarios of issue 8, against tlschat and a bare relay, one table.

Each scenario starts a fresh server as a subprocess (`python -m tlschat serve`, limits raised, or
`benchmarks/bare_relay.py`, the floor: same TLS and framing, no JSON, no storage), drives it over
real TLS from a load generator of one or more processes, and reads the server's CPU time
(utime + stime of /proc/PID/stat, all threads) and memory (VmRSS of /proc/PID/status) around
the measured phase. Only the wire protocol is used: nothing of the server is imported.

Scenarios (`--scenarios`, comma-separated; default all):

  fanout100, fanout1000  one sender (a window of messages not yet seen by a pacing receiver)
                         into a room of 100 / 1000; every member receives. CPU per delivery.
  dm                     pairs of clients ping-pong direct messages (A -> B, B replies -> A);
                         CPU per round trip, round trips/s, round-trip latency.
  throughput             100 concurrent senders (50 DM pairs, both sides sending, each with a
                         window); messages acknowledged (stored) and delivered per second.
  idle1000, idle5000     N clients connect and log in, then stay idle: CPU per connect+login,
                         time to connect all, RSS per idle client. Capped in time.
  latency                fan-out into a room of 100 at the same fixed offered rate on every
                         server: delivery latency p50/p99.

    python benchmarks/run.py --pin                      # everything, both servers (~10 min)
    python benchmarks/run.py --quick                    # small counts, < 2 minutes
    python benchmarks/run.py --scenarios dm,fanout100 --server tlschat
    python benchmarks/run.py --pin --serve-args="--max-frame 131072"   # more `tlschat serve` flags

Figures are comparable only within one run on one machine: compare each tlschat figure with
the bare relay's in the same table (the "x floor" column). On a shared machine, CPU per
operation is the steadiest figure; throughput and latency move with the neighbours' load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from tlschat import tls

HERE = Path(__file__).resolve().parent
TICK = os.sysconf("SC_CLK_TCK")
LISTENING = re.compile(r"listening on \S+:(\d+)")
TEXT = b'"text":"'
SERVERS = ("tlschat", "bare")
ALL_SCENARIOS = ("fanout100", "fanout1000", "dm", "throughput", "idle1000", "idle5000", "latency")


# --- scenario parameters -------------------------------------------------------------------------


@dataclass
class Params:
    name: str
    kind: str  # fanout | latency | dm | throughput | idle
    clients: int
    seconds: float = 10.0
    window: int = 32
    rate: float = 0.0  # messages per second (latency)
    cap: float = 60.0  # idle: give up connecting after this many seconds
    setup_cap: float = 300.0


def scenario_params(name: str, args: argparse.Namespace) -> Params:
    quick = args.quick
    secs = args.seconds if args.seconds else (3.0 if quick else 10.0)
    if name == "fanout100":
        return Params(name, "fanout", 100, secs, window=args.window)
    if name == "fanout1000":
        return Params(name, "fanout", 200 if quick else 1000, secs, window=args.window)
    if name == "dm":
        return Params(name, "dm", 2 * (10 if quick else args.pairs), secs)
    if name == "throughput":
        return Params(name, "throughput", 20 if quick else 100, secs, window=args.send_window)
    if name == "idle1000":
        return Params(name, "idle", 200 if quick else 1000, cap=args.idle_cap)
    if name == "idle5000":
        return Params(name, "idle", 1000 if quick else 5000, cap=args.idle_cap)
    if name == "latency":
        return Params(name, "latency", 100, secs, rate=args.rate)
    raise SystemExit(f"unknown scenario {name!r}; known: {', '.join(ALL_SCENARIOS)}")


# --- the server under test -----------------------------------------------------------------------


def proc_times(pid: int) -> tuple[float, float]:
    """utime and stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def proc_cpu(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    return sum(proc_times(pid))


def proc_wait(pid: int) -> float:
    """Seconds the threads of a process spent runnable but waiting for a CPU (schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return total / 1e9


def proc_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Server:
    def __init__(
        self, kind: str, workdir: Path, certs: Path, clients: int, pin: bool, extra: list[str]
    ) -> None:
        self.kind = kind
        self.log = workdir / f"{kind}.stderr"
        room = str(clients + 64)
        if kind == "tlschat":
            cmd = [
                sys.executable, "-m", "tlschat", "serve", "--host", "127.0.0.1", "--port", "0",
                "--data-dir", str(workdir / "data"), "--log-level", "WARNING",
                "--cert", str(certs / "server.pem"), "--key", str(certs / "server.key"),
                "--max-members", room, "--max-per-ip", room, "--max-unauth", room,
                "--max-unauth-per-ip", room, "--max-conns", room,
                "--rate-burst", "1000000", "--rate-per-sec", "1000000",
                "--max-queue", str(64 << 20), "--login-timeout", "3600",
                "--idle-timeout", "3600", "--handshake-timeout", "3600", *extra,
            ]  # fmt: skip
        else:
            cmd = [
                sys.executable, str(HERE / "bare_relay.py"), "--port", "0",
                "--cert", str(certs / "server.pem"), "--key", str(certs / "server.key"),
            ]  # fmt: skip
        if pin:
            cmd = ["taskset", "-c", "0", *cmd]
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        self.pid = self.proc.pid
        self.port = self._wait_port()

    def _wait_port(self) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            match = LISTENING.search(self.log.read_text())
            if match:
                return int(match.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise SystemExit(f"{self.kind} did not start:\n{self.log.read_text()[-2000:]}")

    def cpu(self) -> float:
        return proc_cpu(self.pid)

    def rss(self) -> int:
        return proc_rss_kib(self.pid)

    def quiesce(self, limit: float = 60.0, idle: float = 0.05) -> float:
        """Wait until the server uses under `idle` of a core for 0.5 s; return the seconds waited."""
        start = time.monotonic()
        last = self.cpu()
        while time.monotonic() - start < limit:
            time.sleep(0.5)
            now = self.cpu()
            if now - last <= idle * 0.5:
                break
            last = now
        return time.monotonic() - start

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def make_certs(out: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "tlschat", "gen-certs", "--out", str(out), "--name", "localhost"],
        check=True,
        stdout=subprocess.DEVNULL,
    )


# --- the load generator: one asyncio loop per worker process -------------------------------------


def encode(obj: dict[str, Any]) -> bytes:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return len(body).to_bytes(4, "big") + body


class Client(asyncio.Protocol):
    """One TLS connection; frames go to `handler` (load phase) and to a waiter (setup)."""

    def __init__(self, nick: str) -> None:
        self.nick = nick
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.handler: Callable[[Client, bytes], None] | None = None
        self.waiter: tuple[bytes, asyncio.Future[bytes]] | None = None
        self.last_rx = 0.0
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        self.last_rx = time.monotonic()
        pos = 0
        size = len(buffer)
        handler = self.handler
        while size - pos >= 4:
            end = pos + 4 + int.from_bytes(buffer[pos : pos + 4], "big")
            if end > size:
                break
            payload = bytes(buffer[pos + 4 : end])
            pos = end
            if handler is not None:
                handler(self, payload)
            waiter = self.waiter
            if waiter is not None and (waiter[0] in payload or b'"type":"error"' in payload):
                self.waiter = None
                if not waiter[1].done():
                    waiter[1].set_result(payload)
        del buffer[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        waiter = self.waiter
        if waiter is not None and not waiter[1].done():
            waiter[1].set_exception(ConnectionError(f"{self.nick}: connection lost"))

    def send(self, obj: dict[str, Any]) -> None:
        assert self.transport is not None
        self.transport.write(encode(obj))

    async def request(self, obj: dict[str, Any], marker: bytes, seconds: float) -> bytes:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiter = (marker, future)
        self.send(obj)
        reply = await asyncio.wait_for(future, seconds)
        if marker not in reply:
            raise RuntimeError(f"{self.nick}: {obj['type']} refused: {reply[:200]!r}")
        return reply


@dataclass
class Job:
    """What one worker process does in one scenario."""

    index: int
    server: str
    port: int
    cafile: str
    params: Params
    nicks: list[str]
    roles: dict[str, Any] = field(default_factory=dict)
    sources: int = 1
    cpus: list[int] | None = None


class Worker:
    def __init__(self, job: Job, pipe: Connection) -> None:
        self.job = job
        self.pipe = pipe
        self.ctx = tls.client_context(cafile=Path(job.cafile))
        self.clients: dict[str, Client] = {}
        self.latencies: list[float] = []
        self.counts: dict[str, int] = {"deliveries": 0, "acks": 0, "round_trips": 0, "sent": 0}
        self.running = False

    async def command(self) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, self.pipe.recv)

    async def connect(self, nick: str, number: int, seconds: float) -> Client:
        loop = asyncio.get_running_loop()
        local = None
        if self.job.sources > 1:
            local = (f"127.0.0.{1 + number % self.job.sources}", 0)
        _, client = await loop.create_connection(
            lambda: Client(nick),
            "127.0.0.1",
            self.job.port,
            ssl=self.ctx,
            server_hostname="localhost",
            local_addr=local,
            ssl_handshake_timeout=seconds,
        )
        await client.request({"type": "hello", "v": 1, "nick": nick}, b'"welcome"', seconds)
        self.clients[nick] = client
        return client

    async def connect_all(self, nicks: list[str], deadline: float, parallel: int) -> float | None:
        """Connect and log in `nicks`, `parallel` at a time; the time of the last welcome."""
        gate = asyncio.Semaphore(parallel)
        last: float | None = None

        async def one(number: int, nick: str) -> None:
            nonlocal last
            async with gate:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                await asyncio.wait_for(self.connect(nick, number, remaining), remaining)
                last = time.monotonic()

        results = await asyncio.gather(
            *(one(self.job.index * 100_000 + i, n) for i, n in enumerate(nicks)),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors and not isinstance(errors[0], TimeoutError):
            print(f"worker {self.job.index}: {len(errors)} connects failed: {errors[0]!r}")
        return last

    async def run(self) -> None:
        job = self.job
        if job.cpus is not None:
            os.sched_setaffinity(0, job.cpus)
        while True:
            cmd, arg = await self.command()
            if cmd == "exit":
                for client in self.clients.values():
                    if client.transport is not None:
                        client.transport.abort()
                self.pipe.send(("bye", None))
                return
            try:
                result = await getattr(self, f"do_{cmd}")(arg)
            except Exception as exc:  # report, the controller decides
                result = {"error": f"{type(exc).__name__}: {exc}"}
            self.pipe.send((cmd, result))

    # --- setup ---

    async def do_setup(self, arg: dict[str, Any]) -> dict[str, Any]:
        """Connect this worker's clients; on tlschat, create or join the room as asked."""
        job = self.job
        t0 = time.monotonic()
        deadline = t0 + arg["cap"]
        cpu0 = time.process_time()
        nicks = arg.get("nicks", job.nicks)
        last = await self.connect_all(nicks, deadline, arg.get("parallel", 50))
        if job.server == "tlschat" and arg.get("room"):
            room = arg["room"]
            waits = []
            for nick in nicks:
                client = self.clients.get(nick)
                if client is None:
                    continue
                if arg.get("create"):
                    req = {"type": "create", "room": room, "public": True}
                else:
                    req = {"type": "join", "room": room}
                waits.append(client.request(req, b'"joined"', max(deadline - time.monotonic(), 1)))
            for chunk in range(0, len(waits), 50):
                await asyncio.gather(*waits[chunk : chunk + 50])
        connected = sum(1 for n in nicks if n in self.clients)
        return {
            "connected": connected,
            "elapsed": (last or time.monotonic()) - t0,
            "cpu": time.process_time() - cpu0,
        }

    async def do_settle(self, arg: float) -> int:
        """Wait until no client of this worker has received anything for `arg` seconds."""
        give_up = time.monotonic() + 30
        while time.monotonic() < give_up:
            newest = max((c.last_rx for c in self.clients.values()), default=0.0)
            if time.monotonic() - newest >= arg:
                return len(self.clients)
            await asyncio.sleep(arg / 2)
        return len(self.clients)

    # --- load phases ---

    async def do_go(self, arg: dict[str, Any]) -> dict[str, Any]:
        kind = self.job.params.kind
        cpu0, wall0 = time.process_time(), time.monotonic()
        self.running = True
        await getattr(self, f"load_{kind}")(arg)
        return {"sent": self.counts["sent"], "cpu": time.process_time() - cpu0,
                "wall": time.monotonic() - wall0}  # fmt: skip

    async def do_stop(self, arg: float) -> dict[str, Any]:
        self.running = False
        cpu0 = time.process_time()
        await self.do_settle(arg)
        lost = sum(1 for c in self.clients.values() if c.lost)
        return {**self.counts, "latencies": self.latencies, "lost": lost,
                "cpu": time.process_time() - cpu0}  # fmt: skip

    # fan-out (windowed) and latency (fixed rate) share the receivers

    def _receivers(self) -> None:
        probes = set(self.job.roles.get("probes", ()))
        pacer = self.job.roles.get("pacer")
        latencies = self.latencies
        counts = self.counts
        window = self.window

        def count(client: Client, payload: bytes) -> None:
            if TEXT in payload:
                counts["deliveries"] += 1

        def probe(client: Client, payload: bytes) -> None:
            start = payload.find(TEXT)
            if start >= 0:
                counts["deliveries"] += 1
                start += len(TEXT)
                sent = float(payload[start : payload.index(b" ", start)])
                latencies.append(time.monotonic() - sent)
                if client.nick == pacer and window is not None:
                    window.release()

        sender = self.job.roles.get("sender")
        for nick, client in self.clients.items():
            if nick != sender:
                client.handler = probe if nick in probes or nick == pacer else count

    window: asyncio.Semaphore | None = None

    def _own_sender(self) -> str | None:
        """The room's sender, if it is one of this worker's clients."""
        sender = self.job.roles.get("sender")
        return sender if sender in self.clients else None

    async def do_arm(self, arg: None) -> bool:
        """Set up the receivers before any worker starts sending (fan-out spans workers)."""
        if self.job.params.kind in ("fanout", "latency"):
            if self.job.params.kind == "fanout" and self._own_sender() is not None:
                self.window = asyncio.Semaphore(self.job.params.window)
            self._receivers()
        return True

    async def load_fanout(self, arg: dict[str, Any]) -> None:
        params = self.job.params
        sender = self._own_sender()
        if sender is None:
            return
        client = self.clients[sender]
        window = self.window
        assert window is not None
        to = arg["to"]
        end = time.monotonic() + params.seconds
        sent = 0
        while time.monotonic() < end and not client.lost:
            try:
                await asyncio.wait_for(window.acquire(), 5)
            except TimeoutError:
                break  # deliveries stopped: the server fell behind or dropped the pacer
            client.send({"type": "send", "ref": str(sent), "to": to,
                         "text": f"{time.monotonic():.6f} {sent}"})  # fmt: skip
            sent += 1
        self.counts["sent"] = sent

    async def load_latency(self, arg: dict[str, Any]) -> None:
        params = self.job.params
        sender = self._own_sender()
        if sender is None:
            return
        client = self.clients[sender]
        to = arg["to"]
        start = time.monotonic()
        total = int(params.rate * params.seconds)
        for sent in range(total):
            delay = start + sent / params.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            client.send({"type": "send", "ref": str(sent), "to": to,
                         "text": f"{time.monotonic():.6f} {sent}"})  # fmt: skip
        self.counts["sent"] = total

    async def load_dm(self, arg: dict[str, Any]) -> None:
        """Each pair (a, b): a sends to b, b answers a; one round trip in flight per pair."""
        counts = self.counts
        latencies = self.latencies
        pairs: list[tuple[str, str]] = self.job.roles["pairs"]
        sent_at: dict[str, float] = {}
        done = asyncio.get_running_loop().create_future()
        active = [len(pairs)]

        def serve(a: Client, b_nick: str) -> None:
            sent_at[a.nick] = time.monotonic()
            counts["sent"] += 1
            a.send({"type": "send", "ref": "p", "to": "@" + b_nick, "text": f"{a.nick} ping"})

        def make_a(b_nick: str) -> Callable[[Client, bytes], None]:
            marker = TEXT + b_nick.encode() + b" "

            def on_a(client: Client, payload: bytes) -> None:
                if marker in payload:  # b's answer
                    counts["round_trips"] += 1
                    latencies.append(time.monotonic() - sent_at[client.nick])
                    if self.running and time.monotonic() < end:
                        serve(client, b_nick)
                    else:
                        active[0] -= 1
                        if active[0] == 0 and not done.done():
                            done.set_result(None)

            return on_a

        def make_b(a_nick: str) -> Callable[[Client, bytes], None]:
            marker = TEXT + a_nick.encode() + b" "

            def on_b(client: Client, payload: bytes) -> None:
                if marker in payload:  # a's ping
                    counts["sent"] += 1
                    client.send({"type": "send", "ref": "q", "to": "@" + a_nick,
                                 "text": f"{client.nick} pong"})  # fmt: skip

            return on_b

        end = time.monotonic() + self.job.params.seconds
        for a_nick, b_nick in pairs:
            self.clients[a_nick].handler = make_a(b_nick)
            self.clients[b_nick].handler = make_b(a_nick)
        for a_nick, b_nick in pairs:
            serve(self.clients[a_nick], b_nick)
        if pairs:
            await asyncio.wait([done], timeout=self.job.params.seconds + 10)

    async def load_throughput(self, arg: dict[str, Any]) -> None:
        """Every client sends to its partner with a window of unacknowledged messages."""
        counts = self.counts
        latencies = self.latencies
        params = self.job.params
        partner: dict[str, str] = self.job.roles["partner"]
        end = time.monotonic() + params.seconds
        outstanding = {nick: 0 for nick in partner}
        done = asyncio.get_running_loop().create_future()

        def send(client: Client) -> None:
            counts["sent"] += 1
            outstanding[client.nick] += 1
            client.send({"type": "send", "ref": "t", "to": "@" + partner[client.nick],
                         "text": f"{client.nick} {time.monotonic():.6f}"})  # fmt: skip

        def make(nick: str) -> Callable[[Client, bytes], None]:
            own = TEXT + nick.encode() + b" "
            other = TEXT + partner[nick].encode() + b" "

            def on_frame(client: Client, payload: bytes) -> None:
                start = payload.find(own)
                if start >= 0:  # the echo: stored and acknowledged
                    start += len(own)
                    stop = payload.index(b'"', start)
                    latencies.append(time.monotonic() - float(payload[start:stop]))
                    counts["acks"] += 1
                    outstanding[nick] -= 1
                    if self.running and time.monotonic() < end:
                        send(client)
                    elif sum(outstanding.values()) == 0 and not done.done():
                        done.set_result(None)
                elif other in payload:
                    counts["deliveries"] += 1

            return on_frame

        for nick in partner:
            self.clients[nick].handler = make(nick)
        for nick in partner:
            for _ in range(params.window):
                send(self.clients[nick])
        if partner:
            await asyncio.wait([done], timeout=params.seconds + 10)


def worker_main(job: Job, pipe: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(Worker(job, pipe).run())


# --- the controller ------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    server: str
    ops: str = ""
    throughput: float = float("nan")
    unit: str = ""
    cpu_us: float = float("nan")
    op: str = ""
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    rss_kib: float = float("nan")
    server_util: float = float("nan")
    gen_util: float = float("nan")
    notes: list[str] = field(default_factory=list)


class Run:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.certs = workdir / "certs"
        make_certs(self.certs)
        self.gen_cpus: list[int] | None = None
        if args.pin:
            available = sorted(os.sched_getaffinity(0))
            others = [c for c in available if c != 0]
            if 0 not in available or not others or shutil.which("taskset") is None:
                raise SystemExit("--pin needs taskset and at least cores 0 and one other")
            self.gen_cpus = others
            os.sched_setaffinity(0, others)
        self.gen_cores = len(self.gen_cpus or os.sched_getaffinity(0))
        self.procs = args.procs or self.gen_cores

    def start_workers(self, server: Server, params: Params, jobs: list[Job]) -> list[Any]:
        ctx = mp.get_context("fork")
        handles = []
        for job in jobs:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(job, child), daemon=True)
            proc.start()
            handles.append((proc, parent))
        return handles

    @staticmethod
    def ask(handles: list[Any], cmd: str, arg: Any, which: list[int] | None = None) -> list[Any]:
        chosen = [handles[i] for i in (which if which is not None else range(len(handles)))]
        for _, pipe in chosen:
            pipe.send((cmd, arg))
        results = []
        for _, pipe in chosen:
            name, result = pipe.recv()
            assert name == cmd, (name, cmd)
            if isinstance(result, dict) and "error" in result:
                raise RuntimeError(f"worker failed in {cmd}: {result['error']}")
            results.append(result)
        return results

    def stop_workers(self, handles: list[Any]) -> None:
        for proc, pipe in handles:
            try:
                pipe.send(("exit", None))
                pipe.recv()
            except (OSError, EOFError):
                pass
            proc.join(5)
            if proc.is_alive():
                proc.kill()

    def split(self, nicks: list[str]) -> list[list[str]]:
        return [nicks[i :: self.procs] for i in range(self.procs)]

    def scenario(self, params: Params, kind: str) -> Row:
        args = self.args
        row = Row(params.name, kind)
        workdir = Path(tempfile.mkdtemp(prefix=f"{params.name}-{kind}-", dir=self.workdir))
        extra = shlex.split(args.serve_args)
        server = Server(kind, workdir, self.certs, params.clients, args.pin, extra)
        handles: list[Any] = []
        try:
            server.quiesce(10)
            rss0 = server.rss()
            jobs = self.plan(params, kind, server.port)
            handles = self.start_workers(server, params, jobs)
            if params.kind == "idle":
                self.run_idle(params, server, handles, row, rss0)
            else:
                self.run_load(params, jobs, server, handles, row, rss0)
        except Exception as exc:
            row.notes.append(f"FAILED: {exc}")
        finally:
            self.stop_workers(handles)
            server.stop()
        return row

    def plan(self, params: Params, kind: str, port: int) -> list[Job]:
        cafile = str(self.certs / "ca.pem")
        base = {"server": kind, "port": port, "cafile": cafile, "params": params,
                "sources": self.args.sources, "cpus": self.gen_cpus}  # fmt: skip
        n = params.clients
        if params.kind in ("fanout", "latency"):
            sender = "fan.s"
            receivers = [f"fan.r{i}" for i in range(n - 1)]
            pacer = receivers[-1]
            step = max(1, len(receivers) // 10)
            probes = receivers[::step]
            parts = self.split(receivers[:-1])
            parts[0] = [sender, pacer, *parts[0]]
            roles = {"sender": sender, "pacer": pacer, "probes": probes}
            return [Job(i, nicks=p, roles=roles, **base) for i, p in enumerate(parts)]
        if params.kind == "dm":
            pairs = [(f"dm{i}.a", f"dm{i}.b") for i in range(n // 2)]
            groups = [pairs[i :: self.procs] for i in range(self.procs)]
            return [Job(i, nicks=[x for p in g for x in p], roles={"pairs": g}, **base)
                    for i, g in enumerate(groups)]  # fmt: skip
        if params.kind == "throughput":
            pairs = [(f"tp{i}.a", f"tp{i}.b") for i in range(n // 2)]
            groups = [pairs[i :: self.procs] for i in range(self.procs)]
            jobs = []
            for i, group in enumerate(groups):
                partner = {a: b for a, b in group} | {b: a for a, b in group}
                jobs.append(Job(i, nicks=list(partner), roles={"partner": partner}, **base))
            return jobs
        parts = self.split([f"idle.c{i}" for i in range(n)])
        return [Job(i, nicks=p, **base) for i, p in enumerate(parts)]

    def waits(self, server: Server, handles: list[Any]) -> list[float]:
        return [proc_wait(pid) for pid in [server.pid, *(proc.pid for proc, _ in handles)]]

    def bound(
        self, row: Row, gen_cpu: list[float], server_cpu: float, waits: list[float], wall: float
    ) -> None:
        """Utilisation of each side and which one limited the run.

        `waits` are the seconds each side (server first, then the generator's processes) was
        runnable but not running: its core was busy with other processes (on a shared machine,
        other people's). A side is saturated when running + waiting fills its core.
        """
        cores = min(self.gen_cores, len(gen_cpu))
        row.server_util = server_cpu / wall
        row.gen_util = sum(gen_cpu) / wall / cores
        server_wait = waits[0] / wall
        gen_wait = max(waits[1:]) / wall
        server_busy = row.server_util + server_wait
        gen_busy = max(max(gen_cpu) / wall, row.gen_util) + gen_wait
        row.notes.append(f"waited for a CPU: server {server_wait:.0%}, generator {gen_wait:.0%}")
        if gen_busy >= 0.9 and server_busy < 0.85:
            row.notes.append("GENERATOR-BOUND (its core was full, the server's was not)")
        elif server_busy >= 0.9 and gen_busy < 0.85:
            row.notes.append("server-bound")
        elif server_busy >= 0.9 and gen_busy >= 0.9:
            row.notes.append("both cores full")

    def run_load(
        self, params: Params, jobs: list[Job], server: Server, handles: list[Any], row: Row,
        rss0: int,
    ) -> None:  # fmt: skip
        room = "bench" if params.kind in ("fanout", "latency") else None
        t0 = time.monotonic()
        if room:  # the sender creates the room, then everyone else joins it
            self.ask(handles, "setup", {"nicks": [jobs[0].nicks[0]], "room": room,
                                        "create": True, "cap": params.setup_cap}, [0])  # fmt: skip
            rest = [{"nicks": job.nicks[1:] if i == 0 else job.nicks, "room": room,
                     "cap": params.setup_cap} for i, job in enumerate(jobs)]  # fmt: skip
            for i, handle in enumerate(handles):
                handle[1].send(("setup", rest[i]))
            setups = [handle[1].recv()[1] for handle in handles]
        else:
            setups = self.ask(handles, "setup", {"cap": params.setup_cap})
        for result in setups:
            if "error" in result:
                raise RuntimeError(result["error"])
        connected = sum(r["connected"] for r in setups) + (1 if room else 0)
        if connected < params.clients:
            raise RuntimeError(f"only {connected} of {params.clients} clients logged in")
        setup_s = time.monotonic() - t0
        self.ask(handles, "settle", 0.5)
        server.quiesce(120)
        rss1 = server.rss()
        row.rss_kib = (rss1 - rss0) / params.clients
        self.ask(handles, "arm", None)
        pids = [proc.pid for proc, _ in handles]
        sys0 = proc_times(server.pid)[1]
        cpu0 = server.cpu()
        gen0 = [proc_cpu(pid) for pid in pids]
        waits0 = self.waits(server, handles)
        wall0 = time.monotonic()
        go = self.ask(handles, "go", {"to": f"#{room}" if room else ""})
        # The senders are done: utilisation over the load phase, then let the server finish
        # (its CPU up to there is the cost of the operations counted) and collect the counts.
        load_wall = time.monotonic() - wall0
        gen = [proc_cpu(pid) - g0 for pid, g0 in zip(pids, gen0, strict=True)]
        waits = [b - a for a, b in zip(waits0, self.waits(server, handles), strict=True)]
        self.bound(row, gen, server.cpu() - cpu0, waits, load_wall)
        server.quiesce(60)
        stops = self.ask(handles, "stop", 0.5)
        wall = time.monotonic() - wall0
        cpu = server.cpu() - cpu0
        row.notes.append(f"server {(proc_times(server.pid)[1] - sys0) / max(cpu, 1e-9):.0%} sys")
        latencies = sorted(x for s in stops for x in s["latencies"])
        if len(latencies) >= 2:
            row.p50_ms = 1000 * statistics.median(latencies)
            row.p99_ms = 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        sent = sum(g["sent"] for g in go)
        deliveries = sum(s["deliveries"] for s in stops)
        lost = sum(s["lost"] for s in stops)
        if lost:
            row.notes.append(f"{lost} clients disconnected")
        if params.kind in ("fanout", "latency"):
            expected = sent * (params.clients - 1)
            row.ops = f"room of {params.clients}: {sent} msgs, {deliveries} deliveries"
            row.throughput, row.unit = deliveries / load_wall, "deliveries/s"
            row.cpu_us, row.op = 1e6 * cpu / max(deliveries, 1), "delivery"
            if deliveries < expected:
                row.notes.append(f"{deliveries / max(expected, 1):.1%} delivered")
            if params.kind == "latency":
                row.notes.append(f"offered {params.rate:.0f} msg/s")
        elif params.kind == "dm":
            trips = sum(s["round_trips"] for s in stops)
            row.ops = f"{params.clients // 2} pairs, {trips} round trips"
            row.throughput, row.unit = trips / load_wall, "round trips/s"
            row.cpu_us, row.op = 1e6 * cpu / max(trips, 1), "round trip"
        else:
            acks = sum(s["acks"] for s in stops)
            row.ops = f"{params.clients} senders, {acks} acked, {deliveries} delivered"
            row.throughput, row.unit = acks / load_wall, "msgs stored+delivered/s"
            row.cpu_us, row.op = 1e6 * cpu / max(acks, 1), "message"
            if deliveries < acks:
                row.notes.append(f"{acks - deliveries} acked but not delivered")
        row.notes.append(f"setup {setup_s:.1f} s, measured {wall:.1f} s")

    def run_idle(
        self, params: Params, server: Server, handles: list[Any], row: Row, rss0: int
    ) -> None:
        cpu0 = server.cpu()
        waits0 = self.waits(server, handles)
        t0 = time.monotonic()
        parallel = max(1, self.args.parallel // len(handles))
        setups = self.ask(handles, "setup", {"cap": params.cap, "parallel": parallel})
        elapsed = time.monotonic() - t0
        connected = sum(r["connected"] for r in setups)
        connect_s = max(r["elapsed"] for r in setups)
        waits = [b - a for a, b in zip(waits0, self.waits(server, handles), strict=True)]
        self.bound(row, [r["cpu"] for r in setups], server.cpu() - cpu0, waits, elapsed)
        waited = server.quiesce(30)
        cpu = server.cpu() - cpu0
        self.ask(handles, "settle", 0.5)
        rss1 = server.rss()
        row.ops = f"{connected} of {params.clients} logged in"
        row.throughput, row.unit = connected / max(connect_s, 1e-9), "logins/s"
        row.cpu_us, row.op = 1e6 * cpu / max(connected, 1), "connect+login"
        row.rss_kib = (rss1 - rss0) / max(connected, 1)
        if connected < params.clients:
            row.notes.append(f"did not finish in {params.cap:.0f} s")
        else:
            row.notes.append(f"all connected in {connect_s:.1f} s")
        if waited > 1:
            row.notes.append(f"server busy {waited:.1f} s more after the last welcome")


# --- output --------------------------------------------------------------------------------------


def fmt(value: float, digits: int = 0) -> str:
    if value != value:  # NaN
        return "–"
    return f"{value:,.{digits}f}"


def table(rows: list[Row]) -> str:
    floor = {r.scenario: r for r in rows if r.server == "bare"}
    head = ("scenario", "server", "throughput", "× floor", "CPU µs/op", "× floor", "p50 ms",
            "p99 ms", "RSS KiB/conn", "server CPU", "gen CPU", "operations, notes")  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def ratio(value: float, base: float) -> str:
        if value != value or base != base or not base:
            return "–"
        return f"{value / base:.2f}×"

    for r in rows:
        base = floor.get(r.scenario)
        if r.server == "bare":
            tput_ratio = cpu_ratio = "1 (floor)"
        elif base is None:
            tput_ratio = cpu_ratio = "–"
        else:
            tput_ratio = ratio(r.throughput, base.throughput)
            cpu_ratio = ratio(r.cpu_us, base.cpu_us)
        cells = (
            r.scenario,
            r.server,
            f"{fmt(r.throughput)} {r.unit}",
            tput_ratio,
            f"{fmt(r.cpu_us, 1)} per {r.op}" if r.op else "–",
            cpu_ratio,
            fmt(r.p50_ms, 2),
            fmt(r.p99_ms, 2),
            fmt(r.rss_kib, 1),
            f"{r.server_util:.0%}" if r.server_util == r.server_util else "–",
            f"{r.gen_util:.0%}" if r.gen_util == r.gen_util else "–",
            "; ".join([r.ops, *r.notes]),
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenarios", default=",".join(ALL_SCENARIOS))
    parser.add_argument("--server", choices=("tlschat", "bare", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="small counts, a few s each")
    parser.add_argument("--pin", action="store_true", help="server on core 0, generator elsewhere")
    parser.add_argument("--procs", type=int, default=0, help="generator processes (default: cores)")
    parser.add_argument("--seconds", type=float, default=0.0, help="load phase (10 s; quick 3 s)")
    parser.add_argument("--window", type=int, default=32, help="fan-out messages in flight")
    parser.add_argument("--pairs", type=int, default=50, help="DM ping-pong pairs")
    parser.add_argument("--send-window", type=int, default=4, help="throughput: per sender")
    parser.add_argument("--rate", type=float, default=100.0, help="latency: messages/s offered")
    parser.add_argument("--idle-cap", type=float, default=90.0, help="idle: seconds to connect")
    parser.add_argument(
        "--serve-args", default="", help='more flags for tlschat serve: --serve-args="--flag value"'
    )
    parser.add_argument("--parallel", type=int, default=100, help="idle: logins in flight")
    parser.add_argument("--sources", type=int, default=1, help="client source IPs 127.0.0.1..N")
    args = parser.parse_args()

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # servers and workers inherit it
    if hard < 6000:
        print(f"note: open files limited to {hard}; idle5000 may fail", file=sys.stderr)
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    kinds = SERVERS if args.server == "both" else (args.server,)
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="tlschat-bench-") as tmp:
        run = Run(args, Path(tmp))
        for name in names:
            params = scenario_params(name, args)
            for kind in kinds:
                t0 = time.monotonic()
                print(f"{name} on {kind} ...", end=" ", file=sys.stderr, flush=True)
                row = run.scenario(params, kind)
                rows.append(row)
                print(f"{time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    print()
    print(f"tlschat benchmarks, {started}, {socket.gethostname()}, "
          f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, {ssl.OPENSSL_VERSION}")  # fmt: skip
    pin = (
        f"server pinned to core 0, generator ({run.procs} process(es)) to {run.gen_cpus}"
        if args.pin
        else f"not pinned, generator {run.procs} process(es)"
    )
    print(f"{pin}; command: {' '.join(sys.argv)}")
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
