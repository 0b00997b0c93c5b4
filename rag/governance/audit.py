"""The audit log: who asked what, when, and what it touched, in a tamper-evident chain.

A SQLite database beside the index (`<data_dir>/audit.sqlite3`). Each entry records
who (an actor name such as `key:ab12cd`, `cli` or `anonymous`, never a secret), when,
the operation, the collection, the question, the ids of the chunks returned or the
documents changed, and the outcome. Document text and keys are never written to it:
the caller passes ids, and the actor is a name.

Each entry carries the sha256 of the one before it (`prev_hash`) and its own `hash`
over all of its fields, so changing, removing or reordering an entry breaks the chain
from that entry on, and `verify()` names where. Two layers guard the log:

- Triggers refuse any UPDATE of an entry, and any DELETE except the retention prune.
  The prune marks itself by inserting a row into the one-row table `pruning` and
  removes that row before its transaction commits; the delete trigger lets a DELETE
  through only while that row exists. The triggers stop mistakes and casual edits.
- The hash chain catches the rest: someone with the file can drop the triggers, but
  cannot change an entry without its hash, or its successor's `prev_hash`, showing it.

What the chain cannot show from the file alone: entries cut off the end of the log, or
entries cut off the start together with a consistently forged anchor. Keep a copy of
an export (or of the last entry's hash) elsewhere to detect those.

Retention: `prune()` removes the oldest entries and keeps the seq and hash of the last
one it removed in the table `anchor`; the remaining chain verifies from that anchor
instead of from 64 zeros.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from rag.components import database

ZERO_HASH = "0" * 64

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq         INTEGER PRIMARY KEY,
    at          REAL NOT NULL,
    actor       TEXT NOT NULL,
    operation   TEXT NOT NULL,
    collection  TEXT,
    question    TEXT,
    chunk_ids   TEXT NOT NULL,
    doc_ids     TEXT NOT NULL,
    status      INTEGER NOT NULL,
    request_id  TEXT,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS anchor (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pruning (
    id  INTEGER PRIMARY KEY CHECK (id = 1)
);
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only');
END;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
WHEN NOT EXISTS (SELECT 1 FROM pruning)
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only; only the retention prune removes them');
END;
CREATE TRIGGER IF NOT EXISTS anchor_no_insert BEFORE INSERT ON anchor
WHEN NOT EXISTS (SELECT 1 FROM pruning)
BEGIN
    SELECT RAISE(ABORT, 'the audit anchor is set only by the retention prune');
END;
CREATE TRIGGER IF NOT EXISTS anchor_no_update BEFORE UPDATE ON anchor
WHEN NOT EXISTS (SELECT 1 FROM pruning)
BEGIN
    SELECT RAISE(ABORT, 'the audit anchor is set only by the retention prune');
END;
CREATE TRIGGER IF NOT EXISTS anchor_no_delete BEFORE DELETE ON anchor
BEGIN
    SELECT RAISE(ABORT, 'the audit anchor is never removed');
END;
"""

