"""pg_search cuts words as SQLite FTS5's unicode61 tokenizer does (the search contract of the
embedded store), and builds tsvector / tsquery literals from them."""

from __future__ import annotations

import sqlite3

from hypothesis import given, settings
from hypothesis import strategies as st

from tlschat.server import pg_search
from tlschat.server.search import parse_query


def fts5_words(text: str) -> list[str]:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='unicode61 remove_diacritics 0')")
    conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
    conn.execute("INSERT INTO t VALUES (?)", (text,))
    return [row[0] for row in conn.execute("SELECT term FROM v ORDER BY offset")]


SAMPLES = [
    "Deployed the new build",
    "foo-bar baz: http://example.com/path?q=1",
    "Café crème, naïve façade",
    "cafe\u0301 x_y a.b@c.com ÀÉÎ ß \ue000pua ٣٤ ½ x²",
    "v1.2.3 don't 3.14 ---",
    "日本語のテキスト and 한국어",
]


def test_words_are_fts5s_words() -> None:
    for text in SAMPLES:
        assert pg_search.words(text) == fts5_words(text), text


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40))
def test_words_are_fts5s_words_for_any_text(text: str) -> None:
    assert pg_search.words(text) == fts5_words(text)


def test_text_vector_keeps_positions() -> None:
    assert pg_search.text_vector("the cat and the hat") == "'the':1,4 'cat':2 'and':3 'hat':5"
    assert pg_search.text_vector("!!!") == ""


def test_text_query() -> None:
    query = parse_query('"new build" deplo')
    assert query is not None
    assert pg_search.text_query(query) == "('new' <-> 'build') & ('deplo':*)"
    query = parse_query("foo-bar")
    assert query is not None
    scope = [[pg_search.room_lexeme("team")], ["@61", "@62"]]
    assert pg_search.text_query(query, scope) == (
        "('foo' <-> 'bar':*) & (('#7465616d') | ('@61' & '@62'))"
    )
