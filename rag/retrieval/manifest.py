"""The document manifest: what each collection holds, and which of it queries may see.

A SQLite database beside the index. It lives in `rag/retrieval/` rather than `ingest/`
because retrieval consults it: a chunk is visible to queries only while its document's
row says `indexed`. That one rule makes ingestion crash-safe. A document's chunks are
written while its row says `pending` (invisible), and the row flips to `indexed` in
one transaction that also points the file's path at it and retires the version it
replaces. A crash at any point leaves either the old version or the new one
visible, never a mix, and `recover()` removes the leftovers.

A document is identified by the sha256 of its bytes, so the same bytes under two
names are stored once per collection; `sources` maps each path to its document.

Each source also has a name: what readers call the file, since its server path is no
business of theirs. It is the file's path within the folder it was ingested from
(`policies/2024/leave.pdf`), or its file name when it came on its own (an upload, or
one file named at the command line). Manifests made before names were recorded get
each file's name when they are opened.

Each version of a document also keeps its `DocumentDetails`: who uploaded it, its
number of pages and what the parser warned of, recorded when it is made visible (or
recorded failed). Documents recorded before details were kept have none.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Literal, Protocol

from rag.components import database
from rag.components.write_gate import WriteGate, passing
from rag.retrieval.filters import Filters, epoch_microseconds, name_globs, source_globs
from rag.types import DocumentWarning

Status = Literal["pending", "indexed", "failed", "deleting"]

# 1: documents and sources; 2: each source has a name (`_add_names` migrates 1);
# 3: each document has its details (`_add_details` migrates 2).
SCHEMA_VERSION = 3
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
    details     TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (collection, doc_id)
);
CREATE TABLE IF NOT EXISTS sources (
    collection  TEXT NOT NULL,
    source      TEXT NOT NULL,
    doc_id      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    updated_at  REAL NOT NULL,
    name        TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (collection, source)
);
CREATE INDEX IF NOT EXISTS sources_by_doc ON sources (collection, doc_id);
"""


