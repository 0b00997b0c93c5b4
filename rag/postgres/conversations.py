"""Saved conversations in PostgreSQL (`conversations`, `conversation_turns`), shared by
every Lore process of a cluster.

The same records and SQL as the SQLite store (rag/governance/conversations.py), answers'
text and cited passages included, so these tables are as confidential as the documents.
Filters, citations and sources are `jsonb`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from rag.governance.conversations import ConversationTables, Cursor, Session
from rag.postgres.database import Database, pg_text


class _Marked:
    """A connection that takes SQLite's "?" parameter marks (the shared SQL has no
    other "?")."""

    def __init__(self, conn: psycopg.Connection[dict[str, Any]]):
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any], /) -> Cursor:
        return self._conn.execute(sql.replace("?", "%s"), params)


class PgConversationStore(ConversationTables):
    """The cluster's saved conversations, safe from any thread or process. `clock` as for
    `ConversationTables`; `close()` leaves the shared `Database` open."""

    def __init__(self, database: Database, clock: Callable[[], float] = time.time):
        super().__init__(clock, pg_text)
        self._db = database

    def close(self) -> None:
        """Nothing to let go of: the shared `Database` belongs to its creator."""

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._db.transaction() as conn:
            yield _Marked(conn)

    def _to_json(self, value: Any) -> Any:
        return Jsonb(value)

    def _from_json(self, value: Any) -> Any:
        return value  # psycopg reads jsonb as Python values
