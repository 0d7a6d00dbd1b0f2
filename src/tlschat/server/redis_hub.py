"""The Redis hub: several daemons sharing one store deliver to each other's sessions.

`RedisHub` is a `LocalHub` for this node's sessions that also publishes what it delivers on one
Redis pub/sub channel, and delivers what the other nodes publish. Every node reads every
notification in the one order Redis gives the channel, its own included, so all nodes agree on
presence and on the order of messages (docs/architecture.md "Several nodes"):

- messages (frames with an id) go through a `StreamOrder`: held until every live node's writer
  position has passed them, then delivered in id order, on the node that wrote them too (its
  own notification coming back is how it learns they may go);
- other frames (typing, room events, presence) are delivered here at once and published; the
  node that published them skips its own notification;
- presence: each node keeps its online users in a Redis hash that expires unless its heartbeat
  renews it; a node whose heartbeat key expired is declared dead by the first node to notice,
  and its users go offline for everyone.

Redis calls run in this module's tasks; the `Hub` methods the rules call stay synchronous and
only append to an outbox, so the event loop never waits for Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import RedisError

from tlschat.protocol import Presence, encode, name_key
from tlschat.server.account_limits import EventWindow, RedisEventWindow
from tlschat.server.cluster_presence import ClusterPresence, RemoteUser
from tlschat.server.hub import HubUnavailable, LocalHub, Peer
from tlschat.server.registry import User
from tlschat.server.stream_order import Release, StreamOrder, WriterPosition

log = logging.getLogger("tlschat.server.redis")

PREFIX = "tlschat:"
CHANNEL = PREFIX + "stream"
"""The one channel every node publishes on and reads: one order for everything."""
NODES = PREFIX + "nodes"
"""A set of the ids of the nodes believed alive."""

HEARTBEAT = 5.0
NODE_TTL = 15.0
"""A node renews its keys every HEARTBEAT seconds; one silent for NODE_TTL is dead, and its users
go offline for the others within NODE_TTL + HEARTBEAT seconds."""
START_TIMEOUT = 10.0
CHANGE_TIMEOUT = 5.0
"""How long the stream waits for a node's view to follow a change (a store read); past it the
stream goes on and the next change of that room or a request's own check catches up."""
RECONNECT_BACKOFF = ExponentialWithJitterBackoff(cap=2.0, base=0.05)
"""Between attempts to reach Redis again: 50 ms doubling up to 2 s, with jitter (redis-py's)."""


def node_key(node: str) -> str:
    return f"{PREFIX}node:{node}"


def online_key(node: str) -> str:
    return f"{PREFIX}online:{node}"


@dataclass(frozen=True)
class StreamMessage:
    """A message frame of the stream and the users it is for."""

    msg_id: int
    nick_keys: tuple[str, ...]
    data: bytes


FetchMissing = Callable[[int, int, frozenset[int]], Awaitable[list[StreamMessage]]]
"""(after, upto, ids already here) -> the stored messages of (after, upto] not among them, with
their recipients. The store's answer to a lost notification (docs/architecture.md)."""


@dataclass
class _Own:
    """A message this node wrote, waiting for its turn: who asked for it and its echo."""

    message: StreamMessage
    asker: Peer | None
    echo: bytes | None


def _envelope(header: dict[str, Any], data: bytes = b"") -> bytes:
    """One notification: a JSON header line, then the frame bytes as they are."""
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + data


def _user_fields(user: User) -> list[Any]:
    return [user.key, user.nick, user.registered, user.identity]


