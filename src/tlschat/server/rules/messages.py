"""PROTOCOL.md "Messages": send (stored, then delivered to every session of every party) and
history."""

from __future__ import annotations

from tlschat.protocol import (
    ErrorCode,
    FileMeta,
    History,
    HistoryRequest,
    Message,
    RequestError,
    Send,
    encode,
    name_key,
    utc_timestamp,
    with_ref,
)
from tlschat.server import metrics
from tlschat.server.fit import fit_history
from tlschat.server.registry import Room, User
from tlschat.server.rules.base import (
    Context,
    Peer,
    address,
    held_guest,
    logged_in_user,
    room_as_stored,
    room_seen_by,
)
from tlschat.server.store import NewMessage, StoredMessage


class MessageRules:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def _dm_identity(self, nick: str) -> tuple[str, str] | None:
        """(identity, nick as spelled) of a user who exists (online, or registered)."""
        online = self.ctx.hub.online(nick)
        if online is not None:
            return online.identity, online.nick
        account = await self.ctx.store.get_user(name_key(nick))
        if account is not None:
            return name_key(nick), account.nick
        guest = await held_guest(self.ctx, name_key(nick))
        if guest is not None:  # a held guest: messages to it are kept for its return
            return guest.identity, guest.nick
        return None

    async def _identity_of(self, nick_key: str) -> str:
        online = self.ctx.hub.online(nick_key)
        if online is not None:
            return online.identity
        guest = await held_guest(self.ctx, nick_key)
        return guest.identity if guest is not None else nick_key

    async def _member_room(self, user: User, name: str) -> Room:
        # Joined on another node a moment ago? The store says so before we refuse.
        await room_as_stored(self.ctx, name, lambda r: r is not None and r.is_member(user.key))
        room = room_seen_by(self.ctx, user, name)
        if not room.is_member(user.key):
            raise RequestError(ErrorCode.NOT_MEMBER, f"you are not in {room.name}")
        return room

    async def send(self, peer: Peer, f: Send) -> None:
        ctx = self.ctx
        user = logged_in_user(peer)
        if len(f.text) > ctx.config.max_text:
            raise RequestError(
                ErrorCode.TEXT_TOO_LONG, f"text is longer than {ctx.config.max_text} characters"
            )
        if not f.text and f.file is None:
            raise RequestError(
                ErrorCode.BAD_REQUEST, "member 'text': may be empty only with a file"
            )
        kind, name = address("to", f.to)
        dm: tuple[str, str] | None = None
        room: Room | None = None
        if kind == "@":
            target = await self._dm_identity(name)
            if target is None:
                raise RequestError(ErrorCode.NO_SUCH_USER, f"no user {name}")
            dm = (user.identity, target[0])
            recipients = [name_key(name), user.key]
        else:
            room = await self._member_room(user, name)
            recipients = list(room.members)
        meta = None
        grant: tuple[str, ...] = ()
        if f.file is not None:
            meta = await ctx.files.meta_for_send(user, f.file)
            # Every recipient, offline members too (an account's identity is its key; a held
            # guest's is looked up).
            grant = tuple([await self._identity_of(k) for k in recipients])
            if dm is not None:
                grant += dm
        ts = utc_timestamp()
        try:
            with ctx.hub.writing():
                msg_id = await ctx.store.add_message(
                    NewMessage(
                        ts=ts,
                        sender=user.nick,
                        to_addr=f.to,
                        text=f.text,
                        dm=dm,
                        room_key=room.key if room else None,
                        file_id=f.file,
                        grant=grant,
                        sender_id=user.identity,
                    )
                )
        finally:
            if f.file is not None:
                ctx.files.send_done(f.file)
        # Committed: deliver now, with no await in between, so every session sees ids in the
        # order the store gave them (the store wakes the senders of a batch in commit order).
        ctx.last_id = max(ctx.last_id, msg_id)
        metrics.MESSAGES_STORED.inc()
        metrics.MESSAGES_DELIVERED.inc()  # the echo to the sender's asking session
        data = encode(Message(id=msg_id, ts=ts, from_=user.nick, to=f.to, text=f.text, file=meta))
        # The echo to the asking session goes through the hub too: with several nodes it must
        # wait for the ids below it like every other session's copy (architecture.md).
        ctx.hub.deliver(recipients, data, msg_id, skip=peer, echo=with_ref(data, f.ref))

    async def history(self, peer: Peer, f: HistoryRequest) -> None:
        ctx = self.ctx
        user = logged_in_user(peer)
        kind, name = address("with", f.with_)
        if kind == "@":
            target = await self._dm_identity(name)
            if target is None:
                raise RequestError(ErrorCode.NO_SUCH_USER, f"no user {name}")
            stored, more = await ctx.store.history(
                dm=(user.identity, target[0]), before=f.before, limit=f.limit
            )
        else:
            room = room_seen_by(ctx, user, name)
            if not room.is_member(user.key):
                raise RequestError(
                    ErrorCode.FORBIDDEN, f"only members of {room.name} may read its history"
                )
            stored, more = await ctx.store.history(
                room_key=room.key, before=f.before, limit=f.limit
            )
        messages = await message_frames(ctx, stored)
        reply = History(ref=f.ref, with_=f.with_, messages=tuple(messages), more=more)
        peer.send(fit_history(reply, ctx.config.max_frame))


async def message_frames(ctx: Context, stored: list[StoredMessage]) -> list[Message]:
    """Stored messages as `message` frames, with their files' metadata."""
    file_ids = {m.file_id for m in stored if m.file_id and not m.deleted}
    metas = await ctx.files.metas(file_ids) if file_ids else {}
    return [message_frame(m, metas) for m in stored]


def message_frame(m: StoredMessage, metas: dict[str, FileMeta]) -> Message:
    """A stored message as it stands now (PROTOCOL.md "Edit and delete"): a deleted one with
    no text and no file; an edited one with its latest text and the time of that edit."""
    if m.deleted:
        return Message(id=m.id, ts=m.ts, from_=m.sender, to=m.to_addr, text="", deleted=True)
    return Message(
        id=m.id,
        ts=m.ts,
        from_=m.sender,
        to=m.to_addr,
        text=m.text,
        file=metas.get(m.file_id) if m.file_id else None,
        edit_of=m.edit_of,
        delete_of=m.delete_of,
        edited=m.edited,
    )
