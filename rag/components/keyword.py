"""The keyword index: BM25 over SQLite FTS5, on text split into words for English and Chinese.

Dense vectors find paraphrases; exact words (names, numbers, rare terms) are what
BM25 finds best. Chinese has no spaces, so its runs are cut into words by jieba
(the jieba-rs port, `rjieba`) in search mode, which also emits the shorter words
inside long ones; other text is split into lower-cased Unicode words. FTS5 indexes
the words and ranks with its built-in bm25().

Each collection has its own FTS5 table, so that every statistic (BM25's inverse
document frequencies and document lengths, `rarity`, the common words left out of a
query) comes from that collection's chunks alone: the same question over the same
documents scores the same whatever else the server holds, and a reader learns nothing
about collections it may not read. The tables are named by a number, never by the
collection's name (`collections` maps one to the other), and made on first use.

Like the vector store, this index may briefly hold chunks of documents that are not
visible yet (or no longer): retrieval keeps only what the manifest marks indexed.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rag.components import database
from rag.components.write_gate import WriteGate, passing
from rag.types import Chunk

# CJK ideographs (basic, extension A, compatibility, and the supplementary planes).
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]+")
_WORD = re.compile(r"\w+")

# 1: one FTS5 table for every collection; 2: one a collection (`_split_shared_table`).
SCHEMA_VERSION = 2
_SCHEMA = """
-- The number of each collection, which names its tables (see _tables).
CREATE TABLE IF NOT EXISTS collections (
    id    INTEGER PRIMARY KEY,
    name  TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS chunk_rows (
    rowid       INTEGER PRIMARY KEY,
    collection  TEXT NOT NULL,
    doc_id      TEXT NOT NULL,
    chunk_id    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunk_rows_by_doc ON chunk_rows (collection, doc_id);
"""


def _tables(number: int) -> tuple[str, str]:
    """The names of collection `number`'s FTS5 table and of its vocabulary table.

    The FTS5 table holds the words of each chunk, under the rowid of its chunk_rows
    row; the vocabulary table says how many chunks hold each word.
    """
    return f"terms_{int(number)}", f"vocab_{int(number)}"


def words(text: str) -> list[str]:
    """The words of `text` as the index sees them: jieba for Chinese, Unicode words otherwise."""
    import rjieba

    found: list[str] = []
    position = 0
    for run in _CJK_RUN.finditer(text):
        found += _WORD.findall(text[position : run.start()].lower())
        found += [w for w in rjieba.cut_for_search(run.group()) if w.strip()]
        position = run.end()
    found += _WORD.findall(text[position:].lower())
    return found


def stored_words(text: str) -> list[str]:
    """The words of `text` as the SQLite index stores them, in order: its FTS5 tokenizer
    (unicode61) reads `words(text)` again, splits them at underscores, which Python
    counts as word characters, and folds Greek's final sigma into the plain one. The
    keyword index on PostgreSQL stores these words, so both count the same."""
    return [
        part.replace("\u03c2", "\u03c3") for word in words(text) for part in word.split("_") if part
    ]


# Query words found in more than this share of a collection's chunks add little to BM25
# but make the query visit most of the index; they are dropped (unless all are common).
COMMON_SHARE = 0.2


def rarities(counts: dict[str, int], total: int) -> dict[str, float]:
    """The inverse document frequency of each term, given how many of a collection's
    `total` chunks hold it: high for rare words, 0 for common ones."""
    return {t: max(0.0, math.log((total + 1) / (n + 0.5))) for t, n in counts.items()}


def worth_searching(counts: dict[str, int], total: int) -> list[str]:
    """The terms of a question worth searching for, rarest first, given how many of a
    collection's `total` chunks hold each: those it holds at all, less the common ones
    (in more than COMMON_SHARE of the chunks) unless every one is common."""
    present = [t for t, n in counts.items() if n > 0]
    rare = [t for t in present if counts[t] <= COMMON_SHARE * max(total, 1)]
    return sorted(rare or present, key=lambda t: counts[t])


def _match_expression(terms: Iterable[str]) -> str:
    """An FTS5 query matching any of `terms`, each quoted so it is taken literally."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


@dataclass(frozen=True)
class KeywordHit:
    chunk_id: str
    doc_id: str
    score: float  # BM25, higher is better


class KeywordStore(Protocol):
    """Chunks searchable by their words (BM25), in named collections that share nothing.

    Unlike the vector store it keeps no list of collections: one never written to, or
    dropped, reads as empty, and removing from it does nothing. Chunk ids are unique
    within a collection. tests/contract/test_keyword_store.py holds every implementation
    to these promises; `KeywordIndex` is the one on SQLite, and
    rag/postgres/keywords.py's `PgKeywordIndex`, scoring alike, the one on PostgreSQL.
    """

    def add(self, collection: str, chunks: Sequence[Chunk]) -> None:
        """Index the words of each chunk's `embedding_text()`; a chunk id already indexed
        is replaced, never indexed twice."""
        ...

    def search(
        self, collection: str, question: str, k: int, doc_ids: Collection[str] | None = None
    ) -> list[KeywordHit]:
        """At most `k` chunks sharing words with `question`, best first (higher score).
        With `doc_ids`, only chunks of those documents (none for an empty set). [] for a
        question with no words the collection holds."""
        ...

    def rarity(self, collection: str, terms: Sequence[str]) -> dict[str, float]:
        """Each of `terms` with a weight of at least 0 that is higher the fewer of the
        collection's chunks hold it."""
        ...

    def delete_document(self, collection: str, doc_id: str) -> None:
        """Remove the chunks of document `doc_id` from `collection`, if it has any."""
        ...

    def drop_collection(self, collection: str) -> None:
        """Remove every chunk of `collection`."""
        ...

    def chunk_counts(self, collection: str) -> dict[str, int]:
        """How many chunks each document of `collection` has ({} when it has none)."""
        ...

    def close(self) -> None:
        """Let go of the storage; the object is not used afterwards."""
        ...


class KeywordIndex:
    """A persistent, incremental BM25 index of chunks: one SQLite file, one table per collection.

    Every search and statistic of a collection depends on that collection's chunks only.
    """

    def __init__(self, path: Path, gate: WriteGate | None = None):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._gate = gate
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        with database.naming_damage(path):
            self._db.execute("PRAGMA busy_timeout=30000")
        database.open_schema(self._db, path, SCHEMA_VERSION, _SCHEMA)
        self._split_shared_table()
        database.stamp_schema(self._db, SCHEMA_VERSION)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        with passing(self._gate), self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _split_shared_table(self) -> None:
        """Move the chunks of an index in the earlier layout into one table per collection.

        That layout kept every collection's words in one FTS5 table, `chunk_terms` (with
        its vocabulary `chunk_vocab`), under the rowids of `chunk_rows`, which is kept as
        it is. The move is one transaction: an interrupted one leaves the old layout,
        moved again on the next opening.
        """
        if not self._has_table("chunk_terms"):
            return
        with self._writing():
            if not self._has_table("chunk_terms"):  # another process moved it meanwhile
                return
            names = [r[0] for r in self._db.execute("SELECT DISTINCT collection FROM chunk_rows")]
            for name in names:
                terms, _ = _tables(self._number_or_new(name))
                self._db.execute(
                    f"INSERT INTO {terms} (rowid, terms) SELECT t.rowid, t.terms "  # noqa: S608
                    "FROM chunk_terms t JOIN chunk_rows r ON r.rowid = t.rowid "
                    "WHERE r.collection = ?",
                    (name,),
                )
            self._db.execute("DROP TABLE IF EXISTS chunk_vocab")
            self._db.execute("DROP TABLE chunk_terms")

    def _has_table(self, name: str) -> bool:
        found = self._db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,))
        return found.fetchone() is not None

    def _number(self, collection: str) -> int | None:
        """The number naming `collection`'s tables; None when it has none (yet)."""
        row = self._db.execute(
            "SELECT id FROM collections WHERE name = ?", (collection,)
        ).fetchone()
        return None if row is None else int(row[0])

    def _number_or_new(self, collection: str) -> int:
        """The number naming `collection`'s tables, made now if it has none.

        Call it inside a write transaction: a row of `collections` and its two tables
        exist together or not at all.
        """
        number = self._number(collection)
        if number is not None:
            return number
        number = self._db.execute(
            "INSERT INTO collections (name) VALUES (?) RETURNING id", (collection,)
        ).fetchone()[0]
        terms, vocab = _tables(number)
        self._db.execute(
            f"CREATE VIRTUAL TABLE {terms} USING fts5("
            "terms, tokenize = 'unicode61 remove_diacritics 0')"
        )
        self._db.execute(f"CREATE VIRTUAL TABLE {vocab} USING fts5vocab({terms}, 'row')")
        return int(number)

    def add(self, collection: str, chunks: Sequence[Chunk]) -> None:
        """Index `chunks`; a chunk id already present is replaced."""
        rows = [(c, " ".join(words(c.embedding_text()))) for c in chunks]
        with self._writing():
            number = self._number_or_new(collection)
            terms_table, _ = _tables(number)
            self._delete_ids(collection, number, [c.id for c in chunks])
            for chunk, terms in rows:
                cursor = self._db.execute(
                    "INSERT INTO chunk_rows (collection, doc_id, chunk_id) VALUES (?, ?, ?)",
                    (collection, chunk.doc_id, chunk.id),
                )
                self._db.execute(
                    f"INSERT INTO {terms_table} (rowid, terms) VALUES (?, ?)",  # noqa: S608
                    (cursor.lastrowid, terms),
                )

    def delete_document(self, collection: str, doc_id: str) -> None:
        """Remove the chunks of document `doc_id` from `collection`, if it has any."""
        with self._writing():
            number = self._number(collection)
            if number is None:
                return
            rowids = [
                r[0]
                for r in self._db.execute(
                    "SELECT rowid FROM chunk_rows WHERE collection = ? AND doc_id = ?",
                    (collection, doc_id),
                )
            ]
            self._delete_rows(number, rowids)

    def drop_collection(self, collection: str) -> None:
        """Remove every chunk of `collection` and its tables; nothing happens if it has none."""
        with self._writing():
            self._db.execute("DELETE FROM chunk_rows WHERE collection = ?", (collection,))
            number = self._number(collection)
            if number is None:
                return
            terms, vocab = _tables(number)
            self._db.execute(f"DROP TABLE IF EXISTS {vocab}")
            self._db.execute(f"DROP TABLE IF EXISTS {terms}")
            self._db.execute("DELETE FROM collections WHERE id = ?", (number,))

    def _delete_ids(self, collection: str, number: int, chunk_ids: Sequence[str]) -> None:
        rowids: list[int] = []
        for start in range(0, len(chunk_ids), 500):
            batch = chunk_ids[start : start + 500]
            marks = ",".join("?" * len(batch))
            rowids += [
                r[0]
                for r in self._db.execute(
                    f"SELECT rowid FROM chunk_rows WHERE collection = ? AND chunk_id IN ({marks})",  # noqa: S608
                    (collection, *batch),
                )
            ]
        self._delete_rows(number, rowids)

    def _delete_rows(self, number: int, rowids: Sequence[int]) -> None:
        terms, _ = _tables(number)
        for start in range(0, len(rowids), 500):
            batch = rowids[start : start + 500]
            marks = ",".join("?" * len(batch))
            self._db.execute(f"DELETE FROM {terms} WHERE rowid IN ({marks})", batch)  # noqa: S608
            self._db.execute(f"DELETE FROM chunk_rows WHERE rowid IN ({marks})", batch)  # noqa: S608

    def chunk_counts(self, collection: str) -> dict[str, int]:
        """Chunks per document id in `collection` (for consistency checks)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT doc_id, count(*) FROM chunk_rows WHERE collection = ? GROUP BY doc_id",
                (collection,),
            ).fetchall()
        return {doc_id: count for doc_id, count in rows}

    def document_counts(self, collection: str, terms: Sequence[str]) -> tuple[dict[str, int], int]:
        """How many chunks of `collection` hold each of `terms` (absent: 0), and how many
        chunks it has."""
        distinct = list(dict.fromkeys(terms))
        if not distinct:
            return {}, 0
        with self._lock:
            number = self._number(collection)
            if number is None:
                return dict.fromkeys(distinct, 0), 0
            _, vocab = _tables(number)
            total = self._db.execute(
                "SELECT count(*) FROM chunk_rows WHERE collection = ?", (collection,)
            ).fetchone()[0]
            marks = ",".join("?" * len(distinct))
            found = dict(
                self._db.execute(
                    f"SELECT term, doc FROM {vocab} WHERE term IN ({marks})",  # noqa: S608
                    distinct,
                ).fetchall()
            )
        return {t: found.get(t, 0) for t in distinct}, total

    def rarity(self, collection: str, terms: Sequence[str]) -> dict[str, float]:
        """The inverse document frequency of each term in `collection`: high for rare
        words, 0 for common ones."""
        return rarities(*self.document_counts(collection, terms))

    def query_terms(self, collection: str, question: str) -> list[str]:
        """The distinct words of `question` worth searching `collection` for, rarest first."""
        return worth_searching(*self.document_counts(collection, words(question)))

    def search(
        self, collection: str, question: str, k: int, doc_ids: Collection[str] | None = None
    ) -> list[KeywordHit]:
        """The `k` best chunks of `collection` for `question` by BM25, best first.

        With `doc_ids`, only chunks of those documents are ranked.
        """
        with self._lock:
            number = self._number(collection)
            terms = self.query_terms(collection, question)
            if number is None or not terms or (doc_ids is not None and not doc_ids):
                return []
            table, _ = _tables(number)
            query = (
                f"SELECT r.chunk_id, r.doc_id, bm25({table}) AS rank FROM {table} "  # noqa: S608
                f"JOIN chunk_rows r ON r.rowid = {table}.rowid WHERE {table} MATCH ? "
            )
            args: list[str | int] = [_match_expression(terms)]
            if doc_ids is not None:
                # One JSON parameter, however many ids: SQLite caps the number of parameters.
                query += "AND r.doc_id IN (SELECT value FROM json_each(?)) "
                args.append(json.dumps(sorted(doc_ids)))
            rows = self._db.execute(query + "ORDER BY rank LIMIT ?", (*args, k)).fetchall()
        # FTS5's bm25() is negative, lower is better; flip it so higher is better.
        return [KeywordHit(chunk_id, doc_id, -rank) for chunk_id, doc_id, rank in rows]
