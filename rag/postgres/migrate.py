"""Move an embedded installation (SQLite files and a Chroma folder in data_dir) into
cluster mode (PostgreSQL and a Chroma server): `lore migrate`.

What moves: every collection's vectors and chunks, the keyword index (rebuilt from those
same chunks, as ingest builds it), the manifest's documents and sources, API keys (their
hashes; every key keeps working), the audit log entry for entry (its hash chain intact),
feedback and saved conversations. Pessimistic, as ingest is: a document's chunks are
written before its manifest row, so a query in the cluster never sees a document without
its chunks.

Every step writes by key and skips what is there already, so a migration that was
interrupted is finished by running it again. The embedded installation is only read.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from psycopg.types.json import Jsonb

from rag.container import Lore
from rag.errors import ConfigError
from rag.governance.audit import AuditLog
from rag.governance.conversations import storable_json
from rag.postgres.database import Database, pg_text
from rag.postgres.jobs import Connection

# Chunks moved to the Chroma server and the keyword index per write.
BATCH = 1000
Progress = Callable[[str, int, int], None]

AUDIT_COLUMNS = (
    "seq, at, actor, operation, collection, question, chunk_ids, doc_ids, status, "
    "request_id, prev_hash, hash"
)
FEEDBACK_COLUMNS = (
    "id, at, actor, collection, question, answer, chunk_ids, rating, comment, request_id"
)
DOCUMENT_COLUMNS = (
    "collection, doc_id, sha256, status, title, chunks, error_code, error, pipeline, "
    "created_at, updated_at"
)
SOURCE_COLUMNS = "collection, source, doc_id, size, mtime_ns, updated_at, name"
KEY_COLUMNS = "key_id, name, role, collections, secret_hash, created_at, revoked_at"
CONVERSATION_COLUMNS = "id, owner, title, collection, filters, created_at, updated_at"
TURN_COLUMNS = "conversation_id, at, question, answer, query, declined, citations, sources"


@dataclass
class MigrationReport:
    """What `migrate` moved (counts of what the target holds from the source)."""

    collections: dict[str, int] = field(default_factory=dict)  # chunks per collection
    documents: int = 0
    keys: int = 0
    audit_entries: int = 0
    feedback: int = 0
    conversations: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "collections": dict(self.collections),
            "chunks": sum(self.collections.values()),
            "documents": self.documents,
            "keys": self.keys,
            "audit_entries": self.audit_entries,
            "feedback": self.feedback,
            "conversations": self.conversations,
        }


@contextmanager
def _sqlite(path: Path) -> Iterator[sqlite3.Connection | None]:
    """The SQLite file at `path` opened read-only, or None when there is none."""
    if not path.is_file():
        yield None
        return
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        yield db


def _text(value: Any) -> Any:
    """A value PostgreSQL's text can hold: NUL becomes "?" (SQLite could store it)."""
    return value.replace("\x00", "?") if isinstance(value, str) else value


def _rows(db: sqlite3.Connection, query: str) -> list[tuple[Any, ...]]:
    return [tuple(_text(v) for v in row) for row in db.execute(query)]


def migrate(source: Lore, target: Lore, progress: Progress | None = None) -> MigrationReport:
    """Copy everything `source` (embedded) holds into `target` (cluster mode); see the
    module's docstring. ConfigError when `target` is not in cluster mode or its audit log
    already holds entries that are not the source's (two chains cannot be joined)."""
    if source.settings.cluster or not target.settings.cluster:
        raise ConfigError("migrate copies an embedded installation into cluster mode")
    database = target.database
    data = source.settings.data_dir
    report = MigrationReport()
    _check_source_audit(data / "audit.sqlite3")
    _check_audit(data / "audit.sqlite3", database)
    with _sqlite(data / "manifest.sqlite3") as manifest:
        for collection in source.store.list_collections():
            report.collections[collection] = _move_chunks(
                source, target, collection, manifest, progress
            )
        if manifest is not None:
            report.documents = _copy_manifest(manifest, database)
    report.keys = _copy_keys(data / "keys.sqlite3", database)
    report.audit_entries = _copy_audit(data / "audit.sqlite3", database)
    report.feedback = _copy_feedback(data / "feedback.sqlite3", database)
    report.conversations = _copy_conversations(data / "conversations.sqlite3", database)
    return report


def _live_documents(manifest: sqlite3.Connection | None, collection: str) -> list[str]:
    """The documents of `collection` whose chunks are to move: indexed ones only (pending
    and deleting ones are leftovers of an interrupted ingest, removed by `recover`)."""
    if manifest is None:
        return []
    rows = manifest.execute(
        "SELECT doc_id FROM documents WHERE collection = ? AND status = 'indexed' ORDER BY doc_id",
        (collection,),
    )
    return [row[0] for row in rows]


