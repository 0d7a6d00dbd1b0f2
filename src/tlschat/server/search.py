"""A `search` query (PROTOCOL.md "Search") as words and phrases, for any store; no I/O.

Each store turns a `SearchQuery` into its own full-text syntax (SQLite FTS5 in
server/sqlite_store.py; a PostgreSQL store would build a `tsquery`). What a word is, is the
store's tokenizer's business: here a word is only a run of non-space characters holding at
least one letter or digit, so punctuation alone (`-`, `!!!`) is no word and never asks for one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PART = re.compile(r'"([^"]*)"?|([^\s"]+)')
"""A quoted part (up to the next quote, or the end if the quote is never closed), or a word."""


@dataclass(frozen=True)
class SearchQuery:
    """Every phrase must appear in a matching message; a phrase is one or more words that must
    appear in that order (a bare word of the query is a phrase of one word)."""

    phrases: tuple[tuple[str, ...], ...]
    prefix: bool
    """The last word of the last phrase may also be the start of a word (it was a bare word,
    the query's last: "deplo" finds "deployed"). A quoted part is matched exactly."""


def _is_word(word: str) -> bool:
    return any(ch.isalnum() for ch in word)


def parse_query(query: str) -> SearchQuery | None:
    """The query's phrases, or None if it holds no word at all."""
    phrases: list[tuple[str, ...]] = []
    prefix = False
    for match in _PART.finditer(query):
        quoted, bare = match.group(1), match.group(2)
        if bare is not None:
            if _is_word(bare):
                phrases.append((bare,))
                prefix = True
            continue
        words = tuple(w for w in quoted.split() if _is_word(w))
        if words:
            phrases.append(words)
            prefix = False
    if not phrases:
        return None
    return SearchQuery(tuple(phrases), prefix)
