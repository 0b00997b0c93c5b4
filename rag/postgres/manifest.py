"""The document manifest in PostgreSQL, for cluster mode: `DocumentManifest` over the
tables `manifest_documents` and `manifest_sources` (migrations/sql/0001/10_manifest.sql;
migration 0003 gives each document its `details`).

The rules are those of the SQLite `Manifest` (rag/retrieval/manifest.py), and so are
the statements, one for one. What SQLite gets from BEGIN IMMEDIATE, one writer at a
time, comes here from a transaction-scoped advisory lock on the collection, taken
before a write transaction reads anything: writers of one collection (in any process)
act one after another, each on the state the last one committed, while writers of
different collections go on side by side. Every write touches one collection only,
and each transaction takes one lock, so no two can wait for each other.

Source filters are SQLite GLOB patterns (rag/retrieval/filters.py); `glob_regex`
translates each into a PostgreSQL regular expression that matches the same texts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from rag.postgres.database import Database, pg_text
from rag.retrieval.filters import Filters, epoch_microseconds, name_globs, source_globs
from rag.retrieval.manifest import (
    MEMBER_MARK,
    NO_DETAILS,
    DocumentDetails,
    DocumentRecord,
    GroupEntry,
    SourceRecord,
    file_name,
)

Connection = psycopg.Connection[dict[str, Any]]


# Each document with its sources as [path, name] pairs (NULL when it has none).
_DOCUMENTS = (
    "SELECT d.*, array_agg(ARRAY[s.source, s.name]) FILTER (WHERE s.source IS NOT NULL) "
    "AS sources FROM manifest_documents d LEFT JOIN manifest_sources s "
    "ON s.collection = d.collection AND s.doc_id = d.doc_id "
    "WHERE {} GROUP BY d.collection, d.doc_id"
)


def _char(code: int) -> str:
    """A regular-expression escape for the character `code` (valid in brackets too)."""
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def glob_regex(pattern: str) -> str | None:
    """A PostgreSQL regular expression that matches what SQLite's GLOB `pattern` does;
    None when the pattern matches nothing (an unclosed or empty `[...]`).

    `*` is any text, `?` any one character, `[...]` one of a set (`^` first inverts it,
    `]` first is itself, `a-z` a range); everything else is itself, case and all.
    """
    parts = ["^"]
    i = 0
    while i < len(pattern):
        c = pattern[i]
        i += 1
        if c == "*":
            parts.append(".*")
        elif c == "?":
            parts.append(".")
        elif c == "[":
            members, i = _bracket(pattern, i)
            if members is None:
                return None
            parts.append(members)
        else:
            parts.append(c if c.isalnum() else _char(ord(c)))
    parts.append("$")
    return "".join(parts)


def _bracket(pattern: str, i: int) -> tuple[str | None, int]:
    """The set that starts after the `[` at `pattern[i - 1]`, as a bracket expression, and
    the index after its `]`; None for a set SQLite never matches. Read as SQLite's
    patternCompare reads it."""
    invert = i < len(pattern) and pattern[i] == "^"
    i += invert
    items: list[str] = []
    if i < len(pattern) and pattern[i] == "]":
        items.append(_char(ord("]")))
        i += 1
    prior: int | None = None
    while i < len(pattern) and pattern[i] != "]":
        c = pattern[i]
        following = pattern[i + 1] if i + 1 < len(pattern) else "]"
        if c == "-" and following != "]" and prior is not None:
            last = ord(following)
            if prior <= last:
                items.append(_char(prior) + "-" + _char(last))
            i += 2
            prior = None
        else:
            items.append(_char(ord(c)))
            prior = ord(c)
            i += 1
    if i >= len(pattern):  # no closing bracket
        return None, i
    i += 1
    if not items:  # only empty ranges: nothing, or with ^ anything
        return ("." if invert else None), i
    return "[" + ("^" if invert else "") + "".join(items) + "]", i


def _extension_regex(extension: str) -> str:
    """A regular expression for a path ending in `.extension` (ASCII, any case)."""
    letters = (f"[{c}{c.upper()}]" if c.isalpha() else _char(ord(c)) for c in extension)
    return "\\." + "".join(letters) + "$"


class PgManifest:
    """The manifest of every collection, in the database that `database` connects to.

    Any number of processes may use it at once. `close` leaves the shared database open.
    """

    def __init__(self, database: Database):
        self._db = database

    def close(self) -> None:
        """Nothing to let go of: the connections belong to the shared `Database`."""

    def _writing(self, conn: Connection, collection: str) -> None:
        """Wait until no other transaction writes `collection`'s rows (see the module)."""
        # The first key names the manifest's locks (19533 is "LM"), the second the
        # collection. Two-key advisory locks never meet the one-key ones other code takes.
        conn.execute("SELECT pg_advisory_xact_lock(19533, hashtext(%s))", (collection,))

    # -- reading ------------------------------------------------------------

    def source(self, collection: str, source: str) -> SourceRecord | None:
        """What `source` (a server path) points at; None if the collection has no such path."""
        with self._db.connection() as conn:
            row = conn.execute(
                "SELECT * FROM manifest_sources WHERE collection = %s AND source = %s",
                (collection, source),
            ).fetchone()
        if row is None:
            return None
        return SourceRecord(
            collection, source, row["doc_id"], row["size"], row["mtime_ns"], row["name"]
        )

    def source_names(self, collection: str, sources: Iterable[str]) -> dict[str, str]:
        """The name readers know each of `sources` by; a path not recorded is known by
        its file name."""
        wanted = sorted(set(sources))
        names = {source: file_name(source) for source in wanted}
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT source, name FROM manifest_sources "
                "WHERE collection = %s AND source = ANY(%s)",
                (collection, wanted),
            ).fetchall()
        names.update((row["source"], row["name"]) for row in rows)
        return names

    def document(self, collection: str, doc_id: str) -> DocumentRecord | None:
        """The document's record, whatever its status; None if there is none."""
        records = self._documents("d.collection = %s AND d.doc_id = %s", (collection, doc_id))
        return records[0] if records else None

    def documents(self, collection: str) -> list[DocumentRecord]:
        """Every document of `collection` that is not `deleting`, by first source."""
        records = self._documents("d.collection = %s AND d.status != 'deleting'", (collection,))
        return sorted(records, key=lambda r: (r.sources[0] if r.sources else "", r.doc_id))

    def unfinished(self, collection: str | None = None) -> list[DocumentRecord]:
        """The documents left `pending` or `deleting` (in every collection when None)."""
        if collection is None:
            return self._documents("d.status IN ('pending', 'deleting')", ())
        return self._documents(
            "d.collection = %s AND d.status IN ('pending', 'deleting')", (collection,)
        )

    def _documents(self, where: str, args: tuple[str, ...]) -> list[DocumentRecord]:
        # `where` is one of the fixed clauses written in this class, never user input.
        with self._db.connection() as conn:
            rows = conn.execute(_DOCUMENTS.format(where), args).fetchall()
        records = []
        for row in rows:
            # By the path in Python's order of code points, as the SQLite manifest sorts.
            sources = sorted((source, name) for source, name in row["sources"] or [])
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
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT doc_id FROM manifest_documents WHERE collection = %s "
                "AND status = 'indexed' AND doc_id = ANY(%s)",
                (collection, sorted(set(doc_ids))),
            ).fetchall()
        return {row["doc_id"] for row in rows}

    def matching(self, collection: str, filters: Filters) -> set[str]:
        """Ids of the visible documents with a source that meets every condition.

        Source patterns match a source's name, and its server path too when
        `filters.paths` allows it.
        """
        clauses = ["s.collection = %s", "d.status = 'indexed'"]
        args: list[str | int] = [collection]
        if filters.sources:
            names = [g for pattern in filters.sources for g in name_globs(pattern)]
            paths = [g for pattern in filters.sources for g in source_globs(pattern)]
            paths = paths if filters.paths else []
            globs = [("s.name", glob_regex(g)) for g in names]
            globs += [("s.source", glob_regex(g)) for g in paths]
            kept = [(column, regex) for column, regex in globs if regex is not None]
            if not kept:
                return set()
            clauses.append("(" + " OR ".join(f'{c} COLLATE "C" ~ %s' for c, _ in kept) + ")")
            args += [regex for _, regex in kept]
        if filters.types:
            tests = ['s.source COLLATE "C" ~ %s'] * len(filters.types)
            clauses.append("(" + " OR ".join(tests) + ")")
            args += [_extension_regex(extension) for extension in filters.types]
        # Whole microseconds, rounded toward zero, as the SQLite manifest compares.
        if filters.since:
            clauses.append("s.mtime_ns / 1000 >= %s")
            args.append(epoch_microseconds(filters.since))
        if filters.until:
            clauses.append("s.mtime_ns / 1000 <= %s")
            args.append(epoch_microseconds(filters.until))
        # The clauses are the fixed strings above; every value is a bound parameter.
        query = (
            "SELECT DISTINCT s.doc_id FROM manifest_sources s JOIN manifest_documents d "  # noqa: S608
            "ON d.collection = s.collection AND d.doc_id = s.doc_id WHERE " + " AND ".join(clauses)
        )
        with self._db.connection() as conn:
            rows = conn.execute(query, args).fetchall()
        return {row["doc_id"] for row in rows}

    def visible_count(self, collection: str) -> int:
        """How many documents of `collection` queries may see."""
        with self._db.connection() as conn:
            row = conn.execute(
                "SELECT count(*) AS n FROM manifest_documents "
                "WHERE collection = %s AND status = 'indexed'",
                (collection,),
            ).fetchone()
        return int(row["n"]) if row else 0

    def sources_under(self, collection: str, folder: str) -> list[str]:
        """The recorded source paths inside `folder` (a resolved directory path)."""
        prefix = folder.rstrip("/") + "/"
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT source FROM manifest_sources "
                "WHERE collection = %s AND starts_with(source, %s)",
                (collection, prefix),
            ).fetchall()
        return sorted(row["source"] for row in rows)

    def collections(self) -> list[str]:
        """The names of the collections that have any document record, sorted."""
        with self._db.connection() as conn:
            rows = conn.execute("SELECT DISTINCT collection FROM manifest_documents").fetchall()
        return sorted(row["collection"] for row in rows)

    # -- writing ------------------------------------------------------------

    def begin(self, collection: str, doc_id: str, sha256: str, pipeline: str) -> None:
        """Record that a document's chunks are about to be written: `pending`, invisible
        until `commit`. Beginning a recorded document again makes it `pending` again."""
        now = time.time()
        with self._db.transaction() as conn:
            self._writing(conn, collection)
            conn.execute(
                "INSERT INTO manifest_documents (collection, doc_id, sha256, status, pipeline, "
                "created_at, updated_at) VALUES (%s, %s, %s, 'pending', %s, %s, %s) "
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
        """Make the document visible with `details` and point `source` at it, in one step;
        returns the document `source` leaves behind, if nothing points at it any more
        (`deleting`)."""
        now = time.time()
        with self._db.transaction() as conn:
            self._writing(conn, collection)
            conn.execute(
                "UPDATE manifest_documents SET status = 'indexed', title = %s, chunks = %s, "
                "details = %s, error_code = NULL, error = NULL, updated_at = %s "
                "WHERE collection = %s AND doc_id = %s",
                (pg_text(title), chunks, details.to_json(), now, collection, doc_id),
            )
            return self._point(conn, collection, source, name, doc_id, size, mtime_ns, now)

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
        with self._db.transaction() as conn:
            self._writing(conn, collection)
            return self._point(conn, collection, source, name, doc_id, size, mtime_ns, time.time())

    def commit_group(
        self, collection: str, entries: Sequence[GroupEntry], *, replacing: str | None = None
    ) -> list[str]:
        """Each entry's document made visible or failed and its source pointed at it, with
        the other members of `replacing` forgotten, in one step; returns the documents
        nothing points at any more (`deleting`)."""
        now = time.time()
        with self._db.transaction() as conn:
            self._writing(conn, collection)
            for entry in entries:
                if entry.error_code is not None:
                    conn.execute(
                        "INSERT INTO manifest_documents (collection, doc_id, sha256, status, "
                        "error_code, error, pipeline, created_at, updated_at, details) "
                        "VALUES (%s, %s, %s, 'failed', %s, %s, %s, %s, %s, %s) "
                        "ON CONFLICT (collection, doc_id) DO UPDATE SET status = 'failed', "
                        "error_code = excluded.error_code, error = excluded.error, "
                        "pipeline = excluded.pipeline, chunks = 0, "
                        "updated_at = excluded.updated_at, details = excluded.details",
                        (collection, entry.doc_id, entry.sha256, entry.error_code,
                         pg_text(entry.error or ""), entry.pipeline, now, now,
                         entry.details.to_json()),
                    )  # fmt: skip
                elif entry.title is not None:
                    conn.execute(
                        "UPDATE manifest_documents SET status = 'indexed', title = %s, "
                        "chunks = %s, details = %s, error_code = NULL, error = NULL, "
                        "updated_at = %s WHERE collection = %s AND doc_id = %s",
                        (pg_text(entry.title), entry.chunks, entry.details.to_json(), now,
                         collection, entry.doc_id),
                    )  # fmt: skip
            # Retired once every source points where it will (see the SQLite manifest).
            left: set[str] = set()
            for entry in entries:
                previous = self._repoint(conn, collection, entry, now)
                if previous is not None:
                    left.add(previous)
            if replacing is not None:
                rows = conn.execute(
                    "DELETE FROM manifest_sources WHERE collection = %s "
                    "AND starts_with(source, %s) AND NOT source = ANY(%s) RETURNING doc_id",
                    (collection, replacing + MEMBER_MARK, [e.source for e in entries]),
                ).fetchall()
                left.update(row["doc_id"] for row in rows)
            retired = (self._retire_if_orphan(conn, collection, doc, now) for doc in sorted(left))
            return [doc for doc in retired if doc is not None]

    @staticmethod
    def _repoint(conn: Connection, collection: str, entry: GroupEntry, now: float) -> str | None:
        """Point `entry.source` at its document; the id it pointed at before, if another."""
        row = conn.execute(
            "SELECT doc_id FROM manifest_sources WHERE collection = %s AND source = %s",
            (collection, entry.source),
        ).fetchone()
        conn.execute(
            "INSERT INTO manifest_sources (collection, source, name, doc_id, size, mtime_ns, "
            "updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (collection, source) DO UPDATE SET name = excluded.name, "
            "doc_id = excluded.doc_id, size = excluded.size, mtime_ns = excluded.mtime_ns, "
            "updated_at = excluded.updated_at",
            (collection, entry.source, pg_text(entry.name), entry.doc_id, entry.size,
             entry.mtime_ns, now),
        )  # fmt: skip
        previous = row["doc_id"] if row is not None else None
        return previous if previous not in (None, entry.doc_id) else None

    def repipe(self, collection: str, old: str, new: str) -> int:
        with self._db.transaction() as conn:
            self._writing(conn, collection)
            cursor = conn.execute(
                "UPDATE manifest_documents SET pipeline = %s "
                "WHERE collection = %s AND pipeline = %s",
                (new, collection, old),
            )
            return cursor.rowcount

    def rename(self, collection: str, source: str, name: str) -> None:
        """Record `name` as what readers call `source`."""
        with self._db.transaction() as conn:
            self._writing(conn, collection)
            conn.execute(
                "UPDATE manifest_sources SET name = %s WHERE collection = %s AND source = %s",
                (pg_text(name), collection, source),
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
        """Record that a file could not be indexed (`failed`, never visible, with
        `details`) and point its source at that record; returns the document it leaves
        behind, as `commit` does."""
        now = time.time()
        with self._db.transaction() as conn:
            self._writing(conn, collection)
            conn.execute(
                "INSERT INTO manifest_documents (collection, doc_id, sha256, status, error_code, "
                "error, pipeline, created_at, updated_at, details) "
                "VALUES (%s, %s, %s, 'failed', %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (collection, doc_id) DO UPDATE SET status = 'failed', "
                "error_code = excluded.error_code, error = excluded.error, "
                "pipeline = excluded.pipeline, chunks = 0, updated_at = excluded.updated_at, "
                "details = excluded.details",
                (collection, doc_id, sha256, code, pg_text(error), pipeline, now, now,
                 details.to_json()),
            )  # fmt: skip
            return self._point(conn, collection, source, name, doc_id, size, mtime_ns, now)

    def detach(self, collection: str, source: str) -> str | None:
        """Forget a source path; returns its document's id when nothing points at that
        document any more (it is then `deleting`)."""
        with self._db.transaction() as conn:
            self._writing(conn, collection)
            row = conn.execute(
                "DELETE FROM manifest_sources WHERE collection = %s AND source = %s "
                "RETURNING doc_id",
                (collection, source),
            ).fetchone()
            if row is None:
                return None
            return self._retire_if_orphan(conn, collection, row["doc_id"], time.time())

    def retire(self, collection: str, doc_id: str) -> list[str]:
        """Hide a document now (`deleting`) and drop its sources, with the members of an
        archive; returns the paths dropped."""
        with self._db.transaction() as conn:
            self._writing(conn, collection)
            rows = conn.execute(
                "DELETE FROM manifest_sources WHERE collection = %s AND doc_id = %s "
                "RETURNING source",
                (collection, doc_id),
            ).fetchall()
            now = time.time()
            conn.execute(
                "UPDATE manifest_documents SET status = 'deleting', updated_at = %s "
                "WHERE collection = %s AND doc_id = %s",
                (now, collection, doc_id),
            )
            dropped = [row["source"] for row in rows]
            for source in list(dropped):
                members = conn.execute(
                    "DELETE FROM manifest_sources WHERE collection = %s "
                    "AND starts_with(source, %s) RETURNING source, doc_id",
                    (collection, source + MEMBER_MARK),
                ).fetchall()
                dropped += [member["source"] for member in members]
                for member_doc in sorted({member["doc_id"] for member in members}):
                    self._retire_if_orphan(conn, collection, member_doc, now)
        return dropped

    def forget(self, collection: str, doc_id: str) -> None:
        """Remove a document's record, once its chunks are gone from the stores."""
        with self._db.transaction() as conn:
            self._writing(conn, collection)
            conn.execute(
                "DELETE FROM manifest_documents WHERE collection = %s AND doc_id = %s",
                (collection, doc_id),
            )

    def _point(
        self,
        conn: Connection,
        collection: str,
        source: str,
        name: str | None,
        doc_id: str,
        size: int,
        mtime_ns: int,
        now: float,
    ) -> str | None:
        entry = GroupEntry(source, name or file_name(source), doc_id, size, mtime_ns)
        previous = self._repoint(conn, collection, entry, now)
        if previous is None:
            return None
        return self._retire_if_orphan(conn, collection, previous, now)

    @staticmethod
    def _retire_if_orphan(conn: Connection, collection: str, doc_id: str, now: float) -> str | None:
        still_used = conn.execute(
            "SELECT 1 FROM manifest_sources WHERE collection = %s AND doc_id = %s LIMIT 1",
            (collection, doc_id),
        ).fetchone()
        if still_used:
            return None
        conn.execute(
            "UPDATE manifest_documents SET status = 'deleting', updated_at = %s "
            "WHERE collection = %s AND doc_id = %s",
            (now, collection, doc_id),
        )
        return doc_id
