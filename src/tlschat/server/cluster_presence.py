"""Who is online on which node of a cluster; no I/O.

The Redis hub feeds it the presence events of every node in the one order the pub/sub channel
gives (its own node's too), so every node computes the same transitions. A user is online while
any node holds a session of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tlschat.protocol import UserInfo, encode_payload, name_key


@dataclass(frozen=True)
class RemoteUser:
    """An online user as another node describes it: enough for the rules to address it."""

    nick: str
    registered: bool
    identity: str

    @property
    def key(self) -> str:
        return name_key(self.nick)

    def entry(self) -> bytes:
        """Its encoded `users` entry (spliced into `welcome` and `users` replies)."""
        return encode_payload(UserInfo(nick=self.nick, online=True))


class ClusterPresence:
    def __init__(self) -> None:
        self._nodes: dict[str, dict[str, RemoteUser]] = {}
        """nick key -> node -> how that node describes the user."""
        self._entries: dict[str, bytes] = {}
        """nick key -> encoded `users` entry, made once when it comes online."""

    def online(self, node: str, key: str, user: RemoteUser) -> bool:
        """`node` holds a session of `key` now; True if the user just came online anywhere."""
        nodes = self._nodes.setdefault(key, {})
        first = not nodes
        nodes[node] = user
        if first:
            self._entries[key] = user.entry()
        return first

    def offline(self, node: str, key: str) -> bool:
        """`node` holds no session of `key` any more; True if the user is now offline everywhere."""
        nodes = self._nodes.get(key)
        if nodes is None or nodes.pop(node, None) is None:
            return False
        if nodes:
            return False
        del self._nodes[key]
        del self._entries[key]
        return True

    def node_gone(self, node: str) -> list[RemoteUser]:
        """`node` is dead (or left): the users it alone held, now offline everywhere."""
        gone = []
        for key in [k for k, nodes in self._nodes.items() if node in nodes]:
            user = self._nodes[key][node]
            if self.offline(node, key):
                gone.append(user)
        return gone

    def users_of(self, node: str) -> dict[str, RemoteUser]:
        return {key: nodes[node] for key, nodes in self._nodes.items() if node in nodes}

    def elsewhere(self, key: str, here: str) -> RemoteUser | None:
        """How another node than `here` describes `key`, if one holds a session of it."""
        for node, user in self._nodes.get(key, {}).items():
            if node != here:
                return user
        return None

    def entries(self) -> dict[str, bytes]:
        return self._entries
