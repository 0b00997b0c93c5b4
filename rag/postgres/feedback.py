"""Ratings of answers in PostgreSQL (`feedback_ratings`), shared by every Lore process
of a cluster.

The same records as the SQLite `FeedbackStore` (rag/governance/feedback.py), answers'
text included, so this table is as confidential as the documents. Ratings are exported
in the order they were stored (`seq`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from rag.governance.feedback import FeedbackRecord, Rating, new_record, since_epoch
from rag.postgres.database import Database, pg_text

_COLUMNS = "id, at, actor, collection, question, answer, chunk_ids, rating, comment, request_id"
_PAGE = 1000


def _record(row: dict[str, Any]) -> FeedbackRecord:
    return FeedbackRecord(
        id=row["id"],
        at=row["at"],
        actor=row["actor"],
        collection=row["collection"],
        question=row["question"],
        answer=row["answer"],
        chunk_ids=tuple(row["chunk_ids"]),
        rating=row["rating"],
        comment=row["comment"],
        request_id=row["request_id"],
    )


class PgFeedbackStore:
    """The cluster's ratings, safe from any thread or process.

    `clock` gives the time of each rating, in seconds since the epoch. `close()` leaves
    the shared `Database` open.
    """

    def __init__(self, database: Database, clock: Callable[[], float] = time.time):
        self._db = database
        self._clock = clock

    def close(self) -> None:
        """Nothing to let go of: the shared `Database` belongs to its creator."""

    def add(
        self,
        *,
        actor: str,
        collection: str,
        question: str,
        answer: str,
        chunk_ids: Iterable[str],
        rating: Rating,
        comment: str | None = None,
        request_id: str | None = None,
    ) -> FeedbackRecord:
        """Store one rating and return it, with its new id and time.

        `actor` names who rated and must not be a secret. `rating` is "up" or "down"
        (ValueError otherwise).
        """
        record = new_record(
            clock=self._clock,
            actor=actor,
            collection=collection,
            question=question,
            answer=answer,
            chunk_ids=chunk_ids,
            rating=rating,
            comment=comment,
            request_id=request_id,
            storable=pg_text,
        )
        with self._db.connection() as conn:
            conn.execute(
                f"INSERT INTO feedback_ratings ({_COLUMNS}) "  # noqa: S608
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    record.id,
                    record.at,
                    record.actor,
                    record.collection,
                    record.question,
                    record.answer,
                    list(record.chunk_ids),
                    record.rating,
                    record.comment,
                    record.request_id,
                ),
            )
        return record

    def export(self, since: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Every rating given at or after `since` (all when None), oldest first, as
        `as_json()` dicts. A `since` without a time zone is UTC. Read a page at a time,
        each page a query of its own: no connection is held between pages."""
        cutoff = since_epoch(since)
        last = -1
        while True:
            with self._db.connection() as conn:
                rows = conn.execute(
                    f"SELECT seq, {_COLUMNS} FROM feedback_ratings "  # noqa: S608
                    "WHERE seq > %s AND at >= %s ORDER BY seq LIMIT %s",
                    (last, cutoff, _PAGE),
                ).fetchall()
            if not rows:
                return
            for row in rows:
                yield _record(row).as_json()
            last = rows[-1]["seq"]

    def recent(
        self, limit: int, *, rating: Rating | None = None, collection: str | None = None
    ) -> list[FeedbackRecord]:
        """The `limit` ratings given last, newest first; only those with `rating` and of
        `collection` when given."""
        with self._db.connection() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM feedback_ratings "  # noqa: S608
                "WHERE (%(rating)s::text IS NULL OR rating = %(rating)s) "
                "AND (%(collection)s::text IS NULL OR collection = %(collection)s) "
                "ORDER BY seq DESC LIMIT %(limit)s",
                {"rating": rating, "collection": collection, "limit": limit},
            ).fetchall()
        return [_record(row) for row in rows]
