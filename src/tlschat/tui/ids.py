"""DOM ids for conversations and sidebar rows: the one place they are built."""

from __future__ import annotations

from typing import Literal

Kind = Literal["dm", "room", "user", "group", "invite", "public", "member"]
"""What an id names: a DM pane, a group pane, or a row in the sidebar or a member list."""

_KEEP = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
"""Characters kept as they are; Textual ids allow letters, digits, `_` and `-`, and `_` is our escape."""


def escape_name(name: str) -> str:
    """`Bob.x` -> `bob_2ex`: casefold, then write every other character as `_` + its hex code.

    Names compare case-insensitively (PROTOCOL.md "Names and addresses"), so ids do too. `_`
    itself is escaped (`_5f`), which keeps the mapping one-to-one.
    """
    out: list[str] = []
    for char in name.casefold():
        if char in _KEEP:
            out.append(char)
        elif ord(char) < 0x100:
            out.append(f"_{ord(char):02x}")
        else:  # not in a valid name, but never let it break an id
            out.append(f"_u{ord(char):x}_")
    return "".join(out)


def pane_id(kind: Kind, name: str) -> str:
    """The DOM id for `name` in the role `kind`: `pane_id("dm", "Bob.x") == "dm-bob_2ex"`."""
    return f"{kind}-{escape_name(name)}"


def address_pane_id(address: str) -> str:
    """The id of the conversation pane for `@nick` or `#room`."""
    return pane_id("dm" if address.startswith("@") else "room", address[1:])
