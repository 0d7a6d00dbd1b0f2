"""Full-text search on PostgreSQL's own engine, with the words SQLite's FTS5 would see.

A word is what the embedded store's engine says it is: SQLite FTS5's `unicode61` tokenizer
(remove_diacritics 0), a run of letters and digits (in its Unicode tables; some marks too),
folded one character for one. PostgreSQL's own parser would cut differently (`foo-bar` is a
word, URLs and e-mail addresses are one token each), so FTS5 is asked once which characters
are word characters and how they fold, the words are cut here with that, and handed to
PostgreSQL ready-made
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
import sqlite3
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from tlschat.server.search import SearchQuery

FTS5_TOKENIZER = "unicode61 remove_diacritics 0"
"""The SQLite store's tokenizer (sqlite_store.py, migration 6): what a word is."""
MAX_LEXEME_BYTES = 2046
"""PostgreSQL refuses longer words; such a word is left out of the index (and cannot be found)."""
MAX_POSITION = 16383
MAX_POSITIONS = 255
"""Positions kept per word (PostgreSQL keeps 256 at most)."""


_SCANNED = [(0, 0x32400), (0xE0000, 0xE0200)]
"""The code points whose nature is asked of FTS5 one by one: every assigned one."""
_PROBED = [(0x32400, 0xE0000, 0x40000), (0xE0200, 0x110000, 0xF0000)]
"""Ranges (nothing assigned in them, or private use) that take the nature of one probe."""


@dataclass(frozen=True)
class _Alphabet:
    word: re.Pattern[str]
    """A word: a character that may begin one, then word characters."""
    folding: dict[int, str]
    """Each word character that folds to another (str.translate table)."""


@functools.cache
def _alphabet() -> _Alphabet:
    """Ask SQLite's FTS5 itself (the embedded store's engine) which characters are word
    characters and how it folds them: each code point is written between two `a`, and the
    tokenizer gives back one word `a?a` (a word character, folded) or two words `a` (a
    separator). ~1 s once per process: the store builds it off the event loop when it opens."""
    probes = [probe for _, _, probe in _PROBED]
    points = [
        cp
        for first, end in _SCANNED
        for cp in range(first, end)
        if not 0xD800 <= cp <= 0xDFFF  # surrogates are not characters
    ] + probes
    terms = iter(_fts5_terms(" ".join(f"a{chr(cp)}a" for cp in points)))
    is_word: dict[int, bool] = {}
    folding: dict[int, str] = {}
    for cp in points:
        term = next(terms)
        if term == "a":  # a separator cut "aXa" in two
            next(terms)
            is_word[cp] = False
            continue
        is_word[cp] = True
        folded = term[1:-1]
        if folded != chr(cp):
            folding[cp] = folded
    # Some marks belong to a word but never begin one: "Xa" gives "a" alone.
    marks = [cp for cp in points if is_word[cp] and unicodedata.category(chr(cp)).startswith("M")]
    starts = _fts5_terms(" ".join(f"{chr(cp)}a" for cp in marks))
    never_first = {cp for cp, term in zip(marks, starts, strict=True) if term == "a"}
    scanned = points[: -len(probes)]
    word = _ranges([cp for cp in scanned if is_word[cp]])
    first = _ranges([cp for cp in scanned if is_word[cp] and cp not in never_first])
    more = [(start, end - 1) for start, end, probe in _PROBED if is_word[probe]]
    return _Alphabet(re.compile(f"[{_class(first + more)}][{_class(word + more)}]*"), folding)


def _fts5_terms(text: str) -> list[str]:
    """The words FTS5 cuts `text` into, in order."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"CREATE VIRTUAL TABLE t USING fts5(x, tokenize='{FTS5_TOKENIZER}')")
        conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
        conn.execute("INSERT INTO t VALUES (?)", (text,))
        return [row[0] for row in conn.execute("SELECT term FROM v ORDER BY offset")]
    finally:
        conn.close()


def _ranges(points: list[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for cp in points:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    return ranges


def _class(ranges: list[tuple[int, int]]) -> str:
    """The inside of a regular expression's [character class]."""
    return "".join(
        re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"
        for a, b in ranges
    )


def warm_up() -> None:
    """Build the alphabet now (call it on a thread)."""
    _alphabet()


def words(text: str) -> list[str]:
    """The words of `text` as FTS5 unicode61 cuts and folds them."""
    alphabet = _alphabet()
    return [word.translate(alphabet.folding) for word in alphabet.word.findall(text)]


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