class RedisHub(LocalHub):
    """`await start(last_id)` before serving, `await close()` after (idempotent)."""

    def __init__(
        self,
        url: str,
        *,
        node: str | None = None,
        heartbeat: float = HEARTBEAT,
        node_ttl: float = NODE_TTL,
        fetch_missing: FetchMissing | None = None,
    ) -> None:
        super().__init__()
        self.url = url
        self.node = node or secrets.token_hex(6)
        """This node's id in the cluster (random per start: a restarted node is a new writer)."""
        self.heartbeat = heartbeat
        self.node_ttl = node_ttl
        self.fetch_missing = fetch_missing
        self.connected = False
        """True while Redis answers; while false, new messages are refused (`unavailable`)."""
        self._writer = WriterPosition()
        self._order: StreamOrder[StreamMessage] = StreamOrder()
        self._presence = ClusterPresence()
        self._own: dict[int, _Own] = {}
        self._suppressed: dict[str, str] = {}
        """Nick key -> nick of users whose last local session ended while another node held one: if that node's
        session ends first after all, our own `off` coming back says the user is gone."""
        self._outbox: list[tuple[str, bytes]] = []
        """("stream", notification) or ("presence", notification): what to publish, in order.
        Presence is dropped on reconnect (the `join` then says it all again)."""
        self._outbox_ready = asyncio.Event()
        self._published_position = -1
        self._position_due = False
        self._releases: list[Release[StreamMessage]] = []
        """Releases waiting behind a fetch from the store, in order."""
        self._fetcher: asyncio.Task[None] | None = None
        self._client: aioredis.Redis | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._up = asyncio.Event()
        self._closed = False
        self._rewrite_hash = False
        """Declared dead while alive: the others deleted our online hash; write it again."""

    # --- start and stop --------------------------------------------------------------------

    async def start(self, last_id: int) -> None:
        """Join the cluster: `last_id` is the newest id in the store (what came before is
        history, served by replay). Raises ConnectionError if Redis cannot be reached."""
        self._writer.saw(last_id)
        self._order = StreamOrder(start=last_id)
        # Commands retry a little on their own (redis-py's Retry); a longer outage is the
        # supervisor's: it marks the hub unavailable and reconnects with backoff.
        self._client = aioredis.Redis.from_url(
            self.url,
            retry=Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), 2),
            socket_timeout=max(2.0, self.heartbeat),
            socket_connect_timeout=2.0,
        )
        self._supervisor = asyncio.get_running_loop().create_task(self._run())
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await self._up.wait()
        except TimeoutError:
            await self.close(leave=False)
            raise ConnectionError(f"cannot reach Redis at {self.url}") from None

    async def close(self, *, leave: bool = True) -> None:
        """Leave the cluster: the others drop this node's users and position at once.
        `leave=False` just stops, as a crash would (the others notice when its keys expire)."""
        if self._closed:
            return
        self._closed = True
        if leave and self.connected and self._client is not None:
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._flush_outbox(self._client)
                    pipe = self._client.pipeline(transaction=False)
                    pipe.srem(NODES, self.node)
                    pipe.delete(node_key(self.node), online_key(self.node))
                    pipe.publish(CHANNEL, _envelope({"k": "dead", "n": self.node}))
                    await pipe.execute()
        for task in (self._supervisor, self._fetcher):
            if task is not None:
                await _stop(task)
        if self._client is not None:
            await self._client.aclose()
        self.connected = False

    # --- the connection to Redis -------------------------------------------------------------

    async def _run(self) -> None:
        """Connect, serve, and on any failure mark the hub unavailable and connect again."""
        assert self._client is not None
        failures = 0
        while not self._closed:
            # Its own connection, without retries: a lost connection must show at once.
            listener = aioredis.Redis.from_url(self.url, retry=Retry(NoBackoff(), 0))
            pubsub = listener.pubsub()
            try:
                await self._connect(pubsub)
                if failures:
                    log.warning("redis: connection restored (%s)", self.url)
                failures = 0
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._listen(pubsub))
                    tg.create_task(self._beat())
                    tg.create_task(self._publish())
            except* (RedisError, OSError) as group:
                if self.connected or not failures:
                    log.warning("redis: connection lost (%s): %s", self.url, group.exceptions[0])
                self.connected = False
                failures += 1
            except* Exception:
                log.exception("redis hub failed: starting again")
                self.connected = False
                failures += 1
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
                with contextlib.suppress(RedisError, OSError):
                    await listener.aclose()
            await asyncio.sleep(RECONNECT_BACKOFF.compute(failures))

    async def _connect(self, pubsub: aioredis.client.PubSub) -> None:
        """(Re)join: subscribe first so nothing published after the snapshot is missed, then
        register, read the other nodes and their users, and say `join` with ours."""
        client = self._client
        assert client is not None
        await pubsub.subscribe(CHANNEL)
        # Presence commands queued while we were away are stale: the join says it all again.
        self._outbox = [item for item in self._outbox if item[0] == "stream"]
        await self._register(client, fresh=True)
        nodes = {(n.decode() if isinstance(n, bytes) else n) for n in await client.smembers(NODES)}
        others = sorted(nodes - {self.node})
        pipe = client.pipeline(transaction=False)
        for node in others:
            pipe.exists(node_key(node))
            pipe.hgetall(online_key(node))
        answers = await pipe.execute()
        alive = set()
        for node, exists, users in zip(others, answers[::2], answers[1::2], strict=True):
            if not exists:
                continue  # its key expired: the next heartbeat declares it dead
            alive.add(node)
            self._order.expect(node)  # hold new messages until it says where it stands
            listed = [json.loads(raw) for raw in users.values()]
            self._node_users(node, listed, announce=True)
        for node in list(self._order.positions):
            if node != self.node and node not in alive:
                self._node_dead(node)
        self._published_position = self._writer.position
        await client.publish(CHANNEL, self._join())
        self.connected = True
        self._up.set()

    async def _register(self, client: aioredis.Redis, *, fresh: bool = False) -> None:
        ttl = int(self.node_ttl * 1000)
        pipe = client.pipeline(transaction=False)
        pipe.set(node_key(self.node), b"1", px=ttl)
        pipe.sadd(NODES, self.node)
        if fresh or self._rewrite_hash:
            self._rewrite_hash = False
            pipe.delete(online_key(self.node))
            for user in self.users.values():
                pipe.hset(online_key(self.node), user.key, json.dumps(_user_fields(user)))
        pipe.pexpire(online_key(self.node), ttl)
        await pipe.execute()

    def _join(self) -> bytes:
        users = [_user_fields(user) for user in self.users.values()]
        header = {"k": "join", "n": self.node, "p": self._writer.position}
        return _envelope(header, json.dumps(users).encode())

    async def _beat(self) -> None:
        """Renew our keys, tell where we stand, and declare dead the nodes whose keys expired
        (SREM answers 1 to one node only: one `dead` per death)."""
        client = self._client
        assert client is not None
        while not self._closed:
            await asyncio.sleep(self.heartbeat)
            await self._register(client)
            self._publish_position(force=True)
            others = [
                n.decode() if isinstance(n, bytes) else n
                for n in await client.smembers(NODES)
                if (n.decode() if isinstance(n, bytes) else n) != self.node
            ]
            if not others:
                continue
            pipe = client.pipeline(transaction=False)
            for node in others:
                pipe.exists(node_key(node))
            for node, exists in zip(others, await pipe.execute(), strict=True):
                if not exists and await client.srem(NODES, node):
                    log.warning("redis: node %s stopped renewing its keys: declared dead", node)
                    await client.delete(online_key(node))
                    dead = {"k": "dead", "n": node, "by": self.node}
                    await client.publish(CHANNEL, _envelope(dead))

    async def _publish(self) -> None:
        client = self._client
        assert client is not None
        while not self._closed:
            await self._outbox_ready.wait()
            await self._flush_outbox(client)

    async def _flush_outbox(self, client: aioredis.Redis) -> None:
        """Publish everything queued in one pipeline; what failed stays queued, in order."""
        self._outbox_ready.clear()
        batch = list(self._outbox)
        if not batch:
            return
        pipe = client.pipeline(transaction=False)
        for _, notification in batch:
            pipe.publish(CHANNEL, notification)
        await pipe.execute()
        del self._outbox[: len(batch)]

    async def _listen(self, pubsub: aioredis.client.PubSub) -> None:
        async for message in pubsub.listen():
            if message.get("type") == "message":
                for what, key in self._received(message["data"]):
                    # Awaited here, in the stream's order: the frames published after a change
                    # (a `joined`, a `members`) reach our sessions once our view has it, so a
                    # session that saw them may act on it here at once.
                    await self._apply_change(what, key)

    async def _apply_change(self, what: str, key: str) -> None:
        listener = self.change_listener
        if listener is None:
            return
        try:
            async with asyncio.timeout(CHANGE_TIMEOUT):
                await listener(what, key)
        except Exception:
            log.exception("redis: could not follow a change (%s %s)", what, key)

    def _send(self, kind: str, notification: bytes) -> None:
        self._outbox.append((kind, notification))
        self._outbox_ready.set()

    # --- what arrives -------------------------------------------------------------------------

    def _received(self, raw: bytes) -> list[tuple[str, str]]:
        """Act on one notification; return the changes of the store it says this node's view
        must follow (the caller awaits them before reading on)."""
        head, _, data = raw.partition(b"\n")
        note = json.loads(head)
        kind, node = note["k"], note["n"]
        mine = node == self.node
        if kind == "c":
            # Our own too: a view read from the store while we changed it may have missed it.
            return [(note["w"], note.get("key", ""))]
        if kind == "m":
            msg_id, position = note["id"], note["p"]
            self._saw(max(msg_id, position))
            message = StreamMessage(msg_id, tuple(note["to"]), data)
            self._order.message(node, msg_id, message, position)
            self._release()
        elif kind == "p":
            self._saw(note["p"])
            self._order.position(node, note["p"])
            self._release()
        elif kind == "e":
            if not mine:
                super().deliver(note["to"], data)
        elif kind == "b":
            if not mine:
                super().broadcast(data)
        elif kind == "on":
            key, nick, registered, identity = note["u"]
            self._presence.online(node, key, RemoteUser(nick, registered, identity))
        elif kind == "off":
            self._off(node, note["key"])
        elif kind == "join":
            self._saw(note["p"])
            self._order.position(node, note["p"])
            self._node_users(node, json.loads(data), announce=not mine)
            if not mine:
                self._publish_position(force=True)  # so the newcomer learns where we stand
            self._release()
        elif kind == "dead":
            if mine:
                if not self._closed:
                    log.warning("redis: declared dead by another node: joining again")
                    self._rewrite_hash = True
                    self._send("presence", self._join())
            else:
                gone = self._node_dead(node)
                self._release()
                if note.get("by") == self.node:
                    # We declared it dead: its guests' holds are ours to run.
                    return [("guest_gone", user.key) for user in gone if not user.registered]
        return []

    def _off(self, node: str, key: str) -> None:
        offline = self._presence.offline(node, key)
        if node == self.node and key in self._suppressed:
            nick = self._suppressed.pop(key)
            if offline and key not in self.users:
                # Both nodes thought the other still held the user; ours came last: say it.
                self.broadcast(encode(Presence(nick=nick, online=False)))

    def _node_users(self, node: str, listed: list[list[Any]], *, announce: bool) -> None:
        """`node` says these are all its users: apply the difference, telling our sessions
        about users who came or went everywhere (what that node's rules said while we were
        not listening, or before we knew it)."""
        now = {entry[0]: RemoteUser(entry[1], entry[2], entry[3]) for entry in listed}
        before = self._presence.users_of(node)
        for key, user in before.items():
            if key not in now and self._presence.offline(node, key) and announce:
                self._local_presence(user.nick, online=False, key=key)
        for key, user in now.items():
            if self._presence.online(node, key, user) and announce:
                self._local_presence(user.nick, online=True, key=key)

    def _node_dead(self, node: str) -> list[RemoteUser]:
        """Forget a dead node; the users it alone held, now offline everywhere."""
        self._order.writer_gone(node)
        gone = self._presence.node_gone(node)
        for user in gone:
            self._local_presence(user.nick, online=False, key=user.key)
        return gone

    def _local_presence(self, nick: str, *, online: bool, key: str) -> None:
        """A presence change every node sees for itself: told to our sessions only."""
        if key in self.users:
            return  # online here all along
        super().broadcast(encode(Presence(nick=nick, online=online)))

    # --- the ordered stream ---------------------------------------------------------------------

    def _saw(self, msg_id: int) -> None:
        before = self._writer.position
        self._writer.saw(msg_id)
        if self._writer.position > before:
            self._publish_position()

    def _publish_position(self, force: bool = False) -> None:
        """Tell the others where we stand, once per loop turn at most."""
        if force:
            self._published_position = -1
        if not self._position_due:
            self._position_due = True
            asyncio.get_running_loop().call_soon(self._send_position)

    def _send_position(self) -> None:
        self._position_due = False
        position = self._writer.position
        if position > self._published_position:
            self._published_position = position
            self._send("stream", _envelope({"k": "p", "n": self.node, "p": position}))

    def _release(self) -> None:
        release = self._order.release()
        if release.upto == release.after:
            return
        self._fill_from_own(release)
        if self._releases or (not release.complete and self.fetch_missing is not None):
            self._releases.append(release)
            if self._fetcher is None:
                self._fetcher = asyncio.get_running_loop().create_task(self._fetch_and_deliver())
            return
        self._deliver_released(release.items)

    def _fill_from_own(self, release: Release[StreamMessage]) -> None:
        """Our own messages whose notification never came back (Redis dropped it) are still
        here: deliver them from memory rather than lose them."""
        if release.complete or not self._own:
            return
        have = {msg_id for msg_id, _ in release.items}
        for msg_id, own in self._own.items():
            if release.after < msg_id <= release.upto and msg_id not in have:
                release.items.append((msg_id, own.message))
        release.items.sort(key=lambda item: item[0])

    async def _fetch_and_deliver(self) -> None:
        """Releases with holes, in order: ask the store for what no notification carried."""
        assert self.fetch_missing is not None
        try:
            while self._releases:
                release = self._releases[0]
                if not release.complete:
                    have = frozenset(msg_id for msg_id, _ in release.items)
                    try:
                        found = await self.fetch_missing(release.after, release.upto, have)
                    except Exception:
                        log.exception("fetching messages %d-%d", release.after + 1, release.upto)
                        found = []
                    release.items.extend((m.msg_id, m) for m in found if m.msg_id not in have)
                    release.items.sort(key=lambda item: item[0])
                self._releases.pop(0)
                self._deliver_released(release.items)
        finally:
            self._fetcher = None

    def _deliver_released(self, items: list[tuple[int, StreamMessage]]) -> None:
        for msg_id, message in items:
            own = self._own.pop(msg_id, None)
            asker, echo = (own.asker, own.echo) if own is not None else (None, None)
            super().deliver(message.nick_keys, message.data, msg_id, skip=asker, echo=echo)

    # --- the Hub methods the rules call ------------------------------------------------------------

    def online(self, nick: str) -> User | None:
        key = name_key(nick)
        here = self.users.get(key)
        if here is not None:
            return here
        there = self._presence.elsewhere(key, self.node)
        if there is None:
            return None
        # Online on another node: no sessions here, but its identity addresses its messages.
        return User(nick=there.nick, registered=there.registered, identity=there.identity)

    def attach(self, user: User, peer: Peer) -> tuple[User, bool]:
        existing, first_here = super().attach(user, peer)
        if not first_here:
            return existing, False
        self._suppressed.pop(existing.key, None)
        self._send("presence", _envelope({"k": "on", "n": self.node, "u": _user_fields(existing)}))
        self._hash("hset", existing)
        return existing, self._presence.elsewhere(existing.key, self.node) is None

    def detach(self, user: User, peer: Peer) -> bool:
        if not super().detach(user, peer):
            return False
        self._send("presence", _envelope({"k": "off", "n": self.node, "key": user.key}))
        self._hash("hdel", user)
        if self._presence.elsewhere(user.key, self.node) is not None:
            self._suppressed[user.key] = user.nick
            return False
        return True

    def _hash(self, command: str, user: User) -> None:
        """Keep our online hash in step (for nodes that start later), without waiting."""
        if self._client is None or not self.connected:
            return  # the join after reconnecting writes the whole hash again
        write = self._write_hash(self._client, command, user.key, json.dumps(_user_fields(user)))
        task = asyncio.get_running_loop().create_task(write)
        task.add_done_callback(_ignore_failure)

    async def _write_hash(
        self, client: aioredis.Redis, command: str, key: str, fields: str
    ) -> None:
        if command == "hset":
            await client.hset(online_key(self.node), key, fields)
        else:
            await client.hdel(online_key(self.node), key)

    def online_entries(self) -> Iterable[tuple[str, bytes]]:
        return self._online_entries()

    def _online_entries(self) -> Iterator[tuple[str, bytes]]:
        yield from super().online_entries()
        for key, entry in self._presence.entries().items():
            if key not in self.users and self._presence.elsewhere(key, self.node) is not None:
                yield key, entry

    def may_have_other_sessions(self, user: User) -> bool:
        # Sessions on other nodes are not counted here (a presence view may lag by a
        # notification): the reply is published, and each node finds the user's sessions.
        return True

    def writing(self) -> contextlib.AbstractContextManager[None]:
        if not self.connected:
            raise HubUnavailable()
        return self._write_in_flight()

    @contextlib.contextmanager
    def _write_in_flight(self) -> Iterator[None]:
        ticket = self._writer.begin()
        try:
            yield
        finally:
            self._writer.end(ticket)
            self._publish_position()

    def deliver(
        self,
        nick_keys: Iterable[str],
        data: bytes,
        msg_id: int = 0,
        skip: Peer | None = None,
        echo: bytes | None = None,
    ) -> None:
        keys = list(dict.fromkeys(nick_keys))
        if not msg_id:
            super().deliver(keys, data, 0, skip, echo)
            self._send("stream", _envelope({"k": "e", "n": self.node, "to": keys}, data))
            return
        # A message waits for its turn like the others' (our own notification releases it).
        self._writer.saw(msg_id)
        self._own[msg_id] = _Own(StreamMessage(msg_id, tuple(keys), data), skip, echo)
        position = self._writer.position
        self._published_position = max(self._published_position, position)
        header = {"k": "m", "n": self.node, "id": msg_id, "p": position, "to": keys}
        self._send("stream", _envelope(header, data))

    def broadcast(self, data: bytes) -> None:
        super().broadcast(data)
        self._send("stream", _envelope({"k": "b", "n": self.node}, data))

    def changed(self, what: str, key: str = "") -> None:
        # On the stream, so it comes before the events about it everywhere.
        self._send("stream", _envelope({"k": "c", "n": self.node, "w": what, "key": key}))

    def event_window(self, name: str, limit: int, window: float) -> EventWindow:
        # Built before start() (the rules are made first): the client is looked up per call.
        return _LazyRedisWindow(self, name, limit, window)

    # --- for the logs and tests ----------------------------------------------------------------------

    def held(self) -> int:
        """Messages waiting for another node's position."""
        return self._order.held()

    def position(self) -> int:
        return self._writer.position


