"""Claims on documents in cluster mode: PostgreSQL session-level advisory locks.

Each batch opens a connection of its own (not the pool's: a session lock would outlive
the batch on a pooled connection), and holds on it a shared lock on its collection plus
one lock per file it is indexing, keyed on (collection, source). Closing the connection
lets go of all of them, and so does PostgreSQL when the process dies (kill -9 included),
so a claim never outlives its holder.

The collection lock tells a batch whether it is alone: it first tries the exclusive
lock; holding it, the batch is `sole`, and keeps every other batch out until its first
claim, which trades it for the shared lock the others hold. So the crash clean-up that a
sole batch runs first never meets a document that another batch is writing.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, LiteralString

import psycopg

from rag.components.claims import BatchClaims
from rag.postgres.database import Database


def lock_key(*parts: str) -> int:
    """The advisory lock key (a signed 64-bit integer) of a thing named by `parts`.

    Two names sharing a key (odds of 2**-64 a pair) only make one batch wait for the other.
    """
    digest = hashlib.sha256("\0".join(("lore", *parts)).encode("utf-8", "replace")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# A claim lasts as long as its session. A process that is killed closes its connection
# and the server lets go at once; a machine that is lost (power, network) sends nothing,
# and by default the server would notice after hours of TCP silence. These make it
# notice within about half a minute, so its claims pass to the batch that retries.
_NOTICE_LOSS = (
    "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3 "
    "-c tcp_user_timeout=30000"
)


class _SessionClaims:
    """One batch's claims, on its own connection."""

    def __init__(self, conn: psycopg.Connection[Any], database: Database, collection: str):
        self._conn = conn
        self._db = database
        self._collection = collection
        self._collection_key = lock_key("collection", collection)
        self._held: set[str] = set()
        self.sole = self._query("SELECT pg_try_advisory_lock(%s)", self._collection_key)
        self._exclusive = self.sole
        if not self.sole:
            self._query("SELECT pg_advisory_lock_shared(%s) IS NULL", self._collection_key)

    def _query(self, sql: LiteralString, key: int) -> bool:
        try:
            row = self._conn.execute(sql, (key,)).fetchone()
        except psycopg.Error as exc:
            raise self._db.unavailable(exc) from exc
        return bool(row and row[0])

    def _share(self) -> None:
        """Trade the exclusive collection lock for the shared one: others may write now."""
        if self._exclusive:
            self._query("SELECT pg_advisory_lock_shared(%s) IS NULL", self._collection_key)
            self._query("SELECT pg_advisory_unlock(%s)", self._collection_key)
            self._exclusive = False

    def claim(self, source: str) -> bool:
        self._share()
        if source in self._held:
            return True
        if not self._query(
            "SELECT pg_try_advisory_lock(%s)", lock_key("document", self._collection, source)
        ):
            return False
        self._held.add(source)
        return True

    def release(self, source: str) -> None:
        if source in self._held:
            self._held.discard(source)
            self._query(
                "SELECT pg_advisory_unlock(%s)", lock_key("document", self._collection, source)
            )


class PgDocumentClaims:
    """`DocumentClaims` shared by every Lore process on one PostgreSQL database."""

    def __init__(self, database: Database):
        self._db = database

    @contextmanager
    def batch(self, collection: str) -> Iterator[BatchClaims]:
        """One batch's claims into `collection`, on a connection of its own that is closed
        (letting go of every claim) when the block ends. DatabaseUnavailable when the
        server cannot be reached."""
        try:
            conn = psycopg.connect(
                self._db.url, autocommit=True, connect_timeout=10, options=_NOTICE_LOSS
            )
        except psycopg.Error as exc:
            raise self._db.unavailable(exc) from exc
        try:
            yield _SessionClaims(conn, self._db, collection)
        finally:
            # Let go now: a closed connection's locks go only once its server process has
            # ended, a moment later.
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock_all()")
            conn.close()