def _move_chunks(
    source: Lore,
    target: Lore,
    collection: str,
    manifest: sqlite3.Connection | None,
    progress: Progress | None,
) -> int:
    """Write the chunks and vectors of `collection`'s indexed documents to the target's
    vector store and keyword index, BATCH chunks a write (of as many documents as fill
    it); returns how many chunks moved."""
    # Vectors move as they are, so the target's collection records the embedder that
    # made them (the configured one, or another that `lore reindex` switched it to).
    built_with = source.store.embedder_of(collection)
    source_store = source.store.for_embedder(built_with) if built_with else source.store
    target_store = target.store.for_embedder(built_with) if built_with else target.store
    target_store.create_collection(collection)
    documents = _live_documents(manifest, collection)
    moved = 0
    waiting: list[str] = []

    def flush() -> None:
        nonlocal moved
        pairs = source_store.chunks_with_vectors(collection, waiting)
        if pairs:
            chunks = [chunk for chunk, _ in pairs]
            target_store.add(collection, chunks, np.stack([vector for _, vector in pairs]))
            target.keywords.add(collection, chunks)
            moved += len(chunks)
        waiting.clear()

    for number, doc_id in enumerate(documents, 1):
        waiting += [chunk.id for chunk in source_store.document_chunks(collection, doc_id)]
        if len(waiting) >= BATCH or number == len(documents):
            flush()
            if progress is not None:
                progress(collection, number, len(documents))
    return moved


def _insert(
    conn: Connection, table: str, columns: str, key: str, rows: list[tuple[Any, ...]]
) -> None:
    """Insert `rows` into `table` (`columns`, comma-separated), skipping those whose `key`
    is there already: what an interrupted migration wrote is not written twice."""
    marks = ", ".join(["%s"] * len(columns.split(",")))
    conn.cursor().executemany(
        f"INSERT INTO {table} ({columns}) VALUES ({marks}) "  # noqa: S608 (our own names)
        f"ON CONFLICT ({key}) DO NOTHING",
        rows,
    )


def _copy_manifest(manifest: sqlite3.Connection, database: Database) -> int:
    # A manifest last opened by a release before schema 3 has no details: the rows get `{}`.
    found = {row[1] for row in manifest.execute("PRAGMA table_info(documents)")}
    columns = DOCUMENT_COLUMNS + (", details" if "details" in found else "")
    documents = _rows(
        manifest,
        f"SELECT {columns} FROM documents WHERE status IN ('indexed', 'failed')",  # noqa: S608
    )
    sources = _rows(
        manifest,
        f"SELECT {', '.join('s.' + c.strip() for c in SOURCE_COLUMNS.split(','))} "  # noqa: S608
        "FROM sources s JOIN documents d ON d.collection = s.collection "
        "AND d.doc_id = s.doc_id WHERE d.status IN ('indexed', 'failed')",
    )
    with database.transaction() as conn:
        _insert(conn, "manifest_documents", columns, "collection, doc_id", documents)
        _insert(conn, "manifest_sources", SOURCE_COLUMNS, "collection, source", sources)
    return len(documents)


def _copy_keys(path: Path, database: Database) -> int:
    with _sqlite(path) as keys:
        if keys is None:
            return 0
        rows = [
            (key_id, name, role, json.loads(collections), secret_hash, created, revoked)
            for key_id, name, role, collections, secret_hash, created, revoked in _rows(
                keys,
                f"SELECT {KEY_COLUMNS} FROM api_keys",  # noqa: S608
            )
        ]
    with database.transaction() as conn:
        _insert(conn, "api_keys", KEY_COLUMNS, "key_id", rows)
    return len(rows)


def _check_audit(path: Path, database: Database, conn: Connection | None = None) -> None:
    """Refuse when the target's audit log holds an entry the source does not have at the
    same place in its chain (read on `conn` when given)."""
    with contextlib.ExitStack() as stack:
        if conn is None:
            conn = stack.enter_context(database.connection())
        last = conn.execute(
            "SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1"
        ).fetchone()
    if last is None:
        return
    with _sqlite(path) as audit:
        same = (
            audit.execute(
                "SELECT 1 FROM entries WHERE seq = ? AND hash = ?", (last["seq"], last["hash"])
            ).fetchone()
            if audit is not None
            else None
        )
    if same is None:
        raise ConfigError(
            f"The audit log at {database.where} already holds entries of its own; an "
            "installation can be migrated only into a cluster whose audit log is empty "
            "(or holds this installation's own entries, from an interrupted migration)."
        )


