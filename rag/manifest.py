"""The document manifest: what each collection holds, and which of it queries may see.

A SQLite database beside the index. It lives in `rag/` rather than `ingest/` because
retrieval consults it: a chunk is visible to queries only while its document's row
says `indexed`. That one rule makes ingestion crash-safe. A document's chunks are
written while its row says `pending` (invisible), and the row flips to `indexed` in
one transaction that also points the file's path at it and retires the version it
replaces. A crash at any point leaves either the old version or the new one
visible, never a mix, and `recover()` removes the leftovers.

A document is identified by the sha256 of its bytes, so the same bytes under two
names are stored once per collection; `sources` maps each path to its document.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rag import database
from rag.filters import Filters, epoch_microseconds, source_globs

Status = Literal["pending", "indexed", "failed", "deleting"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    collection  TEXT NOT NULL,
    doc_id      TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'indexed', 'failed', 'deleting')),
    title       TEXT NOT NULL DEFAULT '',
    chunks      INTEGER NOT NULL DEFAULT 0,
    error_code  TEXT,
    error       TEXT,
    pipeline    TEXT NOT NULL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (collection, doc_id)
);
CREATE TABLE IF NOT EXISTS sources (
    collection  TEXT NOT NULL,
    source      TEXT NOT NULL,
    doc_id      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (collection, source)
);
CREATE INDEX IF NOT EXISTS sources_by_doc ON sources (collection, doc_id);
"""


@dataclass(frozen=True)
class DocumentRecord:
    collection: str
    doc_id: str
    sha256: str
    status: Status
    title: str
    chunks: int
    error_code: str | None
    error: str | None
    pipeline: str
    created_at: float
    updated_at: float
    sources: tuple[str, ...]


@dataclass(frozen=True)
class SourceRecord:
    collection: str
    source: str
    doc_id: str
    size: int
    mtime_ns: int


