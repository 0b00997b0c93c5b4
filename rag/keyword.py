"""The keyword index: BM25 over SQLite FTS5, on text split into words for English and Chinese.

Dense vectors find paraphrases; exact words (names, numbers, rare terms) are what
BM25 finds best. Chinese has no spaces, so its runs are cut into words by jieba
(the jieba-rs port, `rjieba`) in search mode, which also emits the shorter words
inside long ones; other text is split into lower-cased Unicode words. FTS5 indexes
the words and ranks with its built-in bm25().

Like the vector store, this index may briefly hold chunks of documents that are not
visible yet (or no longer): retrieval keeps only what the manifest marks indexed.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.types import Chunk

# CJK ideographs (basic, extension A, compatibility, and the supplementary planes).
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]+")
_WORD = re.compile(r"\w+")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunk_rows (
    rowid       INTEGER PRIMARY KEY,
    collection  TEXT NOT NULL,
    doc_id      TEXT NOT NULL,
    chunk_id    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunk_rows_by_doc ON chunk_rows (collection, doc_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunk_terms USING fts5(
    terms, tokenize = 'unicode61 remove_diacritics 0'
);
"""


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


def _match_expression(terms: Iterable[str]) -> str:
    """An FTS5 query matching any of `terms`, each quoted so it is taken literally."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


@dataclass(frozen=True)
class KeywordHit:
    chunk_id: str
    doc_id: str
    score: float  # BM25, higher is better


class KeywordIndex:
    """A persistent, incremental BM25 index of chunks, one SQLite file for all collections."""

    # Query words found in more than this share of the chunks add little to BM25 but
    # make the query visit most of the index; they are dropped (unless all are common).
    COMMON_SHARE = 0.2

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(_SCHEMA)
        self._db.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS chunk_vocab USING fts5vocab(chunk_terms, 'row')"
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, collection: str, chunks: Sequence[Chunk]) -> None:
        """Index `chunks`; a chunk id already present is replaced."""
        rows = [(c, " ".join(words(c.embedding_text()))) for c in chunks]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._delete_ids(collection, [c.id for c in chunks])
                for chunk, terms in rows:
                    cursor = self._db.execute(
                        "INSERT INTO chunk_rows (collection, doc_id, chunk_id) VALUES (?, ?, ?)",
                        (collection, chunk.doc_id, chunk.id),
                    )
                    self._db.execute(
                        "INSERT INTO chunk_terms (rowid, terms) VALUES (?, ?)",
                        (cursor.lastrowid, terms),
                    )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def delete_document(self, collection: str, doc_id: str) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            rowids = [
                r[0]
                for r in self._db.execute(
                    "SELECT rowid FROM chunk_rows WHERE collection = ? AND doc_id = ?",
                    (collection, doc_id),
                )
            ]
            self._delete_rows(rowids)
            self._db.execute("COMMIT")

    def _delete_ids(self, collection: str, chunk_ids: Sequence[str]) -> None:
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
        self._delete_rows(rowids)

    def _delete_rows(self, rowids: Sequence[int]) -> None:
        for start in range(0, len(rowids), 500):
            batch = rowids[start : start + 500]
            marks = ",".join("?" * len(batch))
            self._db.execute(f"DELETE FROM chunk_terms WHERE rowid IN ({marks})", batch)  # noqa: S608
            self._db.execute(f"DELETE FROM chunk_rows WHERE rowid IN ({marks})", batch)  # noqa: S608

    def chunk_counts(self, collection: str) -> dict[str, int]:
        """Chunks per document id in `collection` (for consistency checks)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT doc_id, count(*) FROM chunk_rows WHERE collection = ? GROUP BY doc_id",
                (collection,),
            ).fetchall()
        return {doc_id: count for doc_id, count in rows}

    def document_counts(self, terms: Sequence[str]) -> tuple[dict[str, int], int]:
        """How many chunks hold each of `terms` (absent: 0), and how many chunks there are."""
        distinct = list(dict.fromkeys(terms))
        if not distinct:
            return {}, 0
        with self._lock:
            total = self._db.execute("SELECT count(*) FROM chunk_rows").fetchone()[0]
            marks = ",".join("?" * len(distinct))
            found = dict(
                self._db.execute(
                    f"SELECT term, doc FROM chunk_vocab WHERE term IN ({marks})",  # noqa: S608
                    distinct,
                ).fetchall()
            )
        return {t: found.get(t, 0) for t in distinct}, total

    def rarity(self, terms: Sequence[str]) -> dict[str, float]:
        """The inverse document frequency of each term: high for rare words, 0 for common."""
        counts, total = self.document_counts(terms)
        return {t: max(0.0, math.log((total + 1) / (n + 0.5))) for t, n in counts.items()}

    def query_terms(self, question: str) -> list[str]:
        """The distinct words of `question` worth searching for, rarest first."""
        counts, total = self.document_counts(words(question))
        present = [t for t, n in counts.items() if n > 0]
        rare = [t for t in present if counts[t] <= self.COMMON_SHARE * max(total, 1)]
        return sorted(rare or present, key=lambda t: counts[t])

    def search(
        self, collection: str, question: str, k: int, doc_ids: Collection[str] | None = None
    ) -> list[KeywordHit]:
        """The `k` best chunks of `collection` for `question` by BM25, best first.

        With `doc_ids`, only chunks of those documents are ranked.
        """
        terms = self.query_terms(question)
        if not terms or (doc_ids is not None and not doc_ids):
            return []
        query = (
            "SELECT r.chunk_id, r.doc_id, bm25(chunk_terms) AS rank FROM chunk_terms "
            "JOIN chunk_rows r ON r.rowid = chunk_terms.rowid "
            "WHERE chunk_terms MATCH ? AND r.collection = ? "
        )
        args: list[str | int] = [_match_expression(terms), collection]
        if doc_ids is not None:
            # One JSON parameter, however many ids: SQLite caps the number of parameters.
            query += "AND r.doc_id IN (SELECT value FROM json_each(?)) "
            args.append(json.dumps(sorted(doc_ids)))
        with self._lock:
            rows = self._db.execute(query + "ORDER BY rank LIMIT ?", (*args, k)).fetchall()
        # FTS5's bm25() is negative, lower is better; flip it so higher is better.
        return [KeywordHit(chunk_id, doc_id, -rank) for chunk_id, doc_id, rank in rows]
