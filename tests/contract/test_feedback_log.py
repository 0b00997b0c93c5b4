"""The `FeedbackLog` contract (rag/governance/feedback.py), run against every implementation.

A new feedback log passes by subclassing `FeedbackLogContract` and giving the
`feedback` fixture, which reads the time from the suite's `clock`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rag.governance.feedback import FeedbackLog, FeedbackStore, Rating
from rag.postgres.database import Database
from rag.postgres.feedback import PgFeedbackStore

pytestmark = pytest.mark.contract

START = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand, in seconds since the epoch."""

    def __init__(self) -> None:
        self.now = START.timestamp()

    def __call__(self) -> float:
        return self.now


def rate(
    feedback: FeedbackLog, question: str, rating: Rating = "up", collection: str = "alpha"
) -> None:
    feedback.add(
        actor="key:ab12cd",
        collection=collection,
        question=question,
        answer=f"An answer to {question}",
        chunk_ids=["d1-00001", "d1-00000"],
        rating=rating,
    )


class FeedbackLogContract:
    """What every `FeedbackLog` promises. `feedback` gives an empty one on `clock`."""

    @pytest.fixture
    def clock(self) -> Clock:
        return Clock()

    @pytest.fixture
    def feedback(self, clock: Clock) -> FeedbackLog:
        raise NotImplementedError("a subclass gives the feedback log to test")

    def test_an_empty_log_exports_nothing(self, feedback: FeedbackLog) -> None:
        assert list(feedback.export()) == []

    def test_a_rating_comes_back_as_given(self, feedback: FeedbackLog, clock: Clock) -> None:
        record = feedback.add(
            actor="key:ab12cd",
            collection="alpha",
            question="长城有多长？",
            answer="两万多公里 [1]。",
            chunk_ids=["d1-00001", "d1-00000"],
            rating="down",
            comment="too short",
            request_id="req-1",
        )
        assert record.at == clock.now
        [exported] = feedback.export()
        assert exported == record.as_json()
        assert exported["chunk_ids"] == ["d1-00001", "d1-00000"]
        assert exported["at"] == "2026-01-01T00:00:00.000000Z"

    def test_each_rating_gets_an_id_of_its_own(self, feedback: FeedbackLog) -> None:
        rate(feedback, "one")
        rate(feedback, "one")
        assert len({r["id"] for r in feedback.export()}) == 2

    def test_ratings_export_oldest_first_from_since(
        self, feedback: FeedbackLog, clock: Clock
    ) -> None:
        for question in ("first", "second", "third"):
            rate(feedback, question)
            clock.now += 3600
        assert [r["question"] for r in feedback.export()] == ["first", "second", "third"]
        since = datetime(2026, 1, 1, 1)  # no time zone: UTC
        assert [r["question"] for r in feedback.export(since)] == ["second", "third"]

    def test_recent_ratings_come_newest_first_up_to_the_limit(
        self, feedback: FeedbackLog, clock: Clock
    ) -> None:
        assert feedback.recent(10) == []
        for question in ("first", "second", "third"):
            rate(feedback, question)
            clock.now += 1
        assert [r.question for r in feedback.recent(10)] == ["third", "second", "first"]
        assert [r.question for r in feedback.recent(2)] == ["third", "second"]
        [newest] = feedback.recent(1)
        assert newest.as_json() == list(feedback.export())[-1]

    def test_recent_ratings_keep_to_the_rating_and_collection_asked_for(
        self, feedback: FeedbackLog
    ) -> None:
        rate(feedback, "alpha up")
        rate(feedback, "alpha down", "down")
        rate(feedback, "beta down", "down", collection="beta")
        assert [r.question for r in feedback.recent(10, rating="down")] == [
            "beta down",
            "alpha down",
        ]
        assert [r.question for r in feedback.recent(10, collection="alpha")] == [
            "alpha down",
            "alpha up",
        ]
        found = feedback.recent(10, rating="down", collection="alpha")
        assert [r.question for r in found] == ["alpha down"]
        assert feedback.recent(10, rating="up", collection="beta") == []

    def test_a_rating_other_than_up_or_down_is_refused(self, feedback: FeedbackLog) -> None:
        with pytest.raises(ValueError, match="rating"):
            rate(feedback, "one", "sideways")  # type: ignore[arg-type]
        assert list(feedback.export()) == []


@pytest.mark.unit
class TestSqliteFeedbackStore(FeedbackLogContract):
    @pytest.fixture
    def feedback(self, tmp_path: Path, clock: Clock) -> Iterator[FeedbackLog]:
        store = FeedbackStore(tmp_path / "feedback.sqlite3", clock=clock)
        yield store
        store.close()


@pytest.mark.cluster
class TestPgFeedbackStore(FeedbackLogContract):
    @pytest.fixture
    def feedback(self, database_url: str, clock: Clock) -> Iterator[FeedbackLog]:
        database = Database(database_url)
        yield PgFeedbackStore(database, clock=clock)
        database.close()