# The columns of an entry, in the order `row_values` gives them; the id lists are JSON
# text. The PostgreSQL log (rag/postgres/audit.py) stores the same columns.
COLUMNS = (
    "seq, at, actor, operation, collection, question, chunk_ids, doc_ids, status, "
    "request_id, prev_hash, hash"
)
PAGE = 1000  # entries read at a time by verify and export


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the audit log.

    `at` is seconds since the epoch, UTC. `status` is the HTTP status the request ended
    with (200 done, 4xx refused, 5xx failed); interfaces without HTTP, such as the command
    line, record the same codes. `hash` is the sha256 of every other field, `prev_hash`
    included (see `entry_hash`).
    """

    seq: int
    at: float
    actor: str
    operation: str
    collection: str | None
    question: str | None
    chunk_ids: tuple[str, ...]
    doc_ids: tuple[str, ...]
    status: int
    request_id: str | None
    prev_hash: str
    hash: str

    def as_json(self) -> dict[str, Any]:
        """The entry as a JSON-ready dict: `at` as an ISO 8601 UTC time, `at_epoch` as stored.

        `at_epoch` and the other fields are exactly what the hash covers, so the hash can
        be recomputed from an export.
        """
        moment = datetime.fromtimestamp(self.at, UTC).isoformat(timespec="microseconds")
        return {
            "seq": self.seq,
            "at": moment.replace("+00:00", "Z"),
            "at_epoch": self.at,
            "actor": self.actor,
            "operation": self.operation,
            "collection": self.collection,
            "question": self.question,
            "chunk_ids": list(self.chunk_ids),
            "doc_ids": list(self.doc_ids),
            "status": self.status,
            "request_id": self.request_id,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of checking the chain.

    `entries` is how many entries were found intact: all of them when `ok`, else those
    before `first_bad_seq`, the seq of the first entry that fails the check. `problem`
    says what is wrong in a sentence.
    """

    ok: bool
    entries: int
    first_bad_seq: int | None = None
    problem: str | None = None


def entry_hash(
    *,
    seq: int,
    at: float,
    actor: str,
    operation: str,
    collection: str | None,
    question: str | None,
    chunk_ids: Iterable[str],
    doc_ids: Iterable[str],
    status: int,
    request_id: str | None,
    prev_hash: str,
) -> str:
    """The sha256 (hex) of an entry's fields as canonical JSON.

    Canonical: keys sorted, no spaces (`separators=(",", ":")`), UTF-8 without escapes
    (`ensure_ascii=False`), the id lists as JSON arrays.
    """
    fields = {
        "seq": seq,
        "at": at,
        "actor": actor,
        "operation": operation,
        "collection": collection,
        "question": question,
        "chunk_ids": list(chunk_ids),
        "doc_ids": list(doc_ids),
        "status": status,
        "request_id": request_id,
        "prev_hash": prev_hash,
    }
    text = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _optional(text: str | None) -> str | None:
    return None if text is None else database.storable(text)


class Row(Protocol):
    """A stored entry's columns by name (a sqlite3.Row, or a dict from PostgreSQL)."""

    def __getitem__(self, key: str, /) -> Any: ...