def _check_source_audit(path: Path) -> None:
    """Refuse, before anything is written, an audit log that could not be copied entry
    for entry: one whose chain does not verify, or whose text holds NUL (which
    PostgreSQL cannot store, and replacing it would break the entry's hash)."""
    with _sqlite(path) as audit:
        if audit is None:
            return
        nul = audit.execute(
            "SELECT seq FROM entries WHERE instr(actor || operation || coalesce(collection, '') "
            "|| coalesce(question, '') || chunk_ids || doc_ids || coalesce(request_id, ''), "
            "char(0)) > 0 LIMIT 1"
        ).fetchone()
    if nul is not None:
        raise ConfigError(
            f"Audit entry {nul[0]} in {path} holds a NUL character, which PostgreSQL cannot "
            "store; copied without it, its hash would no longer verify. Export the log "
            "(`lore audit export`) and keep it with the old data directory, then prune it "
            "(`lore audit prune`) past that entry before migrating."
        )
    log = AuditLog(path)
    try:
        verified = log.verify()
    finally:
        log.close()
    if not verified.ok:
        raise ConfigError(
            f"The audit log in {path} does not verify (entry {verified.first_bad_seq}: "
            f"{verified.problem}); a broken chain is not copied into the cluster."
        )


def _copy_audit(path: Path, database: Database) -> int:
    with _sqlite(path) as audit:
        if audit is None:
            return 0
        entries = _rows(audit, f"SELECT {AUDIT_COLUMNS} FROM entries ORDER BY seq")  # noqa: S608
        anchor = audit.execute("SELECT seq, hash FROM anchor WHERE id = 1").fetchone()
    with database.transaction() as conn:
        # Under the lock every append takes (rag/postgres/audit.py), and checked again
        # within it: nothing can join the chain between the check and the copy.
        conn.execute("SELECT pg_advisory_xact_lock('audit_entries'::regclass::oid::bigint)")
        _check_audit(path, database, conn)
        if anchor is not None:
            # The anchor of a pruned log: set only under the prune's mark (40_audit.sql).
            conn.execute("SELECT set_config('lore.audit_pruning', 'on', true)")
            conn.execute(
                "INSERT INTO audit_anchor (id, seq, hash) VALUES (1, %s, %s) "
                "ON CONFLICT (id) DO NOTHING",
                anchor,
            )
            conn.execute("SELECT set_config('lore.audit_pruning', 'off', true)")
        _insert(conn, "audit_entries", AUDIT_COLUMNS, "seq", entries)
    return len(entries)


def _copy_feedback(path: Path, database: Database) -> int:
    with _sqlite(path) as feedback:
        if feedback is None:
            return 0
        rows = [
            (*row[:6], json.loads(row[6]), *row[7:])
            for row in _rows(feedback, f"SELECT {FEEDBACK_COLUMNS} FROM feedback ORDER BY seq")  # noqa: S608
        ]
    with database.transaction() as conn:
        _insert(conn, "feedback_ratings", FEEDBACK_COLUMNS, "id", rows)
    return len(rows)


def _jsonb(text: str) -> Jsonb:
    """A JSON column of SQLite's as PostgreSQL's jsonb can hold it (no NUL in it)."""
    return Jsonb(storable_json(json.loads(text), pg_text))


def _copy_conversations(path: Path, database: Database) -> int:
    """Copy the saved conversations with their turns. One the cluster holds already (an
    interrupted migration copied it) is skipped with its turns, which came with it."""
    with _sqlite(path) as conversations:
        if conversations is None:
            return 0
        made = _rows(
            conversations,
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations ORDER BY seq",  # noqa: S608
        )
        turns = _rows(
            conversations,
            f"SELECT {TURN_COLUMNS} FROM conversation_turns ORDER BY seq",  # noqa: S608
        )
    with database.transaction() as conn:
        there = {
            row["id"]
            for row in conn.execute(
                "SELECT id FROM conversations WHERE id = ANY(%s)", ([row[0] for row in made],)
            )
        }
        _insert(
            conn,
            "conversations",
            CONVERSATION_COLUMNS,
            "id",
            [(*row[:4], _jsonb(row[4]), *row[5:]) for row in made if row[0] not in there],
        )
        conn.cursor().executemany(
            f"INSERT INTO conversation_turns ({TURN_COLUMNS}) "  # noqa: S608 (our own names)
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (*row[:5], bool(row[5]), _jsonb(row[6]), _jsonb(row[7]))
                for row in turns
                if row[0] not in there
            ],
        )
    return len(made)