class _LazyRedisWindow:
    """A `RedisEventWindow` over the hub's client, once there is one; Redis errors become
    `unavailable` (a limit that protects accounts is never skipped)."""

    def __init__(self, hub: RedisHub, name: str, limit: int, window: float) -> None:
        self._hub = hub
        self._args = (name, limit, window)
        self._window: RedisEventWindow | None = None

    def _redis(self) -> RedisEventWindow:
        if self._window is None:
            if self._hub._client is None:
                raise HubUnavailable()
            self._window = RedisEventWindow(self._hub._client, *self._args)
        return self._window

    async def blocked_for(self, key: str) -> float:
        try:
            return await self._redis().blocked_for(key)
        except (RedisError, OSError) as exc:
            raise HubUnavailable() from exc

    async def record(self, key: str) -> None:
        try:
            await self._redis().record(key)
        except (RedisError, OSError) as exc:
            raise HubUnavailable() from exc


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel `task` and wait for it, cancelling again if it carries on: on Python 3.11 a
    cancellation that meets a timeout inside redis-py can turn into a TimeoutError that its
    retry swallows (CPython gh-86296), and the task would run on."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)


def _ignore_failure(task: asyncio.Task[Any]) -> None:
    # A lost write of the online hash is repaired by the next join; say nothing twice.
    if not task.cancelled() and task.exception() is not None:
        log.debug("redis: online hash not updated: %s", task.exception())