def entry_from_row(row: Row) -> AuditEntry:
    """The entry a stored row holds (the id lists decoded from their JSON text)."""
    return AuditEntry(
        seq=row["seq"],
        at=row["at"],
        actor=row["actor"],
        operation=row["operation"],
        collection=row["collection"],
        question=row["question"],
        chunk_ids=tuple(json.loads(row["chunk_ids"])),
        doc_ids=tuple(json.loads(row["doc_ids"])),
        status=row["status"],
        request_id=row["request_id"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


def recomputed_hash(row: Row) -> str | None:
    """The hash a row's fields give, or None when the fields cannot be read back."""
    try:
        entry = entry_from_row(row)
        return entry_hash(
            seq=entry.seq,
            at=entry.at,
            actor=entry.actor,
            operation=entry.operation,
            collection=entry.collection,
            question=entry.question,
            chunk_ids=entry.chunk_ids,
            doc_ids=entry.doc_ids,
            status=entry.status,
            request_id=entry.request_id,
            prev_hash=entry.prev_hash,
        )
    except (ValueError, TypeError):  # a hand-edited id list that is not JSON, say
        return None


def next_entry(
    *,
    last_seq: int,
    last_hash: str,
    at: float,
    actor: str,
    operation: str,
    status: int,
    collection: str | None,
    question: str | None,
    chunk_ids: tuple[str, ...],
    doc_ids: tuple[str, ...],
    request_id: str | None,
) -> AuditEntry:
    """The entry that follows the one with `last_seq` and `last_hash` (0 and 64 zeros for
    the first), its hash computed. The fields are taken as given: callers make them
    storable first."""
    seq = last_seq + 1
    digest = entry_hash(
        seq=seq,
        at=at,
        actor=actor,
        operation=operation,
        collection=collection,
        question=question,
        chunk_ids=chunk_ids,
        doc_ids=doc_ids,
        status=status,
        request_id=request_id,
        prev_hash=last_hash,
    )
    return AuditEntry(
        seq,
        at,
        actor,
        operation,
        collection,
        question,
        chunk_ids,
        doc_ids,
        status,
        request_id,
        last_hash,
        digest,
    )


def row_values(entry: AuditEntry) -> tuple[Any, ...]:
    """The entry's values in `COLUMNS` order, as stored: the id lists as JSON text."""
    return (
        entry.seq,
        entry.at,
        entry.actor,
        entry.operation,
        entry.collection,
        entry.question,
        json.dumps(list(entry.chunk_ids), ensure_ascii=False),
        json.dumps(list(entry.doc_ids), ensure_ascii=False),
        entry.status,
        entry.request_id,
        entry.prev_hash,
        entry.hash,
    )


def check_chain(anchor: tuple[int, str] | None, rows: Iterable[Row]) -> VerifyResult:
    """Check stored entries, `rows` in seq order, as one chain from `anchor` (the seq and
    hash of the last entry the retention prune removed; None when nothing was pruned).

    Finds an entry whose fields no longer match its hash, a missing entry (a gap in seq),
    an entry that does not link to the one before it (replaced or reordered), and an
    anchor that does not lead to the first entry.
    """
    prev_seq, prev_hash = anchor if anchor is not None else (0, ZERO_HASH)
    after = "the retention anchor" if anchor is not None else "the start of the log"
    count = 0
    for row in rows:
        seq = row["seq"]
        if seq != prev_seq + 1:
            if seq <= prev_seq:
                problem = f"entry {seq} comes before {after} (entry {prev_seq})"
            else:
                missing = (
                    f"entry {prev_seq + 1} is"
                    if seq == prev_seq + 2
                    else f"entries {prev_seq + 1} to {seq - 1} are"
                )
                problem = f"{missing} missing before entry {seq}"
            return VerifyResult(False, count, seq, problem)
        if row["prev_hash"] != prev_hash:
            where = after if count == 0 else f"entry {prev_seq}"
            problem = (
                f"entry {seq} does not link to {where}: "
                "an entry (or the anchor) was replaced, changed or reordered"
            )
            return VerifyResult(False, count, seq, problem)
        if recomputed_hash(row) != row["hash"]:
            problem = f"entry {seq} does not match its hash: it was changed"
            return VerifyResult(False, count, seq, problem)
        prev_seq, prev_hash = seq, row["hash"]
        count += 1
    return VerifyResult(ok=True, entries=count)


def since_epoch(since: datetime | None) -> float:
    """`since` in seconds since the epoch (UTC when it has no time zone); minus infinity
    for None, which every entry is at or after."""
    if since is None:
        return float("-inf")
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return since.timestamp()


class AuditTrail(Protocol):
    """Who asked what, when: entries in one hash chain, appended in order, never changed.

    Entry `seq` n+1 follows entry n and carries its hash as `prev_hash`; the first
    carries 64 zeros (after a prune, the anchor's hash). Concurrent `record` calls are
    appended one after another. tests/contract/test_audit_trail.py holds every
    implementation to these promises; `AuditLog` is the one on SQLite.
    """

    def record(
        self,
        *,
        actor: str,
        operation: str,
        status: int,
        collection: str | None = None,
        question: str | None = None,
        chunk_ids: Iterable[str] = (),
        doc_ids: Iterable[str] = (),
        request_id: str | None = None,
    ) -> AuditEntry:
        """Append one entry after the last and return it, its `hash` the `entry_hash` of
        its other fields. `actor` names who asked and must not be a secret."""
        ...

    def prune(self, older_than_days: float, *, actor: str = "system") -> int:
        """Remove the entries older than `older_than_days` (0 keeps all; ValueError when
        negative); returns how many. What stays still verifies, and a prune that removed
        anything is itself appended, as operation `audit.prune` by `actor`."""
        ...

    def verify(self) -> VerifyResult:
        """Check the whole chain; names the first entry that breaks it, if one does."""
        ...

    def export(self, since: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Every entry at or after `since` (all when None; UTC if it has no time zone), in
        seq order, as `AuditEntry.as_json()` dicts, from which each hash recomputes."""
        ...

    def close(self) -> None:
        """Let go of the storage; the object is not used afterwards."""
        ...


class AuditLog:
    """Thread-safe, append-only access to the audit log at `path` (created on first use).

    `clock` gives the time of each entry and the prune cutoff, in seconds since the epoch.
    """

    def __init__(self, path: Path, clock: Callable[[], float] = time.time):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._clock = clock
        self._lock = threading.RLock()
        self._db = self._connect()
        database.open_schema(self._db, path, SCHEMA_VERSION, _SCHEMA)
        database.stamp_schema(self._db, SCHEMA_VERSION)

    def _connect(self) -> sqlite3.Connection:
        return database.connect(self.path)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        # The write lock is taken before the last entry is read, so two writers, in this
        # process or another, never both append after the same entry.
        return database.transaction(self._db, self._lock)

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        # Reading through a connection of its own, inside one read transaction, sees one
        # consistent state of the log (WAL) without holding up `record`.
        db = self._connect()
        try:
            db.execute("PRAGMA query_only=ON")
            db.execute("BEGIN")
            yield db
        finally:
            db.close()

    # -- writing ------------------------------------------------------------

    def record(
        self,
        *,
        actor: str,
        operation: str,
        status: int,
        collection: str | None = None,
        question: str | None = None,
        chunk_ids: Iterable[str] = (),
        doc_ids: Iterable[str] = (),
        request_id: str | None = None,
    ) -> AuditEntry:
        """Append one entry after the last one and return it, hash included.

        `actor` names who asked and must not be a secret. Concurrent calls, from threads
        or from other processes, are appended one after another, never after the same entry.
        """
        with self._transaction() as db:
            return self._append(
                db,
                actor=database.storable(actor),
                operation=database.storable(operation),
                status=status,
                collection=_optional(collection),
                question=_optional(question),
                chunk_ids=tuple(database.storable(i) for i in chunk_ids),
                doc_ids=tuple(database.storable(i) for i in doc_ids),
                request_id=_optional(request_id),
            )

    def _append(
        self,
        db: sqlite3.Connection,
        *,
        actor: str,
        operation: str,
        status: int,
        collection: str | None,
        question: str | None,
        chunk_ids: tuple[str, ...],
        doc_ids: tuple[str, ...],
        request_id: str | None,
    ) -> AuditEntry:
        last_seq, last_hash = self._last(db)
        entry = next_entry(
            last_seq=last_seq,
            last_hash=last_hash,
            at=self._clock(),
            actor=actor,
            operation=operation,
            status=status,
            collection=collection,
            question=question,
            chunk_ids=chunk_ids,
            doc_ids=doc_ids,
            request_id=request_id,
        )
        db.execute(
            f"INSERT INTO entries ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
            row_values(entry),
        )
        return entry

    @staticmethod
    def _last(db: sqlite3.Connection) -> tuple[int, str]:
        """The seq and hash the next entry follows: the last entry, else the anchor, else zeros."""
        row = db.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            row = db.execute("SELECT seq, hash FROM anchor WHERE id = 1").fetchone()
        if row is None:
            return 0, ZERO_HASH
        return int(row["seq"]), str(row["hash"])

    def prune(self, older_than_days: float, *, actor: str = "system") -> int:
        """Remove the entries older than `older_than_days`; return how many were removed.

        0 keeps everything (as `audit_retention_days: 0` means). Only the oldest entries
        go, up to the first one that is not older than the cutoff, so the rest stays one
        unbroken chain, which verifies from the anchor this sets. When anything was removed,
        the prune is itself appended, as operation `audit.prune` by `actor`.
        """
        if older_than_days < 0:
            raise ValueError("older_than_days must be 0 (keep everything) or more")
        if older_than_days == 0:
            return 0
        cutoff = self._clock() - older_than_days * 86400
        with self._transaction() as db:
            # The last entry before the first one that is recent enough to keep.
            row = db.execute(
                "SELECT coalesce((SELECT min(seq) FROM entries WHERE at >= ?) - 1, "
                "(SELECT max(seq) FROM entries)) AS last",
                (cutoff,),
            ).fetchone()
            last = row["last"]
            if last is None:
                return 0
            found = db.execute(
                "SELECT seq, hash, (SELECT count(*) FROM entries WHERE seq <= ?) AS removed "
                "FROM entries WHERE seq = ?",
                (last, last),
            ).fetchone()
            if found is None:  # the oldest entry is recent enough: nothing to remove
                return 0
            db.execute("INSERT INTO pruning (id) VALUES (1)")
            db.execute("DELETE FROM entries WHERE seq <= ?", (last,))
            db.execute(
                "INSERT INTO anchor (id, seq, hash) VALUES (1, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                (found["seq"], found["hash"]),
            )
            db.execute("DELETE FROM pruning")
            self._append(
                db,
                actor=database.storable(actor),
                operation="audit.prune",
                status=200,
                collection=None,
                question=None,
                chunk_ids=(),
                doc_ids=(),
                request_id=None,
            )
            return int(found["removed"])

    # -- reading ------------------------------------------------------------

    def verify(self) -> VerifyResult:
        """Check the whole chain, from the anchor (or 64 zeros) to the last entry.

        Finds an entry whose fields no longer match its hash, a missing entry (a gap in
        seq), an entry that does not link to the one before it (replaced or reordered),
        and an anchor that does not lead to the first entry.
        """
        with self._snapshot() as db:
            return self._verify(db)

    @classmethod
    def verify_file(cls, path: Path) -> VerifyResult:
        """`verify` on the log at `path`, read only: nothing in the file changes (opening
        an `AuditLog` would restore its schema, triggers included). A log that was never
        written reads as intact and empty."""
        if not path.is_file():
            return check_chain(None, iter(()))
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            db.row_factory = sqlite3.Row
            if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'entries'").fetchone() is None:
                return check_chain(None, iter(()))
            db.execute("BEGIN")
            return cls._verify(db)

    @classmethod
    def _verify(cls, db: sqlite3.Connection) -> VerifyResult:
        anchor = db.execute("SELECT seq, hash FROM anchor WHERE id = 1").fetchone()
        start = (anchor["seq"], anchor["hash"]) if anchor else None
        return check_chain(start, cls._rows(db))

    @staticmethod
    def _rows(db: sqlite3.Connection, cutoff: float | None = None) -> Iterator[sqlite3.Row]:
        """The entries (those at or after `cutoff` when given), in seq order, read a page
        at a time."""
        where = "seq > ?" if cutoff is None else "seq > ? AND at >= ?"
        last = -1
        while True:
            after = (last,) if cutoff is None else (last, cutoff)
            rows = db.execute(
                f"SELECT {COLUMNS} FROM entries WHERE {where} ORDER BY seq LIMIT ?",  # noqa: S608
                (*after, PAGE),
            ).fetchall()
            if not rows:
                return
            yield from rows
            last = rows[-1]["seq"]

    def export(self, since: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Every entry at or after `since` (all when None), in seq order, as `as_json()` dicts.

        A `since` without a time zone is UTC. The entries come from one snapshot of the
        log, read a page at a time.
        """
        with self._snapshot() as db:
            for row in self._rows(db, since_epoch(since)):
                yield entry_from_row(row).as_json()