@dataclass(frozen=True)
class DocumentDetails:
    """What is known of a document's version besides its chunks: the actor who uploaded
    it through the API (such as "key:ab12cd"; None for a file ingested from a folder or
    the command line), its number of pages (None for a format without pages), and what
    the parser warned of."""

    uploaded_by: str | None = None
    pages: int | None = None
    warnings: tuple[DocumentWarning, ...] = ()

    def to_json(self) -> str:
        """The details as the manifests store them: JSON text (ASCII, so NUL is escaped)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | None) -> DocumentDetails:
        """The details `to_json` wrote; none known for `{}` (a record made before details
        were kept) or for text that is not such JSON."""
        try:
            data = json.loads(text or "{}")
        except ValueError:
            return NO_DETAILS
        if not isinstance(data, dict):
            return NO_DETAILS
        uploaded_by, pages = data.get("uploaded_by"), data.get("pages")
        warnings = tuple(
            DocumentWarning(
                str(w.get("code", "")), str(w.get("message", "")), str(w.get("detail", ""))
            )
            for w in data.get("warnings") or []
            if isinstance(w, dict)
        )
        return cls(
            uploaded_by if isinstance(uploaded_by, str) else None,
            pages if isinstance(pages, int) else None,
            warnings,
        )


NO_DETAILS = DocumentDetails()


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
    # The name of each source, in the same order.
    names: tuple[str, ...]
    details: DocumentDetails = NO_DETAILS


@dataclass(frozen=True)
class SourceRecord:
    collection: str
    source: str
    doc_id: str
    size: int
    mtime_ns: int
    name: str


# What separates an archive's source from the path of a member inside it:
# `/data/reports.zip!/2024/q1.pdf`. A member of a member: `a.zip!/b.zip!/c.pdf`.
MEMBER_MARK = "!/"


@dataclass(frozen=True)
class GroupEntry:
    """One source of a group that `commit_group` makes visible at once (an archive and
    its members). With `title` set, the document (begun already) becomes `indexed`
    with that title, `chunks` and `details`; with `error_code` set, it is recorded
    `failed` with `details` (made with `sha256` and `pipeline` when it has no record
    yet); with neither, the source only points at a document already recorded."""

    source: str
    name: str
    doc_id: str
    size: int
    mtime_ns: int
    title: str | None = None
    chunks: int = 0
    error_code: str | None = None
    error: str | None = None
    sha256: str = ""
    pipeline: str = ""
    details: DocumentDetails = NO_DETAILS


def file_name(source: str) -> str:
    """The name of a file that came on its own: the last part of its path."""
    return PurePosixPath(source).name


class DocumentManifest(Protocol):
    """What each collection holds, and which of it queries may see.

    The visibility rules: a document is visible (its chunks may be returned) only while
    its status is `indexed`. `begin` makes it `pending` and `commit` `indexed`; a
    document no source points at any more, or one `retire`d, is `deleting` at once, in
    the same step that moved its last source away; `fail` records `failed`, never
    visible. A missing collection reads as empty. tests/contract/test_manifest.py holds
    every implementation to these rules; `Manifest` is the one on SQLite.
    """

    def source(self, collection: str, source: str) -> SourceRecord | None:
        """What `source` (a server path) points at; None if the collection has no such path."""
        ...

    def source_names(self, collection: str, sources: Iterable[str]) -> dict[str, str]:
        """The name readers know each of `sources` by; a path not recorded is known by
        its file name."""
        ...

    def document(self, collection: str, doc_id: str) -> DocumentRecord | None:
        """The document's record, whatever its status; None if there is none."""
        ...

    def documents(self, collection: str) -> list[DocumentRecord]:
        """Every document of `collection` that is not `deleting`, by first source."""
        ...

    def unfinished(self, collection: str | None = None) -> list[DocumentRecord]:
        """The documents left `pending` or `deleting` (in every collection when None)."""
        ...

    def visible(self, collection: str, doc_ids: Iterable[str]) -> set[str]:
        """The subset of `doc_ids` whose chunks queries may see."""
        ...

    def matching(self, collection: str, filters: Filters) -> set[str]:
        """Ids of the visible documents with a source that meets every condition of
        `filters` (rag/retrieval/filters.py)."""
        ...

    def collections(self) -> list[str]:
        """The names of the collections that have any document record, sorted."""
        ...

    def visible_count(self, collection: str) -> int:
        """How many documents of `collection` queries may see."""
        ...

    def sources_under(self, collection: str, folder: str) -> list[str]:
        """The recorded source paths inside `folder` (a resolved directory path)."""
        ...

    def begin(self, collection: str, doc_id: str, sha256: str, pipeline: str) -> None:
        """Record that a document's chunks are about to be written: `pending`, invisible
        until `commit`. Beginning a recorded document again makes it `pending` again."""
        ...

    def repipe(self, collection: str, old: str, new: str) -> int:
        """Record the documents of `collection` made by the pipeline `old` as made by
        `new` (their chunks were re-embedded: ingest/reindex.py); how many there were."""
        ...

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
        name: str | None = None,
        details: DocumentDetails = NO_DETAILS,
    ) -> str | None:
        """Make the document visible with `details` and point `source` at it, in one step.
        `name` is what readers call the source (its file name if not given).

        Returns the id of the document `source` pointed at before when nothing points at
        that one any more: it is `deleting` from this same step, and its chunks are to be
        removed next. None otherwise (committing the same source again included).
        """
        ...

    def attach(
        self,
        collection: str,
        source: str,
        doc_id: str,
        size: int,
        mtime_ns: int,
        name: str | None = None,
    ) -> str | None:
        """Point `source` at a recorded document (the same bytes under another path);
        returns the document it leaves behind, as `commit` does."""
        ...

    def commit_group(
        self, collection: str, entries: Sequence[GroupEntry], *, replacing: str | None = None
    ) -> list[str]:
        """Each entry's document made visible or recorded failed, and its source pointed
        at it, all in one step (see `GroupEntry`). With `replacing` (an archive's
        source), every other source inside it (`replacing!/...`) is forgotten in the
        same step, so that readers see the archive's old members or its new ones, never
        a mix. Returns the ids of the documents nothing points at any more: `deleting`
        from this same step, their chunks to be removed next."""
        ...

    def rename(self, collection: str, source: str, name: str) -> None:
        """Record `name` as what readers call `source`."""
        ...

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
        name: str | None = None,
        details: DocumentDetails = NO_DETAILS,
    ) -> str | None:
        """Record that a file could not be indexed (`failed`, never visible, with
        `details`) and point its source at that record; returns the document it leaves
        behind, as `commit` does."""
        ...

    def detach(self, collection: str, source: str) -> str | None:
        """Forget a source path; returns its document's id when nothing points at that
        document any more (it is then `deleting`)."""
        ...

    def retire(self, collection: str, doc_id: str) -> list[str]:
        """Hide a document now (`deleting`) and drop its sources, and the sources inside
        them when it is an archive (its members: `source!/...`), whose documents nothing
        else points at are `deleting` too. Returns the paths dropped."""
        ...

    def forget(self, collection: str, doc_id: str) -> None:
        """Remove a document's record, once its chunks are gone from the stores."""
        ...

    def close(self) -> None:
        """Let go of the storage; the object is not used afterwards."""
        ...


