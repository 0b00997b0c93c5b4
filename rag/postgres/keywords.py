"""The keyword index in PostgreSQL, for cluster mode: `KeywordStore` with the same BM25
as the SQLite `KeywordIndex` (rag/components/keyword.py), score for score.

PostgreSQL's full-text search stores and finds the chunks: each chunk's words, as the
SQLite index counts them (`stored_words`: jieba for Chinese), go into a `tsvector`
built from those words themselves, so PostgreSQL's parser never splits or stems them,
with one position for each time a word occurs; a GIN index finds the chunks holding
any word of a question. PostgreSQL's own ranking knows nothing of how rare a word is,
so the score is SQLite FTS5's bm25(), computed in SQL over the chunks found:

    score = sum over the question's words w of
            idf(w) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / average length))
    idf(w) = ln((N - n + 0.5) / (n + 0.5)), or 1e-6 where that is not above 0

with k1 = 1.2, b = 0.75, tf the word's count in the chunk, N the collection's number
of chunks and n how many of them hold the word. Those statistics are kept per
collection (keyword_collections, keyword_terms; migrations/sql/0001/20_keywords.sql),
so no score in one collection depends on another's chunks. They change in the same
transaction as the chunks, each writer holding the lock on its collection's row from
its first statement: writers of one collection take turns, and never wait for each
other in a circle.

A tsvector keeps at most 256 positions of a word, and positions up to 16383: a word
more frequent in one chunk, or a chunk longer than that, counts for less than in
SQLite (BM25 saturates long before 256). A word longer than PostgreSQL's limit on a
lexeme (2046 bytes) cannot be searched for; it still counts in its chunk's length.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from rag.components.keyword import (
    KeywordHit,
    rarities,
    stored_words,
    words,
    worth_searching,
)
from rag.postgres.database import Database
from rag.types import Chunk

Connection = psycopg.Connection[dict[str, Any]]

# FTS5's bm25() parameters.
K1 = 1.2
B = 0.75
# The longest lexeme a tsvector holds, in bytes, and the most positions it keeps.
_MAX_LEXEME = 2046
_MAX_POSITION = 16383

# The chunks holding any of the words, each scored by FTS5's formula (see the module),
# its terms added in the order FTS5 adds them (that of `terms`), so that the scores are
# the same to the last bit. Each chunk's tsvector is cut down to the question's words
# before it is read word by word (they are marked with weight A, which stored words
# never carry, and kept): six times as fast as reading every word, at 100k chunks.
_SEARCH = """
WITH wanted AS (
    SELECT * FROM unnest(%(terms)s::text[], %(idf)s::float8[]) WITH ORDINALITY AS w (term, idf, n)
), found AS (
    SELECT id, chunk_id, doc_id, length, terms FROM keyword_chunks
    WHERE collection = %(collection)s AND terms @@ %(query)s::tsquery {doc_filter}
)
SELECT f.chunk_id, f.doc_id, bm25.score
FROM found f CROSS JOIN LATERAL (
    SELECT sum(
        w.idf * ((cardinality(u.positions) * (%(k1)s + 1.0))
        / (cardinality(u.positions) + %(k1)s * (1 - %(b)s + %(b)s * f.length / %(average)s)))
        ORDER BY w.n
    ) AS score
    FROM unnest(ts_filter(setweight(f.terms, 'A', %(terms)s), '{{a}}')) AS u
    JOIN wanted w ON w.term = u.lexeme
) AS bm25
ORDER BY bm25.score DESC, f.id
LIMIT %(k)s
"""


def idf(total: int, count: int) -> float:
    """FTS5's inverse document frequency of a word `count` of `total` chunks hold."""
    value = math.log((total - count + 0.5) / (count + 0.5))
    return value if value > 0.0 else 1e-6


def _quoted(word: str) -> str:
    """`word` as one quoted lexeme of tsvector or tsquery input, taken as it is."""
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def _tsvector(tokens: Sequence[str]) -> str:
    """The tsvector input for `tokens`: each distinct one with its positions (1-based)."""
    positions: dict[str, list[int]] = {}
    for position, token in enumerate(tokens, start=1):
        positions.setdefault(token, []).append(min(position, _MAX_POSITION))
    return " ".join(
        _quoted(token) + ":" + ",".join(map(str, places))
        for token, places in positions.items()
        if len(token.encode("utf-8")) <= _MAX_LEXEME
    )


def _tsquery(terms: Sequence[str]) -> str:
    """A tsquery matching a tsvector that holds any of `terms`."""
    return " | ".join(_quoted(term) for term in terms)


