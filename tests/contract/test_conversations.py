"""The `ConversationStore` contract (rag/governance/conversations.py), run against every
implementation.

A new store passes by subclassing `ConversationStoreContract` and giving the
`conversations` fixture, which reads the time from the suite's `clock`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rag.errors import InvalidInput, NotFound
from rag.governance.conversations import (
    MAX_TITLE,
    MAX_TURN_JSON_BYTES,
    TITLE_FROM_QUESTION,
    ConversationStore,
    SqliteConversationStore,
)
from rag.postgres.conversations import PgConversationStore
from rag.postgres.database import Database
from rag.postgres.migrate import _copy_conversations

pytestmark = pytest.mark.contract

START = datetime(2026, 1, 1, tzinfo=UTC)
DAY = 86400.0
ALICE, BOB = "ab12cd", "ef34gh"
FILTERS = {"source": ["reports/*.pdf"], "type": ["pdf"], "since": "2024-01-01", "until": None}
CITATION = {
    "number": 1,
    "chunk_id": "d1-00000",
    "doc_id": "d1",
    "source": "长城.txt",
    "title": "长城",
    "page": None,
    "text": "长城的总长度超过两万公里。",
    "score": 0.82,
    "heading": "",
    "span": [0, 13],
    "holds_answer": True,
    "flagged": False,
    "path": None,
}


class Clock:
    """A clock the test moves by hand, in seconds since the epoch."""

    def __init__(self) -> None:
        self.now = START.timestamp()

    def __call__(self) -> float:
        return self.now


def ask(conversations: ConversationStore, owner: str, conversation_id: str, question: str) -> None:
    conversations.add_turn(
        owner, conversation_id, question=question, answer=f"An answer to {question}"
    )


class ConversationStoreContract:
    """What every `ConversationStore` promises. `conversations` gives an empty one on `clock`."""

    @pytest.fixture
    def clock(self) -> Clock:
        return Clock()

    @pytest.fixture
    def conversations(self, clock: Clock) -> ConversationStore:
        raise NotImplementedError("a subclass gives the conversation store to test")

    @pytest.fixture
    def stored_turns(self) -> Callable[[], int]:
        """How many turns the storage holds, whoever owns them."""
        raise NotImplementedError("a subclass counts the rows of its turn table")

    def test_a_new_store_lists_nothing(self, conversations: ConversationStore) -> None:
        assert conversations.list(ALICE) == []

    def test_a_conversation_comes_back_as_created(
        self, conversations: ConversationStore, clock: Clock
    ) -> None:
        made = conversations.create(ALICE, collection="alpha", title="Ports", filters=FILTERS)
        assert len(made.id) == 32
        assert int(made.id, 16) >= 0  # uuid hex
        assert (made.owner, made.title, made.collection) == (ALICE, "Ports", "alpha")
        assert made.filters == FILTERS
        assert made.created_at == made.updated_at == clock.now
        assert (made.turn_count, made.turns) == (0, ())
        assert conversations.get(ALICE, made.id) == made
        assert conversations.list(ALICE) == [made]

    def test_turns_come_back_in_order_with_their_citations(
        self, conversations: ConversationStore, clock: Clock
    ) -> None:
        made = conversations.create(ALICE, collection="alpha")
        clock.now += 60
        first = conversations.add_turn(
            ALICE,
            made.id,
            question="长城有多长？",
            answer="两万多公里 [1]。",
            query="长城的长度",
            declined=False,
            citations=[CITATION],
            sources=[CITATION, {**CITATION, "number": 2, "holds_answer": False}],
        )
        clock.now += 60
        second = conversations.add_turn(
            ALICE, made.id, question="And the Forbidden City?", answer="", declined=True
        )
        assert first.at == START.timestamp() + 60
        found = conversations.get(ALICE, made.id)
        assert found.turns == (first, second)
        assert found.turn_count == 2
        assert found.turns[0].citations == (CITATION,)
        assert found.turns[0].sources[1]["holds_answer"] is False
        assert found.turns[0].as_json()["citations"] == [CITATION]
        assert (found.turns[1].query, found.turns[1].declined) == (None, True)
        assert found.updated_at == clock.now
        assert found.created_at == START.timestamp()

    def test_the_first_question_titles_an_untitled_conversation(
        self, conversations: ConversationStore
    ) -> None:
        untitled = conversations.create(ALICE, collection="alpha")
        long_question = "  Which port   does the Lore server\nlisten on " + "and why " * 20
        ask(conversations, ALICE, untitled.id, long_question)
        ask(conversations, ALICE, untitled.id, "A second question")
        title = conversations.get(ALICE, untitled.id).title
        assert len(title) <= TITLE_FROM_QUESTION
        assert title.startswith("Which port does the Lore server listen on and why")
        assert title.endswith("…")
        short = conversations.create(ALICE, collection="alpha")
        ask(conversations, ALICE, short.id, "长城有多长？")
        assert conversations.get(ALICE, short.id).title == "长城有多长？"
        named = conversations.create(ALICE, collection="alpha", title="Mine")
        ask(conversations, ALICE, named.id, "Which port?")
        assert conversations.get(ALICE, named.id).title == "Mine"

    def test_another_owner_sees_nothing_and_changes_nothing(
        self, conversations: ConversationStore
    ) -> None:
        made = conversations.create(ALICE, collection="alpha", title="Alice's")
        ask(conversations, ALICE, made.id, "Which port?")
        assert conversations.list(BOB) == []
        message = f"Conversation '{made.id}' does not exist."
        attempts: list[Any] = [
            lambda: conversations.get(BOB, made.id),
            lambda: conversations.update(BOB, made.id, title="Bob's"),
            lambda: ask(conversations, BOB, made.id, "Mine now?"),
            lambda: conversations.delete(BOB, made.id),
        ]
        for attempt in attempts:
            with pytest.raises(NotFound) as refused:
                attempt()
            assert str(refused.value) == message
        kept = conversations.get(ALICE, made.id)
        assert (kept.title, kept.turn_count) == ("Alice's", 1)

    def test_a_missing_conversation_is_not_found(self, conversations: ConversationStore) -> None:
        with pytest.raises(NotFound, match=r"Conversation 'nope' does not exist\."):
            conversations.get(ALICE, "nope")
        with pytest.raises(NotFound):
            conversations.delete(ALICE, "nope")

    def test_listing_is_newest_update_first_without_turns(
        self, conversations: ConversationStore, clock: Clock
    ) -> None:
        first = conversations.create(ALICE, collection="alpha", title="first")
        clock.now += 1
        second = conversations.create(ALICE, collection="alpha", title="second")
        clock.now += 1
        third = conversations.create(ALICE, collection="alpha", title="third")
        conversations.create(BOB, collection="beta", title="Bob's")
        assert [c.id for c in conversations.list(ALICE)] == [third.id, second.id, first.id]
        clock.now += 1
        ask(conversations, ALICE, first.id, "Which port?")
        ask(conversations, ALICE, first.id, "And why?")
        listed = conversations.list(ALICE)
        assert [c.title for c in listed] == ["first", "third", "second"]
        assert [c.turn_count for c in listed] == [2, 0, 0]
        assert listed[0].turns == ()
        clock.now += 1
        conversations.update(ALICE, second.id, title="renamed")
        assert [c.title for c in conversations.list(ALICE)] == ["renamed", "first", "third"]

    def test_conversations_updated_at_once_list_the_latest_made_first(
        self, conversations: ConversationStore
    ) -> None:
        made = [conversations.create(ALICE, collection="alpha") for _ in range(3)]
        assert [c.id for c in conversations.list(ALICE)] == [c.id for c in reversed(made)]

    def test_update_changes_only_what_is_given(
        self, conversations: ConversationStore, clock: Clock
    ) -> None:
        made = conversations.create(ALICE, collection="alpha", title="Ports", filters=FILTERS)
        ask(conversations, ALICE, made.id, "Which port?")
        clock.now += 5
        renamed = conversations.update(ALICE, made.id, title="港口")
        assert (renamed.title, renamed.collection, renamed.filters) == ("港口", "alpha", FILTERS)
        assert renamed.updated_at == clock.now
        assert renamed.turn_count == len(renamed.turns) == 1
        narrowed = {"source": ["财务/*.pdf"], "type": [], "since": None, "until": "2025-12-31"}
        moved = conversations.update(ALICE, made.id, collection="beta", filters=narrowed)
        assert (moved.title, moved.collection, moved.filters) == ("港口", "beta", narrowed)
        cleared = conversations.update(ALICE, made.id, title="", filters={})
        assert (cleared.title, cleared.filters) == ("", {})
        assert conversations.get(ALICE, made.id) == cleared

    def test_delete_removes_the_conversation_and_its_turns(
        self, conversations: ConversationStore, stored_turns: Callable[[], int]
    ) -> None:
        made = conversations.create(ALICE, collection="alpha", title="gone")
        ask(conversations, ALICE, made.id, "Which port?")
        kept = conversations.create(ALICE, collection="alpha", title="kept")
        ask(conversations, ALICE, kept.id, "Which port?")
        removed = conversations.delete(ALICE, made.id)
        assert (removed.id, removed.title, removed.collection) == (made.id, "gone", "alpha")
        assert removed.turn_count == 1
        with pytest.raises(NotFound):
            conversations.get(ALICE, made.id)
        with pytest.raises(NotFound):
            ask(conversations, ALICE, made.id, "Still there?")
        assert [c.id for c in conversations.list(ALICE)] == [kept.id]
        assert conversations.get(ALICE, kept.id).turn_count == 1
        assert stored_turns() == 1

    def test_prune_removes_what_was_not_updated_for_that_long(
        self, conversations: ConversationStore, clock: Clock, stored_turns: Callable[[], int]
    ) -> None:
        old = conversations.create(ALICE, collection="alpha", title="old")
        ask(conversations, ALICE, old.id, "Which port?")
        revived = conversations.create(BOB, collection="beta", title="revived")
        clock.now += 50 * DAY
        recent = conversations.create(ALICE, collection="alpha", title="recent")
        ask(conversations, BOB, revived.id, "Still here?")
        clock.now += 50 * DAY
        assert conversations.prune(0) == 0  # 0 keeps everything
        assert len(conversations.list(ALICE)) == 2
        assert conversations.prune(90) == 1
        assert stored_turns() == 1  # Bob's
        assert [c.id for c in conversations.list(ALICE)] == [recent.id]
        assert [c.id for c in conversations.list(BOB)] == [revived.id]
        with pytest.raises(NotFound):
            conversations.get(ALICE, old.id)
        assert conversations.prune(90) == 0
        with pytest.raises(ValueError, match="older_than_days"):
            conversations.prune(-1)

    def test_text_comes_back_as_given_or_as_storable(
        self, conversations: ConversationStore
    ) -> None:
        made = conversations.create(ALICE, collection="alpha", title='长城 🧱 «quotes» "and" \'')
        turn = conversations.add_turn(
            ALICE,
            made.id,
            question="故宫位于哪里？",
            answer="北京 [1]。\n\nنعم",
            citations=[{**CITATION, "text": "bad \ud800 surrogate"}],
        )
        found = conversations.get(ALICE, made.id)
        assert found.title == '长城 🧱 «quotes» "and" \''
        assert found.turns == (turn,)
        assert found.turns[0].answer == "北京 [1]。\n\nنعم"
        assert found.turns[0].citations[0]["text"] == "bad ? surrogate"

    def test_an_over_long_title_or_citations_are_refused(
        self, conversations: ConversationStore
    ) -> None:
        with pytest.raises(InvalidInput, match="title"):
            conversations.create(ALICE, collection="alpha", title="x" * (MAX_TITLE + 1))
        made = conversations.create(ALICE, collection="alpha", title="x" * MAX_TITLE)
        with pytest.raises(InvalidInput, match="title"):
            conversations.update(ALICE, made.id, title="x" * (MAX_TITLE + 1))
        huge = [{"text": "x" * 100_000} for _ in range(MAX_TURN_JSON_BYTES // 100_000 + 1)]
        with pytest.raises(InvalidInput, match="limit"):
            conversations.add_turn(ALICE, made.id, question="q", answer="a", citations=huge)
        with pytest.raises(InvalidInput, match="JSON"):
            conversations.add_turn(
                ALICE, made.id, question="q", answer="a", citations=[{"score": float("nan")}]
            )
        kept = conversations.get(ALICE, made.id)
        assert (kept.title, kept.turn_count) == ("x" * MAX_TITLE, 0)


@pytest.mark.unit
class TestSqliteConversationStore(ConversationStoreContract):
    @pytest.fixture
    def conversations(self, tmp_path: Path, clock: Clock) -> Iterator[ConversationStore]:
        store = SqliteConversationStore(tmp_path / "conversations.sqlite3", clock=clock)
        yield store
        store.close()

    @pytest.fixture
    def stored_turns(self, tmp_path: Path) -> Callable[[], int]:
        def count() -> int:
            with closing(sqlite3.connect(tmp_path / "conversations.sqlite3")) as db:
                return int(db.execute("SELECT count(*) FROM conversation_turns").fetchone()[0])

        return count

    def test_conversations_outlive_the_store_object(self, tmp_path: Path, clock: Clock) -> None:
        path = tmp_path / "conversations.sqlite3"
        store = SqliteConversationStore(path, clock=clock)
        made = store.create(ALICE, collection="alpha", title="kept")
        ask(store, ALICE, made.id, "Which port?")
        store.close()
        reopened = SqliteConversationStore(path, clock=clock)
        try:
            assert reopened.get(ALICE, made.id).turn_count == 1
            reopened.delete(ALICE, made.id)
        finally:
            reopened.close()


@pytest.mark.cluster
class TestPgConversationStore(ConversationStoreContract):
    @pytest.fixture
    def database(self, database_url: str) -> Iterator[Database]:
        database = Database(database_url)
        yield database
        database.close()

    @pytest.fixture
    def conversations(self, database: Database, clock: Clock) -> ConversationStore:
        return PgConversationStore(database, clock=clock)

    @pytest.fixture
    def stored_turns(self, database: Database) -> Callable[[], int]:
        def count() -> int:
            with database.connection() as conn:
                row = conn.execute("SELECT count(*) AS n FROM conversation_turns").fetchone()
            return int(row["n"]) if row else 0

        return count


@pytest.mark.cluster
def test_lore_migrate_moves_conversations_with_their_turns_once(
    tmp_path: Path, database_url: str
) -> None:
    path = tmp_path / "conversations.sqlite3"
    embedded = SqliteConversationStore(path, clock=Clock())
    made = embedded.create(ALICE, collection="alpha", title="长城", filters=FILTERS)
    embedded.add_turn(ALICE, made.id, question="长城有多长？", answer="两万多公里 [1]。")
    embedded.add_turn(
        ALICE,
        made.id,
        question="And the NUL?",
        answer="",
        declined=True,
        citations=[{**CITATION, "text": "a NUL \x00 here"}],
    )
    untouched = embedded.create(BOB, collection="beta")
    before = embedded.get(ALICE, made.id)
    embedded.close()
    database = Database(database_url)
    try:
        assert _copy_conversations(path, database) == 2
        assert _copy_conversations(path, database) == 2  # run again: nothing copied twice
        cluster = PgConversationStore(database)
        moved = cluster.get(ALICE, made.id)
        assert moved.turns[1].citations[0]["text"] == "a NUL ? here"  # PostgreSQL holds no NUL
        expected_turn = replace(before.turns[1], citations=moved.turns[1].citations)
        assert moved == replace(before, turns=(before.turns[0], expected_turn))
        assert cluster.list(BOB) == [untouched]
    finally:
        database.close()