class Manifest:
    """Thread-safe access to the manifest database at `path` (created on first use)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.RLock()
        self._db = database.connect(path)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return database.transaction(self._db, self._lock)

    # -- reading ------------------------------------------------------------

    def source(self, collection: str, source: str) -> SourceRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM sources WHERE collection = ? AND source = ?", (collection, source)
            ).fetchone()
        if row is None:
            return None
        return SourceRecord(collection, source, row["doc_id"], row["size"], row["mtime_ns"])

    def document(self, collection: str, doc_id: str) -> DocumentRecord | None:
        records = self._documents("d.collection = ? AND d.doc_id = ?", (collection, doc_id))
        return records[0] if records else None

    def documents(self, collection: str) -> list[DocumentRecord]:
        """Every document of a collection that is not being deleted, by first source."""
        records = self._documents("d.collection = ? AND d.status != 'deleting'", (collection,))
        return sorted(records, key=lambda r: (r.sources[0] if r.sources else "", r.doc_id))

    def unfinished(self, collection: str | None = None) -> list[DocumentRecord]:
        """Documents a crash left `pending` or `deleting`."""
        if collection is None:
            return self._documents("d.status IN ('pending', 'deleting')", ())
        return self._documents(
            "d.collection = ? AND d.status IN ('pending', 'deleting')", (collection,)
        )

    def _documents(self, where: str, args: tuple[str, ...]) -> list[DocumentRecord]:
        # `where` is one of the fixed clauses written in this class, never user input.
        query = (
            "SELECT d.*, group_concat(s.source, char(0)) AS source_list FROM documents d "  # noqa: S608
            "LEFT JOIN sources s ON s.collection = d.collection AND s.doc_id = d.doc_id "
            f"WHERE {where} GROUP BY d.collection, d.doc_id"
        )
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [
            DocumentRecord(
                collection=row["collection"],
                doc_id=row["doc_id"],
                sha256=row["sha256"],
                status=row["status"],
                title=row["title"],
                chunks=row["chunks"],
                error_code=row["error_code"],
                error=row["error"],
                pipeline=row["pipeline"],
                created_at=row["created_at"],
                updated_at=row["updated_at"],
                sources=tuple(sorted(row["source_list"].split("\0"))) if row["source_list"] else (),
            )
            for row in rows
        ]

    def visible(self, collection: str, doc_ids: Iterable[str]) -> set[str]:
        """The subset of `doc_ids` whose chunks queries may see."""
        wanted = sorted(set(doc_ids))
        if not wanted:
            return set()
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(wanted), 500):
                batch = wanted[start : start + 500]
                marks = ",".join("?" * len(batch))
                rows = self._db.execute(
                    "SELECT doc_id FROM documents WHERE collection = ? AND status = 'indexed' "  # noqa: S608
                    f"AND doc_id IN ({marks})",
                    (collection, *batch),
                ).fetchall()
                found.update(row["doc_id"] for row in rows)
        return found

    def matching(self, collection: str, filters: Filters) -> set[str]:
        """Ids of the visible documents with a source path that meets every condition."""
        clauses = ["s.collection = ?", "d.status = 'indexed'"]
        args: list[str | int] = [collection]
        if filters.sources:
            globs = [g for pattern in filters.sources for g in source_globs(pattern)]
            clauses.append("(" + " OR ".join(["s.source GLOB ?"] * len(globs)) + ")")
            args += globs
        if filters.types:
            clauses.append("(" + " OR ".join(["lower(s.source) GLOB ?"] * len(filters.types)) + ")")
            args += [f"*.{extension}" for extension in filters.types]
        # Compared in microseconds: nanoseconds of a far date overflow SQLite's integers.
        if filters.since:
            clauses.append("s.mtime_ns / 1000 >= ?")
            args.append(epoch_microseconds(filters.since))
        if filters.until:
            clauses.append("s.mtime_ns / 1000 <= ?")
            args.append(epoch_microseconds(filters.until))
        # The clauses are the fixed strings above; every value is a bound parameter.
        query = (
            "SELECT DISTINCT s.doc_id FROM sources s JOIN documents d "  # noqa: S608
            "ON d.collection = s.collection AND d.doc_id = s.doc_id WHERE " + " AND ".join(clauses)
        )
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return {row["doc_id"] for row in rows}

    def visible_count(self, collection: str) -> int:
        """How many documents of `collection` queries may see."""
        with self._lock:
            row = self._db.execute(
                "SELECT count(*) FROM documents WHERE collection = ? AND status = 'indexed'",
                (collection,),
            ).fetchone()
        return int(row[0])

    def sources_under(self, collection: str, folder: str) -> list[str]:
        """Recorded source paths inside `folder` (a resolved directory path)."""
        prefix = folder.rstrip("/") + "/"
        with self._lock:
            rows = self._db.execute(
                "SELECT source FROM sources WHERE collection = ? AND substr(source, 1, ?) = ?",
                (collection, len(prefix), prefix),
            ).fetchall()
        return [row["source"] for row in rows]

    def collections(self) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT collection FROM documents").fetchall()
        return sorted(row["collection"] for row in rows)

    # -- writing ------------------------------------------------------------

    def begin(self, collection: str, doc_id: str, sha256: str, pipeline: str) -> None:
        """Record that a document's chunks are about to be written (invisible until `commit`)."""
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "INSERT INTO documents (collection, doc_id, sha256, status, pipeline, created_at, "
                "updated_at) VALUES (?, ?, ?, 'pending', ?, ?, ?) "
                "ON CONFLICT (collection, doc_id) DO UPDATE SET status = 'pending', "
                "pipeline = excluded.pipeline, error_code = NULL, error = NULL, "
                "updated_at = excluded.updated_at",
                (collection, doc_id, sha256, pipeline, now, now),
            )

    def commit(
        self,
        collection: str,
        doc_id: str,
        *,
        title: str,
        chunks: int,
        source: str,
        size: int,
        mtime_ns: int,
    ) -> str | None:
        """Make a document visible and point `source` at it, atomically.

        Returns the id of the document `source` pointed at before, when that one is now
        unreferenced: it was marked `deleting` in the same transaction, and its chunks
        should be removed next.
        """
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "UPDATE documents SET status = 'indexed', title = ?, chunks = ?, "
                "error_code = NULL, error = NULL, updated_at = ? "
                "WHERE collection = ? AND doc_id = ?",
                (title, chunks, now, collection, doc_id),
            )
            return self._point(db, collection, source, doc_id, size, mtime_ns, now)

    def attach(
        self, collection: str, source: str, doc_id: str, size: int, mtime_ns: int
    ) -> str | None:
        """Point `source` at an existing document (same bytes seen under another name)."""
        with self._transaction() as db:
            return self._point(db, collection, source, doc_id, size, mtime_ns, time.time())

    def fail(
        self,
        collection: str,
        doc_id: str,
        sha256: str,
        pipeline: str,
        *,
        source: str,
        size: int,
        mtime_ns: int,
        code: str,
        error: str,
    ) -> str | None:
        """Record that a file could not be indexed, and point its source at that record."""
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "INSERT INTO documents (collection, doc_id, sha256, status, error_code, error, "
                "pipeline, created_at, updated_at) VALUES (?, ?, ?, 'failed', ?, ?, ?, ?, ?) "
                "ON CONFLICT (collection, doc_id) DO UPDATE SET status = 'failed', "
                "error_code = excluded.error_code, error = excluded.error, "
                "pipeline = excluded.pipeline, chunks = 0, updated_at = excluded.updated_at",
                (collection, doc_id, sha256, code, error, pipeline, now, now),
            )
            return self._point(db, collection, source, doc_id, size, mtime_ns, now)

    def detach(self, collection: str, source: str) -> str | None:
        """Forget a source path; returns its document's id if that is now unreferenced."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT doc_id FROM sources WHERE collection = ? AND source = ?",
                (collection, source),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "DELETE FROM sources WHERE collection = ? AND source = ?", (collection, source)
            )
            return self._retire_if_orphan(db, collection, row["doc_id"], time.time())

    def retire(self, collection: str, doc_id: str) -> list[str]:
        """Hide a document now and drop its sources; returns the source paths it had."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT source FROM sources WHERE collection = ? AND doc_id = ?",
                (collection, doc_id),
            ).fetchall()
            db.execute(
                "DELETE FROM sources WHERE collection = ? AND doc_id = ?", (collection, doc_id)
            )
            db.execute(
                "UPDATE documents SET status = 'deleting', updated_at = ? "
                "WHERE collection = ? AND doc_id = ?",
                (time.time(), collection, doc_id),
            )
        return [row["source"] for row in rows]

    def forget(self, collection: str, doc_id: str) -> None:
        """Remove a document's row, once its chunks are gone from the index."""
        with self._transaction() as db:
            db.execute(
                "DELETE FROM documents WHERE collection = ? AND doc_id = ?", (collection, doc_id)
            )

    def _point(
        self,
        db: sqlite3.Connection,
        collection: str,
        source: str,
        doc_id: str,
        size: int,
        mtime_ns: int,
        now: float,
    ) -> str | None:
        row = db.execute(
            "SELECT doc_id FROM sources WHERE collection = ? AND source = ?", (collection, source)
        ).fetchone()
        db.execute(
            "INSERT INTO sources (collection, source, doc_id, size, mtime_ns, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (collection, source) DO UPDATE SET "
            "doc_id = excluded.doc_id, size = excluded.size, mtime_ns = excluded.mtime_ns, "
            "updated_at = excluded.updated_at",
            (collection, source, doc_id, size, mtime_ns, now),
        )
        previous = row["doc_id"] if row is not None else None
        if previous is None or previous == doc_id:
            return None
        return self._retire_if_orphan(db, collection, previous, now)

    @staticmethod
    def _retire_if_orphan(
        db: sqlite3.Connection, collection: str, doc_id: str, now: float
    ) -> str | None:
        still_used = db.execute(
            "SELECT 1 FROM sources WHERE collection = ? AND doc_id = ? LIMIT 1",
            (collection, doc_id),
        ).fetchone()
        if still_used:
            return None
        db.execute(
            "UPDATE documents SET status = 'deleting', updated_at = ? "
            "WHERE collection = ? AND doc_id = ?",
            (now, collection, doc_id),
        )
        return doc_id
