"""PROTOCOL.md "Edit and delete": each a new entry of the message sequence, stored, then
delivered like a message to every session of every party."""

from __future__ import annotations

from tlschat.protocol import (
    Delete,
    Edit,
    ErrorCode,
    Message,
    RequestError,
    encode,
    name_key,
    utc_timestamp,
    with_ref,
)
from tlschat.server.registry import User
from tlschat.server.rules.base import Context, Peer, logged_in_user
from tlschat.server.store import NewMessage, StoredMessage


def dm_recipients(ctx: Context, dm: tuple[str, str]) -> list[str]:
    """The nick keys of the parties of a direct conversation that can still be reached. A
    guest's identity is `~key~token`: its conversation is delivered to that nick only while
    that very guest holds it (a later guest of the same nick must get nothing of it)."""
    keys: list[str] = []
    for identity in dict.fromkeys(dm):
        if identity.startswith("~"):
            key = identity.split("~")[1]
            online = ctx.hub.online(key)
            if online is None or online.identity != identity:
                continue
            keys.append(key)
        else:
            keys.append(identity)
    return keys


def is_sender(user: User, m: StoredMessage) -> bool:
    if m.sender_id is not None:
        return m.sender_id == user.identity
    # Stored before senders' identities were: only an account can be sure it wrote it.
    return user.registered and name_key(m.sender) == user.key


class EditRules:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _recipients(self, user: User, m: StoredMessage) -> list[str] | None:
        """Who gets entries about `m` now, or None if `user` cannot read its conversation."""
        if m.dm is not None:
            return dm_recipients(self.ctx, m.dm) if user.identity in m.dm else None
        room = self.ctx.registry.rooms.get(m.room_key or "")
        if room is None or not room.is_member(user.key):
            return None
        return list(room.members)

    async def _own_message(self, user: User, msg_id: int) -> StoredMessage:
        m = await self.ctx.store.get_message(msg_id) if msg_id else None
        if m is None or m.is_entry or m.deleted or self._recipients(user, m) is None:
            raise RequestError(ErrorCode.NO_SUCH_MESSAGE, f"no message {msg_id}")
        if not is_sender(user, m):
            raise RequestError(ErrorCode.FORBIDDEN, "only its sender may change a message")
        return m

    async def edit(self, peer: Peer, f: Edit) -> None:
        ctx = self.ctx
        user = logged_in_user(peer)
        if len(f.text) > ctx.config.max_text:
            raise RequestError(
                ErrorCode.TEXT_TOO_LONG, f"text is longer than {ctx.config.max_text} characters"
            )
        m = await self._own_message(user, f.id)
        if not f.text and m.file_id is None:
            raise RequestError(
                ErrorCode.BAD_REQUEST, "member 'text': may be empty only if the message has a file"
            )
        await self._store_and_deliver(peer, user, m, f.ref, text=f.text, edit_of=m.id)

    async def delete(self, peer: Peer, f: Delete) -> None:
        user = logged_in_user(peer)
        m = await self._own_message(user, f.id)
        await self._store_and_deliver(peer, user, m, f.ref, text="", delete_of=m.id)

    async def _store_and_deliver(
        self,
        peer: Peer,
        user: User,
        m: StoredMessage,
        ref: str | None,
        *,
        text: str,
        edit_of: int | None = None,
        delete_of: int | None = None,
    ) -> None:
        ctx = self.ctx
        ts = utc_timestamp()
        with ctx.hub.writing():
            entry_id = await ctx.store.add_message(
                NewMessage(
                    ts=ts,
                    sender=user.nick,
                    to_addr=m.to_addr,
                    text=text,
                    dm=m.dm,
                    room_key=m.room_key,
                    sender_id=user.identity,
                    edit_of=edit_of,
                    delete_of=delete_of,
                )
            )
        if entry_id == 0:  # deleted while we were checking
            raise RequestError(ErrorCode.NO_SUCH_MESSAGE, f"no message {m.id}")
        # Committed: deliver with no await in between, as `send` does (ids in order).
        ctx.last_id = max(ctx.last_id, entry_id)
        recipients = self._recipients(user, m) or []
        frame = Message(
            id=entry_id,
            ts=ts,
            from_=user.nick,
            to=m.to_addr,
            text=text,
            edit_of=edit_of,
            delete_of=delete_of,
        )
        data = encode(frame)
        ctx.hub.deliver(recipients, data, entry_id, skip=peer, echo=with_ref(data, ref))