class Manifest:
    """Thread-safe access to the manifest database at `path` (created on first use)."""

    def __init__(self, path: Path, gate: WriteGate | None = None):
        self.path = path
        self._gate = gate
        self._lock = threading.RLock()
        self._db = database.connect(path)
        database.open_schema(self._db, path, SCHEMA_VERSION, _SCHEMA)
        self._add_names()
        self._add_details()
        database.stamp_schema(self._db, SCHEMA_VERSION)

    def _add_names(self) -> None:
        """Give a manifest made before sources had names a `name` column, each row the
        file's name (what an upload is called; ingesting a folder again records the
        paths within it). Checked again inside the transaction: another process may
        be opening the same manifest."""
        if self._has_column("sources", "name"):
            return
        with self._transaction() as db:
            if self._has_column("sources", "name"):
                return
            db.execute("ALTER TABLE sources ADD COLUMN name TEXT NOT NULL DEFAULT ''")
            rows = db.execute("SELECT collection, source FROM sources").fetchall()
            db.executemany(
                "UPDATE sources SET name = ? WHERE collection = ? AND source = ?",
                [(file_name(r["source"]), r["collection"], r["source"]) for r in rows],
            )

    def _add_details(self) -> None:
        """Give a manifest made before documents had details a `details` column, each
        row's `{}` (none known until the file is ingested again). Checked again inside
        the transaction, as `_add_names` is."""
        if self._has_column("documents", "details"):
            return
        with self._transaction() as db:
            if not self._has_column("documents", "details"):
                db.execute("ALTER TABLE documents ADD COLUMN details TEXT NOT NULL DEFAULT '{}'")

    def _has_column(self, table: str, column: str) -> bool:
        # `table` is one of the fixed names written in this class.
        with self._lock:
            columns = self._db.execute(f"PRAGMA table_info({table})").fetchall()
        return any(found["name"] == column for found in columns)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with passing(self._gate), database.transaction(self._db, self._lock) as db:
            yield db

    # -- reading ------------------------------------------------------------

    def source(self, collection: str, source: str) -> SourceRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM sources WHERE collection = ? AND source = ?", (collection, source)
            ).fetchone()
        if row is None:
            return None
        return SourceRecord(
            collection, source, row["doc_id"], row["size"], row["mtime_ns"], row["name"]
        )

    def source_names(self, collection: str, sources: Iterable[str]) -> dict[str, str]:
        """The name of each of `sources` (server paths), as readers know it. A path the
        manifest does not record (any more) is known by its file name."""
        wanted = sorted(set(sources))
        names = {source: file_name(source) for source in wanted}
        query = "SELECT source, name FROM sources WHERE collection = ? AND source IN ({})"
        rows = self._select_in(query, collection, wanted)
        names.update((row["source"], row["name"]) for row in rows)
        return names

    def _select_in(self, query: str, collection: str, values: list[str]) -> list[sqlite3.Row]:
        """The rows of `query` (a fixed text of this class whose `{}` takes the marks of
        an IN list) for `collection` and `values`, asked 500 values at a time: SQLite
        caps the number of parameters."""
        rows: list[sqlite3.Row] = []
        with self._lock:
            for start in range(0, len(values), 500):
                batch = values[start : start + 500]
                marks = ",".join("?" * len(batch))
                cursor = self._db.execute(query.format(marks), (collection, *batch))
                rows += cursor.fetchall()
        return rows

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
        # Each source comes as "path NUL name", joined by NUL: neither can hold a NUL.
        query = (
            "SELECT d.*, group_concat(s.source || char(0) || s.name, char(0)) AS source_list "  # noqa: S608
            "FROM documents d "
            "LEFT JOIN sources s ON s.collection = d.collection AND s.doc_id = d.doc_id "
            f"WHERE {where} GROUP BY d.collection, d.doc_id"
        )
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        records = []
        for row in rows:
            parts = row["source_list"].split("\0") if row["source_list"] else []
            sources = sorted(zip(parts[0::2], parts[1::2], strict=True))
            records.append(
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
                    sources=tuple(source for source, _ in sources),
                    names=tuple(name for _, name in sources),
                    details=DocumentDetails.from_json(row["details"]),
                )
            )
        return records

    def visible(self, collection: str, doc_ids: Iterable[str]) -> set[str]:
        """The subset of `doc_ids` whose chunks queries may see."""
        query = (
            "SELECT doc_id FROM documents WHERE collection = ? AND status = 'indexed' "
            "AND doc_id IN ({})"
        )
        return {row["doc_id"] for row in self._select_in(query, collection, sorted(set(doc_ids)))}

    def matching(self, collection: str, filters: Filters) -> set[str]:
        """Ids of the visible documents with a source that meets every condition.

        Source patterns match a source's name, and its server path too when
        `filters.paths` allows it.
        """
        clauses = ["s.collection = ?", "d.status = 'indexed'"]
        args: list[str | int] = [collection]
        if filters.sources:
            names = [g for pattern in filters.sources for g in name_globs(pattern)]
            paths = [g for pattern in filters.sources for g in source_globs(pattern)]
            paths = paths if filters.paths else []
            tests = ["s.name GLOB ?"] * len(names) + ["s.source GLOB ?"] * len(paths)
            clauses.append("(" + " OR ".join(tests) + ")")
            args += names + paths
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
        name: str | None = None,
        details: DocumentDetails = NO_DETAILS,
    ) -> str | None:
        """Make a document visible with `details` and point `source` at it, atomically.
        `name` is what readers call the source (its file name if not given).

        Returns the id of the document `source` pointed at before, when that one is now
        unreferenced: it was marked `deleting` in the same transaction, and its chunks
        should be removed next.
        """
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "UPDATE documents SET status = 'indexed', title = ?, chunks = ?, details = ?, "
                "error_code = NULL, error = NULL, updated_at = ? "
                "WHERE collection = ? AND doc_id = ?",
                (title, chunks, details.to_json(), now, collection, doc_id),
            )
            return self._point(db, collection, source, name, doc_id, size, mtime_ns, now)

    def attach(
        self,
        collection: str,
        source: str,
        doc_id: str,
        size: int,
        mtime_ns: int,
        name: str | None = None,
    ) -> str | None:
        """Point `source` at an existing document (same bytes seen under another name)."""
        with self._transaction() as db:
            return self._point(db, collection, source, name, doc_id, size, mtime_ns, time.time())

    def commit_group(
        self, collection: str, entries: Sequence[GroupEntry], *, replacing: str | None = None
    ) -> list[str]:
        now = time.time()
        with self._transaction() as db:
            for entry in entries:
                if entry.error_code is not None:
                    db.execute(
                        "INSERT INTO documents (collection, doc_id, sha256, status, error_code, "
                        "error, pipeline, created_at, updated_at, details) "
                        "VALUES (?, ?, ?, 'failed', ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (collection, doc_id) DO UPDATE SET status = 'failed', "
                        "error_code = excluded.error_code, error = excluded.error, "
                        "pipeline = excluded.pipeline, chunks = 0, "
                        "updated_at = excluded.updated_at, details = excluded.details",
                        (collection, entry.doc_id, entry.sha256, entry.error_code, entry.error,
                         entry.pipeline, now, now, entry.details.to_json()),
                    )  # fmt: skip
                elif entry.title is not None:
                    db.execute(
                        "UPDATE documents SET status = 'indexed', title = ?, chunks = ?, "
                        "details = ?, error_code = NULL, error = NULL, updated_at = ? "
                        "WHERE collection = ? AND doc_id = ?",
                        (entry.title, entry.chunks, entry.details.to_json(), now, collection,
                         entry.doc_id),
                    )  # fmt: skip
            # Documents left behind are retired once every source points where it will:
            # one left by an entry may be the document of another.
            left: set[str] = set()
            for entry in entries:
                previous = self._repoint(db, collection, entry, now)
                if previous is not None:
                    left.add(previous)
            if replacing is not None:
                kept = {entry.source for entry in entries}
                prefix = replacing + MEMBER_MARK
                rows = db.execute(
                    "SELECT source, doc_id FROM sources WHERE collection = ? "
                    "AND substr(source, 1, ?) = ?",
                    (collection, len(prefix), prefix),
                ).fetchall()
                for row in rows:
                    if row["source"] not in kept:
                        db.execute(
                            "DELETE FROM sources WHERE collection = ? AND source = ?",
                            (collection, row["source"]),
                        )
                        left.add(row["doc_id"])
            return [doc for doc in sorted(left) if self._retire_if_orphan(db, collection, doc, now)]

    def _repoint(
        self, db: sqlite3.Connection, collection: str, entry: GroupEntry, now: float
    ) -> str | None:
        """Point `entry.source` at its document; the id it pointed at before, if another."""
        row = db.execute(
            "SELECT doc_id FROM sources WHERE collection = ? AND source = ?",
            (collection, entry.source),
        ).fetchone()
        db.execute(
            "INSERT INTO sources (collection, source, name, doc_id, size, mtime_ns, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (collection, source) DO UPDATE SET "
            "name = excluded.name, doc_id = excluded.doc_id, size = excluded.size, "
            "mtime_ns = excluded.mtime_ns, updated_at = excluded.updated_at",
            (collection, entry.source, entry.name, entry.doc_id, entry.size, entry.mtime_ns, now),
        )
        previous = row["doc_id"] if row is not None else None
        return previous if previous not in (None, entry.doc_id) else None

    def repipe(self, collection: str, old: str, new: str) -> int:
        with self._transaction() as db:
            return db.execute(
                "UPDATE documents SET pipeline = ? WHERE collection = ? AND pipeline = ?",
                (new, collection, old),
            ).rowcount

    def rename(self, collection: str, source: str, name: str) -> None:
        """Record `name` as what readers call `source` (a file ingested from another folder)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE sources SET name = ? WHERE collection = ? AND source = ?",
                (name, collection, source),
            )

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
        name: str | None = None,
        details: DocumentDetails = NO_DETAILS,
    ) -> str | None:
        """Record that a file could not be indexed, with `details`, and point its source at
        that record."""
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "INSERT INTO documents (collection, doc_id, sha256, status, error_code, error, "
                "pipeline, created_at, updated_at, details) "
                "VALUES (?, ?, ?, 'failed', ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (collection, doc_id) DO UPDATE SET status = 'failed', "
                "error_code = excluded.error_code, error = excluded.error, "
                "pipeline = excluded.pipeline, chunks = 0, updated_at = excluded.updated_at, "
                "details = excluded.details",
                (collection, doc_id, sha256, code, error, pipeline, now, now, details.to_json()),
            )
            return self._point(db, collection, source, name, doc_id, size, mtime_ns, now)

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
        """Hide a document now and drop its sources, with the members of an archive;
        returns the source paths dropped."""
        now = time.time()
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
                (now, collection, doc_id),
            )
            dropped = [row["source"] for row in rows]
            for source in list(dropped):
                prefix = source + MEMBER_MARK
                members = db.execute(
                    "SELECT source, doc_id FROM sources WHERE collection = ? "
                    "AND substr(source, 1, ?) = ?",
                    (collection, len(prefix), prefix),
                ).fetchall()
                for member in members:
                    db.execute(
                        "DELETE FROM sources WHERE collection = ? AND source = ?",
                        (collection, member["source"]),
                    )
                    dropped.append(member["source"])
                for member_doc in {member["doc_id"] for member in members}:
                    self._retire_if_orphan(db, collection, member_doc, now)
        return dropped

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
        name: str | None,
        doc_id: str,
        size: int,
        mtime_ns: int,
        now: float,
    ) -> str | None:
        entry = GroupEntry(source, name or file_name(source), doc_id, size, mtime_ns)
        previous = self._repoint(db, collection, entry, now)
        if previous is None:
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
