"""Ratings of answers: what was asked, what Lore answered from which chunks, and whether
it helped.

A SQLite database beside the index (`<data_dir>/feedback.sqlite3`), one row per rating,
kept until someone removes the file. Unlike the audit log it holds the answer's text,
so exports of it are as confidential as the documents. The actor is a name such as
`key:ab12cd`, never a secret.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from rag.components import database

Rating = Literal["up", "down"]

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    at          REAL NOT NULL,
    actor       TEXT NOT NULL,
    collection  TEXT NOT NULL,
    question    TEXT NOT NULL,
    answer      TEXT NOT NULL,
    chunk_ids   TEXT NOT NULL,
    rating      TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    comment     TEXT,
    request_id  TEXT
);
"""

_COLUMNS = "id, at, actor, collection, question, answer, chunk_ids, rating, comment, request_id"
_PAGE = 1000


@dataclass(frozen=True)
class FeedbackRecord:
    """One rating of one answer. `at` is seconds since the epoch, UTC."""

    id: str
    at: float
    actor: str
    collection: str
    question: str
    answer: str
    chunk_ids: tuple[str, ...]
    rating: Rating
    comment: str | None
    request_id: str | None

    def as_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict: `at` as an ISO 8601 UTC time, `at_epoch` as stored."""
        moment = datetime.fromtimestamp(self.at, UTC).isoformat(timespec="microseconds")
        return {
            "id": self.id,
            "at": moment.replace("+00:00", "Z"),
            "at_epoch": self.at,
            "actor": self.actor,
            "collection": self.collection,
            "question": self.question,
            "answer": self.answer,
            "chunk_ids": list(self.chunk_ids),
            "rating": self.rating,
            "comment": self.comment,
            "request_id": self.request_id,
        }


def _record(row: sqlite3.Row) -> FeedbackRecord:
    return FeedbackRecord(
        id=row["id"],
        at=row["at"],
        actor=row["actor"],
        collection=row["collection"],
        question=row["question"],
        answer=row["answer"],
        chunk_ids=tuple(json.loads(row["chunk_ids"])),
        rating=row["rating"],
        comment=row["comment"],
        request_id=row["request_id"],
    )


def new_record(
    *,
    clock: Callable[[], float],
    actor: str,
    collection: str,
    question: str,
    answer: str,
    chunk_ids: Iterable[str],
    rating: Rating,
    comment: str | None,
    request_id: str | None,
    storable: Callable[[str], str] = database.storable,
) -> FeedbackRecord:
    """A new rating, with an id of its own, the time `clock` reads, and every text made
    `storable` (by default, as SQLite can store it). ValueError for a rating other than
    "up" or "down", before the clock is read."""
    if rating not in ("up", "down"):
        raise ValueError(f"a rating is 'up' or 'down', not {rating!r}")
    return FeedbackRecord(
        id=uuid.uuid4().hex,
        at=clock(),
        actor=storable(actor),
        collection=storable(collection),
        question=storable(question),
        answer=storable(answer),
        chunk_ids=tuple(storable(i) for i in chunk_ids),
        rating=rating,
        comment=None if comment is None else storable(comment),
        request_id=None if request_id is None else storable(request_id),
    )


def since_epoch(since: datetime | None) -> float:
    """`since` in seconds since the epoch (UTC when it has no time zone); minus infinity
    for None, which every rating is at or after."""
    if since is None:
        return float("-inf")
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return since.timestamp()


class FeedbackLog(Protocol):
    """Ratings of answers, kept in the order they were given.

    tests/contract/test_feedback_log.py holds every implementation to these promises;
    `FeedbackStore` is the one on SQLite.
    """

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
        """Store one rating and return it, with an id of its own and the time it was given.
        `actor` must not be a secret. ValueError for a rating other than "up" or "down"."""
        ...

    def export(self, since: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Every rating given at or after `since` (all when None; UTC if it has no time
        zone), oldest first, as `FeedbackRecord.as_json()` dicts."""
        ...

    def recent(
        self, limit: int, *, rating: Rating | None = None, collection: str | None = None
    ) -> list[FeedbackRecord]:
        """The `limit` ratings given last, newest first; only those with `rating` and of
        `collection` when given."""
        ...

    def close(self) -> None:
        """Let go of the storage; the object is not used afterwards."""
        ...


class FeedbackStore:
    """Thread-safe access to the ratings at `path` (created on first use).

    `clock` gives the time of each rating, in seconds since the epoch.
    """

    def __init__(self, path: Path, clock: Callable[[], float] = time.time):
        self.path = path
        self._clock = clock
        self._lock = threading.RLock()
        self._db = database.connect(path)
        database.open_schema(self._db, path, SCHEMA_VERSION, _SCHEMA)
        database.stamp_schema(self._db, SCHEMA_VERSION)

    def close(self) -> None:
        with self._lock:
            self._db.close()

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
        )
        with database.transaction(self._db, self._lock) as db:
            db.execute(
                f"INSERT INTO feedback ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                (
                    record.id,
                    record.at,
                    record.actor,
                    record.collection,
                    record.question,
                    record.answer,
                    json.dumps(list(record.chunk_ids), ensure_ascii=False),
                    record.rating,
                    record.comment,
                    record.request_id,
                ),
            )
        return record

    def export(self, since: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Every rating given at or after `since` (all when None), oldest first, as
        `as_json()` dicts. A `since` without a time zone is UTC. Read a page at a time."""
        cutoff = since_epoch(since)
        last = -1
        while True:
            with self._lock:
                rows = self._db.execute(
                    f"SELECT seq, {_COLUMNS} FROM feedback WHERE seq > ? AND at >= ? "  # noqa: S608
                    "ORDER BY seq LIMIT ?",
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
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM feedback "  # noqa: S608
                "WHERE (:rating IS NULL OR rating = :rating) "
                "AND (:collection IS NULL OR collection = :collection) "
                "ORDER BY seq DESC LIMIT :limit",
                {"rating": rating, "collection": collection, "limit": limit},
            ).fetchall()
        return [_record(row) for row in rows]
