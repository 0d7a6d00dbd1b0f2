"""A stand-in for `tlschat.client.ChatClient` with the same surface: no sockets, scripted by tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from tlschat import protocol
from tlschat.client import ConnectionState, StateChanged, TrustError

LIMITS = protocol.Limits(
    max_frame=65536, max_text=4000, max_upload=10 * 1024 * 1024, chunk=32768, guest_hold=600
)


def stamp(minute: int) -> str:
    """A fixed UTC timestamp: 2026-11-26 12:MM (tests pin the zone to UTC)."""
    return f"2026-11-26T{12 + minute // 60:02d}:{minute % 60:02d}:00.000Z"


class FakeClient:
    """Records every request in `calls`; `push()` feeds `events()`; `fail[method]` makes a request raise."""

    def __init__(
        self,
        nick: str = "bob",
        *,
        host: str = "127.0.0.1",
        port: int = 7700,
        users: Iterable[tuple[str, bool]] = (),
        rooms: Iterable[tuple[str, Sequence[str]]] = (),
        invites: Iterable[tuple[str, str]] = (),
        public_rooms: Iterable[tuple[str, int]] = (),
        connect_errors: Iterable[BaseException] = (),
        ask: Callable[[str, int, str], Awaitable[bool]] | None = None,
        fingerprint: str = ":".join(["AB"] * 32),
        last_seen: int | None = None,
        conversations: Iterable[tuple[str, int, int, int]] = (),
        resume: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.nick = nick
        self.tls_version: str | None = "TLSv1.3"
        self.cipher: str | None = "TLS_AES_256_GCM_SHA384"
        self.server_fingerprint: str | None = None
        self.ask = ask
        """Like `Trust(ask=...)`: when set, `connect()` asks about `fingerprint` first."""
        self.fingerprint = fingerprint
        self.state = ConnectionState.DISCONNECTED
        self.resumed_from = last_seen
        """The `last_seen` it was built with (where a real client resumes)."""
        self.last_seen = last_seen or 0
        """The highest message id `events()` yielded, like `ChatClient.last_seen`."""
        self.calls: list[tuple[Any, ...]] = []
        self.fail: dict[str, BaseException] = {}
        self.connect_errors = list(connect_errors)
        self.store: dict[str, list[protocol.Message]] = {}
        """Messages by conversation, as `history()` serves them."""
        self.members: dict[str, list[str]] = {room.casefold(): list(m) for room, m in rooms}
        self.users = [nick, *(n for n, _ in users)]
        """Every user the fake server knows: `history` of anyone else is `no_such_user`."""
        self.welcome = protocol.Welcome(
            nick=nick,
            server="tlschat/0.1.0",
            limits=LIMITS,
            users=tuple(protocol.UserInfo(nick=n, online=o) for n, o in [(nick, True), *users]),
            rooms=tuple(protocol.RoomInfo(room=r, members=tuple(m)) for r, m in rooms),
            public_rooms=tuple(protocol.PublicRoomInfo(room=r, members=c) for r, c in public_rooms),
            invites=tuple(protocol.InviteInfo(room=r, by=b) for r, b in invites),
            last_id=0,
            conversations=tuple(
                protocol.ConversationInfo(with_=w, last_id=last, read=read, unread=unread)
                for w, last, read, unread in conversations
            ),
            resume=resume,
        )
        self.read: dict[str, int] = {}
        """Read markers the TUI sent, by folded address (`mark_read`)."""
        self.files: dict[str, bytes] = {}
        self.metas: dict[str, protocol.FileMeta] = {}
        self.upload_gate: asyncio.Event | None = None
        """When set, uploads wait for it after their first chunk (to test cancelling)."""
        self.progress: list[tuple[int, int]] = []
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._next_id = self.last_seen + 1
        self._minute = 0

    # --- test helpers ------------------------------------------------------------------------

    def push(self, *events: Any) -> None:
        for event in events:
            self._queue.put_nowait(event)

    def end(self) -> None:
        """`events()` ends (the client closed for good)."""
        self._queue.put_nowait(None)

    def make_message(
        self, sender: str, to: str, text: str, *, minute: int | None = None
    ) -> protocol.Message:
        """A message with the next id, stored for `history()` (not pushed)."""
        if minute is None:
            minute = self._minute
            self._minute += 1
        message = protocol.Message(
            id=self._next_id, ts=stamp(minute), from_=sender, to=to, text=text
        )
        self._next_id += 1
        self.store.setdefault(self._conversation(message), []).append(message)
        return message

    def receive(self, sender: str, to: str, text: str, **kwargs: Any) -> protocol.Message:
        """Push a message from someone else (or anyone) to the TUI."""
        message = self.make_message(sender, to, text, **kwargs)
        self.push(message)
        return message

    def add_file(self, name: str, data: bytes) -> protocol.FileMeta:
        """Store a file as the server would (pictures get their dimensions); its metadata."""
        import hashlib
        import io

        width = height = None
        mime = "application/octet-stream"
        if data.startswith((b"\x89PNG", b"\xff\xd8", b"GIF8", b"RIFF")):
            from PIL import Image

            try:
                with Image.open(io.BytesIO(data)) as img:
                    img.load()
                    width, height = img.size
                    mime = Image.MIME.get(img.format or "", "image/png")
            except Exception:
                raise protocol.RequestFailed("bad_file", "not a valid image") from None
        file_id = f"file{len(self.metas) + 1}"
        meta = protocol.FileMeta(
            id=file_id,
            name=name,
            size=len(data),
            mime=mime,
            sha256=hashlib.sha256(data).hexdigest(),
            width=width,
            height=height,
        )
        self.files[file_id] = data
        self.metas[file_id] = meta
        return meta

    def receive_file(
        self, sender: str, to: str, name: str, data: bytes, text: str = "", **kwargs: Any
    ) -> protocol.Message:
        """Push a message carrying a file from someone else."""
        meta = self.add_file(name, data)
        message = self.make_message(sender, to, text, **kwargs).model_copy(update={"file": meta})
        self._replace_stored(message)
        self.push(message)
        return message

    def _replace_stored(self, message: protocol.Message) -> None:
        stored = self.store[self._conversation(message)]
        stored[-1] = message

    def _conversation(self, message: protocol.Message) -> str:
        if message.to.startswith("#"):
            return message.to.casefold()
        if message.from_.casefold() == self.nick.casefold():
            return message.to.casefold()
        return f"@{message.from_}".casefold()

    def _record(self, *call: Any) -> None:
        self.calls.append(call)
        error = self.fail.get(call[0])
        if error is not None:
            raise error

    def calls_to(self, method: str) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == method]

    # --- the ChatClient surface --------------------------------------------------------------

    async def connect(self) -> protocol.Welcome:
        self.calls.append(("connect",))
        self.push(StateChanged(ConnectionState.CONNECTING, f"{self.host}:{self.port}"))
        if self.ask is not None and not await self.ask(self.host, self.port, self.fingerprint):
            raise TrustError(self.host, self.port, self.fingerprint, "rejected")
        self.server_fingerprint = self.fingerprint
        if self.connect_errors:
            self.state = ConnectionState.DISCONNECTED
            raise self.connect_errors.pop(0)
        self.state = ConnectionState.CONNECTED
        self.push(StateChanged(ConnectionState.CONNECTED, f"{self.host}:{self.port}"))
        return self.welcome

    async def close(self) -> None:
        self.calls.append(("close",))
        self.state = ConnectionState.CLOSED
        self.end()

    async def events(self) -> AsyncIterator[Any]:
        while True:
            event = await self._queue.get()
            if event is None:
                return
            if isinstance(event, protocol.Message):
                self.last_seen = max(self.last_seen, event.id)
            yield event

    async def send_message(self, to: str, text: str, file: str | None = None) -> protocol.Message:
        self._record("send_message", to, text, *((file,) if file else ()))
        message = self.make_message(self.nick, to, text)
        if file is not None:
            message = message.model_copy(update={"file": self.metas[file]})
            self._replace_stored(message)
        self.push(message)  # the echo
        return message

    def knows(self, nick: str) -> bool:
        everyone = {n.casefold() for n in self.users}
        everyone |= {m.casefold() for members in self.members.values() for m in members}
        everyone |= {m.from_.casefold() for ms in self.store.values() for m in ms}
        return nick.casefold() in everyone

    async def history(
        self, with_: str, before: int | None = None, limit: int = 50
    ) -> protocol.History:
        self._record("history", with_, before)
        if with_.startswith("@") and not self.knows(with_[1:]):
            raise protocol.RequestFailed("no_such_user", f"no user {with_[1:]}")
        messages = [
            m for m in self.store.get(with_.casefold(), []) if before is None or m.id < before
        ]
        page = messages[-limit:]
        return protocol.History(with_=with_, messages=tuple(page), more=len(messages) > len(page))

    async def conversations(self) -> protocol.Conversations:
        self._record("conversations")
        return protocol.Conversations(conversations=self.welcome.conversations)

    async def mark_read(self, with_: str, message_id: int) -> None:
        self._record("mark_read", with_, message_id)
        key = with_.casefold()
        self.read[key] = max(self.read.get(key, 0), message_id)

    async def create_room(
        self, room: str, *, public: bool = False, invite: Sequence[str] = ()
    ) -> protocol.Joined:
        self._record("create_room", room, tuple(invite))
        self.public_created = public
        self.members[room.casefold()] = [self.nick]
        joined = protocol.Joined(room=room, members=(self.nick,), public=public)
        self.push(joined)
        return joined

    async def invite(self, room: str, nick: str) -> None:
        self._record("invite", room, nick)

    async def accept(self, room: str) -> protocol.Joined:
        self._record("accept", room)
        members = (*self.members.get(room.casefold(), []), self.nick)
        self.members[room.casefold()] = list(members)
        joined = protocol.Joined(room=room, members=members)
        self.push(joined, protocol.Members(room=room, members=members))
        return joined

    async def decline(self, room: str) -> None:
        self._record("decline", room)

    async def join(self, room: str) -> protocol.Joined:
        self._record("join", room)
        members = (*self.members.get(room.casefold(), []), self.nick)
        joined = protocol.Joined(room=room, members=members, public=True)
        self.push(joined)
        return joined

    async def leave(self, room: str) -> protocol.Left:
        self._record("leave", room)
        left = protocol.Left(room=room)
        self.push(left)
        return left

    async def set_topic(self, room: str, topic: str) -> protocol.TopicEvent:
        self._record("topic", room, topic)
        event = protocol.TopicEvent(room=room, topic=topic, by=self.nick)
        self.push(event)
        return event

    async def kick(self, room: str, nick: str, reason: str | None = None) -> None:
        self._record("kick", room, nick)

    async def upload_file(
        self, path: Path, *, progress: Callable[[int, int], None] | None = None
    ) -> protocol.FileMeta:
        data = await asyncio.to_thread(Path(path).read_bytes)
        self._record("upload_file", Path(path).name, len(data))
        if len(data) > self.welcome.limits.max_upload:
            raise protocol.RequestFailed("too_large", "too large")
        half = len(data) // 2
        for done in (half, len(data)):
            if progress is not None:
                progress(done, len(data))
            self.progress.append((done, len(data)))
            if self.upload_gate is not None and done == half:
                await self.upload_gate.wait()
        return self.add_file(Path(path).name, data)

    async def download_to(
        self, file_id: str, path: Path, *, meta: protocol.FileMeta | None = None
    ) -> None:
        self._record("download_to", file_id)
        if file_id not in self.files:
            raise protocol.RequestFailed("no_such_file", "no such file")
        await asyncio.to_thread(Path(path).write_bytes, self.files[file_id])

    async def typing(self, to: str) -> None:
        self._record("typing", to)

    async def search(
        self, query: str, with_: str | None = None, before: int | None = None, limit: int = 20
    ) -> protocol.SearchResult:
        """Every stored message holding each word of `query` (no prefix, no phrases: enough
        for the screen), newest first."""
        self._record("search", query, with_)
        words = [w.casefold() for w in query.split()]
        found = [
            m
            for key, messages in self.store.items()
            if with_ is None or key == with_.casefold()
            for m in messages
            if all(w in m.text.casefold().split() for w in words)
        ]
        found.sort(key=lambda m: m.id, reverse=True)
        return protocol.SearchResult(
            query=query, messages=tuple(found[:limit]), more=len(found) > limit
        )

    async def edit(self, message_id: int, text: str) -> protocol.Message:
        self._record("edit", message_id, text)
        original = self._find(message_id)
        entry = protocol.Message(
            id=self._next_id, ts=original.ts, from_=original.from_, to=original.to, text=text,
            edit_of=message_id,
        )  # fmt: skip
        self._next_id += 1
        self.push(entry)
        return entry

    async def delete(self, message_id: int) -> protocol.Message:
        self._record("delete", message_id)
        original = self._find(message_id)
        entry = protocol.Message(
            id=self._next_id, ts=original.ts, from_=original.from_, to=original.to, text="",
            delete_of=message_id,
        )  # fmt: skip
        self._next_id += 1
        self.push(entry)
        return entry

    def _find(self, message_id: int) -> protocol.Message:
        for messages in self.store.values():
            for message in messages:
                if message.id == message_id:
                    return message
        raise protocol.RequestFailed("no_such_message", f"no message {message_id}")
