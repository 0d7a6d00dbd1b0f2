"""Full-text search on PostgreSQL's own engine, with the words SQLite's FTS5 would see.

PROTOCOL.md "Search" says what a word is by what the embedded store does: SQLite FTS5's
`unicode61` tokenizer (remove_diacritics 0), where a word is a run of letters, digits,
non-spacing marks and private-use characters, folded to lower case one character for one.
PostgreSQL's own parser would cut differently (`foo-bar` is a word, URLs and e-mail addresses
are one token each), so the words are cut here, in Python, and handed to PostgreSQL ready-made
as a `tsvector` literal (each word with its positions, for phrases) and a `tsquery` literal
(`<->` between the words of a phrase, `&` between phrases, `:*` on the last word when it may be
a prefix). PostgreSQL then does the matching and the GIN index does the finding.

A message's vector also holds its conversations as lexemes that no word can be (`#` + the room
key in hex, `@` + each party's identity in hex; a prefix query starts with a letter or digit,
so it never reaches them): a search is confined to the user's conversations inside the index,
as the FTS5 store does with its `conv` column.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable

from tlschat.server.search import SearchQuery

MAX_LEXEME_BYTES = 2046
"""PostgreSQL refuses longer words; such a word is left out of the index (and cannot be found)."""
MAX_POSITION = 16383
MAX_POSITIONS = 255
"""Positions kept per word (PostgreSQL keeps 256 at most)."""


@functools.cache
def _word_pattern() -> re.Pattern[str]:
    """Letters and digits (`[^\\W_]`), non-spacing marks (Mn) and private-use characters (Co):
    FTS5 unicode61's token characters. The marks are listed once per process (~50 ms; the store
    builds this off the event loop when it opens)."""
    ranges: list[str] = []
    start: int | None = None
    planes = [*range(0x20000), *range(0xE0000, 0xE0200)]
    for cp in planes:
        is_mark = unicodedata.category(chr(cp)) == "Mn"
        if is_mark and start is None:
            start = cp
        elif not is_mark and start is not None:
            ranges.append(f"{re.escape(chr(start))}-{re.escape(chr(cp - 1))}")
            start = None
    private = "\ue000-\uf8ff\U000f0000-\U000ffffd\U00100000-\U0010fffd"
    return re.compile(f"(?:[^\\W_]|[{''.join(ranges)}{private}])+")


def warm_up() -> None:
    """Build the word pattern now (call it on a thread)."""
    _word_pattern()


def _fold(word: str) -> str:
    # FTS5 folds one character into one: İ (whose lower case is two characters) stays.
    if "\u0130" in word:
        return "".join(ch if ch == "\u0130" else ch.lower() for ch in word)
    return word.lower()


def words(text: str) -> list[str]:
    """The words of `text` as FTS5 unicode61 cuts and folds them."""
    return [_fold(word) for word in _word_pattern().findall(text)]


def _quote(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def text_vector(text: str) -> str:
    """A `tsvector` literal of the words of `text`, each with its positions (1, 2, ...)."""
    positions: dict[str, list[int]] = {}
    for index, word in enumerate(words(text), start=1):
        if len(word.encode()) > MAX_LEXEME_BYTES:
            continue
        found = positions.setdefault(word, [])
        if len(found) < MAX_POSITIONS:
            found.append(min(index, MAX_POSITION))
    return " ".join(
        f"{_quote(word)}:{','.join(map(str, dict.fromkeys(places)))}"
        for word, places in positions.items()
    )


def room_lexeme(room_key: str) -> str:
    return "#" + room_key.encode().hex()


def party_lexeme(identity: str) -> str:
    return "@" + identity.encode().hex()


def text_query(query: SearchQuery, scope: Iterable[Iterable[str]] = ()) -> str:
    """A `tsquery` literal: every phrase (its words in order), the last word a prefix if the
    query allows it; and, with `scope`, in one of these conversations (each a group of
    lexemes that must all be there)."""
    phrases: list[list[str]] = []
    for phrase in query.phrases:
        cut = [word for part in phrase for word in words(part)]
        if cut:
            phrases.append([_quote(word) for word in cut])
    if not phrases:
        return ""
    if query.prefix:
        phrases[-1][-1] += ":*"
    parts = ["(" + " <-> ".join(phrase) + ")" for phrase in phrases]
    alternatives = ["(" + " & ".join(map(_quote, group)) + ")" for group in scope]
    if alternatives:
        parts.append("(" + " | ".join(alternatives) + ")")
    return " & ".join(parts)