class PgKeywordIndex:
    """BM25 over the chunks of every collection, in the database `database` connects to.

    Any number of processes may use it at once. `close` leaves the shared database open.
    """

    def __init__(self, database: Database):
        self._db = database

    def close(self) -> None:
        """Nothing to let go of: the connections belong to the shared `Database`."""

    # -- writing ------------------------------------------------------------

    def add(self, collection: str, chunks: Sequence[Chunk]) -> None:
        """Index `chunks`; a chunk id already present is replaced (and one given twice
        is indexed once, as last given)."""
        latest = {chunk.id: chunk for chunk in chunks}
        tokens = {chunk_id: stored_words(c.embedding_text()) for chunk_id, c in latest.items()}
        change: Counter[str] = Counter()
        for found in tokens.values():
            change.update({t for t in found if len(t.encode("utf-8")) <= _MAX_LEXEME})
        with self._db.transaction() as conn:
            number = self._lock(conn, collection)
            gone, length, terms = self._delete(conn, number, "chunk_id = ANY(%s)", list(latest))
            conn.execute(
                "INSERT INTO keyword_chunks (collection, chunk_id, doc_id, length, terms) "
                "SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::int[], %s::tsvector[])",
                (
                    number,
                    list(latest),
                    [c.doc_id for c in latest.values()],
                    [len(found) for found in tokens.values()],
                    [_tsvector(found) for found in tokens.values()],
                ),
            )
            added_length = sum(len(found) for found in tokens.values())
            self._count(conn, number, len(latest) - gone, added_length - length)
            change.subtract(terms)
            self._count_terms(conn, number, change)

    def delete_document(self, collection: str, doc_id: str) -> None:
        """Remove the chunks of document `doc_id` from `collection`, if it has any."""
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT id FROM keyword_collections WHERE name = %s FOR UPDATE", (collection,)
            ).fetchone()
            if row is None:
                return
            number = int(row["id"])
            chunks, length, terms = self._delete(conn, number, "doc_id = %s", doc_id)
            self._count(conn, number, -chunks, -length)
            self._count_terms(conn, number, Counter({t: -n for t, n in terms.items()}))

    def drop_collection(self, collection: str) -> None:
        """Remove every chunk of `collection` and its statistics."""
        with self._db.transaction() as conn:
            # Its chunks and words go with it (ON DELETE CASCADE).
            conn.execute("DELETE FROM keyword_collections WHERE name = %s", (collection,))

    @staticmethod
    def _lock(conn: Connection, collection: str) -> int:
        """The number of `collection` (made now if it has none), whose row this
        transaction holds locked from now until it ends."""
        row = conn.execute(
            "INSERT INTO keyword_collections (name) VALUES (%s) ON CONFLICT (name) "
            "DO UPDATE SET name = excluded.name RETURNING id",
            (collection,),
        ).fetchone()
        assert row is not None  # noqa: S101 (RETURNING always yields the row)
        return int(row["id"])

    @staticmethod
    def _delete(
        conn: Connection, number: int, where: str, value: object
    ) -> tuple[int, int, Counter[str]]:
        """Delete collection `number`'s chunks where `where` (a fixed clause of this class
        with one parameter, `value`); returns how many chunks, words and chunks per word
        went."""
        rows = conn.execute(
            f"DELETE FROM keyword_chunks WHERE collection = %s AND {where} "  # noqa: S608
            "RETURNING length, tsvector_to_array(terms) AS terms",
            (number, value),
        ).fetchall()
        terms: Counter[str] = Counter()
        for row in rows:
            terms.update(row["terms"])
        return len(rows), sum(row["length"] for row in rows), terms

    @staticmethod
    def _count(conn: Connection, number: int, chunks: int, length: int) -> None:
        conn.execute(
            "UPDATE keyword_collections SET chunks = chunks + %s, length = length + %s "
            "WHERE id = %s",
            (chunks, length, number),
        )

    @staticmethod
    def _count_terms(conn: Connection, number: int, change: Counter[str]) -> None:
        """Change the number of collection `number`'s chunks that hold each word by
        `change`; a word no chunk holds any more loses its row. (The caller holds the
        collection's lock, so no other writer waits on these rows; new ones are still
        written in the order of their words.)"""
        more = sorted((term, n) for term, n in change.items() if n > 0)
        fewer = sorted((term, -n) for term, n in change.items() if n < 0)
        if more:
            conn.execute(
                "INSERT INTO keyword_terms (collection, term, chunks) "
                "SELECT %s, term, n FROM unnest(%s::text[], %s::bigint[]) AS c (term, n) "
                'ORDER BY term COLLATE "C" '
                "ON CONFLICT (collection, term) DO UPDATE "
                "SET chunks = keyword_terms.chunks + excluded.chunks",
                (number, [t for t, _ in more], [n for _, n in more]),
            )
        if fewer:
            conn.execute(
                "UPDATE keyword_terms t SET chunks = t.chunks - c.n "
                "FROM unnest(%s::text[], %s::bigint[]) AS c (term, n) "
                "WHERE t.collection = %s AND t.term = c.term",
                ([t for t, _ in fewer], [n for _, n in fewer], number),
            )
            conn.execute(
                "DELETE FROM keyword_terms WHERE collection = %s AND term = ANY(%s) AND chunks = 0",
                (number, [t for t, _ in fewer]),
            )

    # -- reading ------------------------------------------------------------

    @contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        """A read-only transaction whose statements all see the same committed state."""
        with self._db.transaction() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield conn

    @staticmethod
    def _collection(conn: Connection, collection: str) -> dict[str, Any] | None:
        return conn.execute(
            "SELECT id, chunks, length FROM keyword_collections WHERE name = %s", (collection,)
        ).fetchone()

    @staticmethod
    def _counts(
        conn: Connection, stats: dict[str, Any] | None, terms: Sequence[str]
    ) -> tuple[dict[str, int], int]:
        distinct = list(dict.fromkeys(terms))
        if not distinct:
            return {}, 0
        if stats is None:
            return dict.fromkeys(distinct, 0), 0
        rows = conn.execute(
            "SELECT term, chunks FROM keyword_terms WHERE collection = %s AND term = ANY(%s)",
            (stats["id"], distinct),
        ).fetchall()
        found = {row["term"]: int(row["chunks"]) for row in rows}
        return {t: found.get(t, 0) for t in distinct}, int(stats["chunks"])

    def document_counts(self, collection: str, terms: Sequence[str]) -> tuple[dict[str, int], int]:
        """How many chunks of `collection` hold each of `terms` (absent: 0), and how many
        chunks it has."""
        with self._snapshot() as conn:
            return self._counts(conn, self._collection(conn, collection), terms)

    def rarity(self, collection: str, terms: Sequence[str]) -> dict[str, float]:
        """The inverse document frequency of each term in `collection`, as the SQLite
        index weighs it: high for rare words, 0 for common ones."""
        return rarities(*self.document_counts(collection, terms))

    def query_terms(self, collection: str, question: str) -> list[str]:
        """The distinct words of `question` worth searching `collection` for, rarest first."""
        return worth_searching(*self.document_counts(collection, words(question)))

    def chunk_counts(self, collection: str) -> dict[str, int]:
        """How many chunks each document of `collection` has ({} when it has none)."""
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT c.doc_id, count(*) AS n FROM keyword_chunks c "
                "JOIN keyword_collections k ON k.id = c.collection "
                "WHERE k.name = %s GROUP BY c.doc_id",
                (collection,),
            ).fetchall()
        return {row["doc_id"]: int(row["n"]) for row in rows}

    def search(
        self, collection: str, question: str, k: int, doc_ids: Collection[str] | None = None
    ) -> list[KeywordHit]:
        """The `k` best chunks of `collection` for `question` by BM25, best first.

        With `doc_ids`, only chunks of those documents are ranked.
        """
        if doc_ids is not None and not doc_ids:
            return []
        with self._snapshot() as conn:
            stats = self._collection(conn, collection)
            counts, total = self._counts(conn, stats, words(question))
            terms = worth_searching(counts, total)
            if stats is None or not terms:
                return []
            arguments: dict[str, Any] = {
                "collection": stats["id"],
                "terms": terms,
                "idf": [idf(total, counts[t]) for t in terms],
                "query": _tsquery(terms),
                "k1": K1,
                "b": B,
                "average": int(stats["length"]) / total,
                "k": k,
            }
            doc_filter = ""
            if doc_ids is not None:
                doc_filter = "AND doc_id = ANY(%(doc_ids)s)"
                arguments["doc_ids"] = sorted(doc_ids)
            rows = conn.execute(_SEARCH.format(doc_filter=doc_filter), arguments).fetchall()
        return [KeywordHit(row["chunk_id"], row["doc_id"], float(row["score"])) for row in rows]
