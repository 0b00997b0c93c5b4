"""The audit log in PostgreSQL (`audit_entries`, `audit_anchor`), one hash chain shared
by every Lore process of a cluster.

Entries, their hashes and the retention anchor are those of the SQLite `AuditLog`
(rag/governance/audit.py), built by the same helpers, so an entry verifies the same way
in either. Appends are serialized across processes: each one first takes a transaction
lock of its own (an advisory lock keyed by the entries table's oid; readers go on), then
reads the last committed entry, so every entry follows the one committed before it and
seq has no gaps. The primary key on seq and a unique `prev_hash` make a fork impossible
even for a writer that skips the lock.

Triggers refuse UPDATE, TRUNCATE and any DELETE except the retention prune's, which
marks its own transaction with the setting `lore.audit_pruning` (see 40_audit.sql).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg

from rag.governance.audit import (
    COLUMNS,
    PAGE,
    ZERO_HASH,
    AuditEntry,
    VerifyResult,
    check_chain,
    entry_from_row,
    next_entry,
    row_values,
    since_epoch,
)
from rag.postgres.database import Database, pg_text

Connection = psycopg.Connection[dict[str, Any]]

# How long an append waits for the one before it, as the SQLite log's busy timeout;
# past it the append fails as DatabaseUnavailable rather than hanging.
_LOCK_TIMEOUT = "30s"


def _optional(text: str | None) -> str | None:
    return None if text is None else pg_text(text)


class PgAuditLog:
    """Append-only access to the cluster's audit log, safe from any thread or process.

    `clock` gives the time of each entry and the prune cutoff, in seconds since the epoch.
    `close()` leaves the shared `Database` open.
    """

    def __init__(self, database: Database, clock: Callable[[], float] = time.time):
        self._db = database
        self._clock = clock

    def close(self) -> None:
        """Nothing to let go of: the shared `Database` belongs to its creator."""

    @contextmanager
    def _appending(self) -> Iterator[Connection]:
        # The lock is taken before the last entry is read, and released only once this
        # transaction's entry is committed; in READ COMMITTED that read then sees the
        # entry the previous holder committed. An advisory lock rather than a table lock,
        # which autovacuum's lock would hold up.
        with self._db.transaction() as conn:
            conn.execute(
                "SET TRANSACTION ISOLATION LEVEL READ COMMITTED;"
                f" SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}';"
                " SELECT pg_advisory_xact_lock('audit_entries'::regclass::oid::bigint)"
            )
            yield conn

    @contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        # One read-only transaction sees one state of the log, however many pages are
        # read, without holding up `record`.
        with self._db.transaction() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield conn

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
        with self._appending() as conn:
            return self._append(
                conn,
                actor=pg_text(actor),
                operation=pg_text(operation),
                status=status,
                collection=_optional(collection),
                question=_optional(question),
                chunk_ids=tuple(pg_text(i) for i in chunk_ids),
                doc_ids=tuple(pg_text(i) for i in doc_ids),
                request_id=_optional(request_id),
            )

    def _append(
        self,
        conn: Connection,
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
        last_seq, last_hash = self._last(conn)
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
        conn.execute(
            f"INSERT INTO audit_entries ({COLUMNS}) "  # noqa: S608
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            row_values(entry),
        )
        return entry

    @staticmethod
    def _last(conn: Connection) -> tuple[int, str]:
        """The seq and hash the next entry follows: the last entry, else the anchor, else zeros."""
        row = conn.execute(
            "SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is None:
            row = conn.execute("SELECT seq, hash FROM audit_anchor WHERE id = 1").fetchone()
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
        with self._appending() as conn:
            # The last entry before the first one that is recent enough to keep.
            row = conn.execute(
                "SELECT coalesce((SELECT min(seq) FROM audit_entries WHERE at >= %s) - 1, "
                "(SELECT max(seq) FROM audit_entries)) AS last",
                (cutoff,),
            ).fetchone()
            last = None if row is None else row["last"]
            if last is None:
                return 0
            found = conn.execute(
                "SELECT seq, hash, (SELECT count(*) FROM audit_entries WHERE seq <= %s) AS removed"
                " FROM audit_entries WHERE seq = %s",
                (last, last),
            ).fetchone()
            if found is None:  # the oldest entry is recent enough: nothing to remove
                return 0
            conn.execute("SELECT set_config('lore.audit_pruning', 'on', true)")
            conn.execute("DELETE FROM audit_entries WHERE seq <= %s", (last,))
            conn.execute(
                "INSERT INTO audit_anchor (id, seq, hash) VALUES (1, %s, %s) "
                "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                (found["seq"], found["hash"]),
            )
            conn.execute("SELECT set_config('lore.audit_pruning', 'off', true)")
            self._append(
                conn,
                actor=pg_text(actor),
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
        with self._snapshot() as conn:
            anchor = conn.execute("SELECT seq, hash FROM audit_anchor WHERE id = 1").fetchone()
            start = (anchor["seq"], anchor["hash"]) if anchor else None
            return check_chain(start, self._rows(conn))

    @staticmethod
    def _rows(conn: Connection, cutoff: float | None = None) -> Iterator[dict[str, Any]]:
        """The entries (those at or after `cutoff` when given), in seq order, read a page
        at a time."""
        where = "seq > %s" if cutoff is None else "seq > %s AND at >= %s"
        last = -1
        while True:
            after = (last,) if cutoff is None else (last, cutoff)
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM audit_entries WHERE {where} ORDER BY seq LIMIT %s",  # noqa: S608
                (*after, PAGE),
            ).fetchall()
            if not rows:
                return
            yield from rows
            last = rows[-1]["seq"]

    def export(self, since: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Every entry at or after `since` (all when None), in seq order, as `as_json()` dicts.

        A `since` without a time zone is UTC. The entries come from one snapshot of the
        log, read a page at a time; the snapshot holds one of the pool's connections
        until the last entry is read or the iterator is closed.
        """
        with self._snapshot() as conn:
            for row in self._rows(conn, since_epoch(since)):
                yield entry_from_row(row).as_json()
