"""The `KeywordStore` contract (rag/components/keyword.py), run against every implementation.

A new keyword store passes by subclassing `KeywordStoreContract` and giving the
`keywords` fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.components.keyword import KeywordIndex, KeywordStore
from rag.postgres.database import Database
from rag.postgres.keywords import PgKeywordIndex
from rag.types import Chunk

pytestmark = pytest.mark.contract


def chunk(doc_id: str, index: int, text: str) -> Chunk:
    return Chunk(
        id=f"{doc_id}-{index:05d}",
        doc_id=doc_id,
        text=text,
        source=f"/docs/{doc_id}.md",
        title=doc_id,
        chunk_index=index,
        content_hash=f"sha-{doc_id}",
    )


PORT = chunk("d1", 0, "The Lore server listens on port 8000 by default.")
BACKUP = chunk("d1", 1, "To back up the Lore server, copy the data directory.")
WALL = chunk("d2", 0, "长城是中国古代的军事防御工程。")
FILLER = [chunk("d3", i, f"The Lore server note number {i}.") for i in range(6)]


class KeywordStoreContract:
    """What every `KeywordStore` promises. `keywords` gives an empty one."""

    @pytest.fixture
    def keywords(self) -> KeywordStore:
        raise NotImplementedError("a subclass gives the keyword store to test")

    @pytest.fixture
    def filled(self, keywords: KeywordStore) -> KeywordStore:
        keywords.add("alpha", [PORT, BACKUP, WALL, *FILLER])
        return keywords

    def test_a_missing_collection_reads_as_empty(self, keywords: KeywordStore) -> None:
        assert keywords.search("missing", "port", 5) == []
        assert keywords.chunk_counts("missing") == {}
        keywords.delete_document("missing", "d1")
        keywords.drop_collection("missing")

    def test_search_finds_the_chunk_with_the_rare_word_first(self, filled: KeywordStore) -> None:
        hits = filled.search("alpha", "Which port does the server use?", 3)
        assert hits[0].chunk_id == PORT.id
        assert hits[0].doc_id == "d1"
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert filled.search("alpha", "长城有多长", 3)[0].chunk_id == WALL.id

    def test_search_returns_at_most_k(self, filled: KeywordStore) -> None:
        assert len(filled.search("alpha", "Lore server", 2)) == 2

    def test_search_keeps_to_doc_ids_when_given(self, filled: KeywordStore) -> None:
        hits = filled.search("alpha", "Lore server", 10, doc_ids={"d1"})
        assert {h.chunk_id for h in hits} == {PORT.id, BACKUP.id}
        assert filled.search("alpha", "Lore server", 10, doc_ids=set()) == []

    def test_search_of_a_question_without_known_words_is_empty(self, filled: KeywordStore) -> None:
        assert filled.search("alpha", "", 5) == []
        assert filled.search("alpha", "  ?! ", 5) == []
        assert filled.search("alpha", "zebra", 5) == []

    def test_adding_the_same_chunk_ids_twice_keeps_one_copy(self, filled: KeywordStore) -> None:
        filled.add("alpha", [chunk("d1", 0, "The archive opens at nine.")])
        assert filled.chunk_counts("alpha") == {"d1": 2, "d2": 1, "d3": 6}
        assert filled.search("alpha", "port 8000", 5) == []
        assert [h.chunk_id for h in filled.search("alpha", "archive", 5)] == [PORT.id]

    def test_deleting_a_document_removes_only_its_chunks(self, filled: KeywordStore) -> None:
        filled.delete_document("alpha", "d1")
        filled.delete_document("alpha", "never-added")
        assert filled.chunk_counts("alpha") == {"d2": 1, "d3": 6}
        assert filled.search("alpha", "port", 5) == []

    def test_a_dropped_collection_reads_as_empty(self, filled: KeywordStore) -> None:
        filled.drop_collection("alpha")
        assert filled.chunk_counts("alpha") == {}
        assert filled.search("alpha", "port", 5) == []

    def test_collections_share_no_chunks(self, filled: KeywordStore) -> None:
        filled.add("beta", [chunk("d9", 0, "The port of Hamburg.")])
        assert [h.chunk_id for h in filled.search("beta", "port", 5)] == ["d9-00000"]
        assert [h.chunk_id for h in filled.search("alpha", "Hamburg port", 5)] == [PORT.id]

    def test_rarer_words_weigh_more(self, filled: KeywordStore) -> None:
        weights = filled.rarity("alpha", ["port", "server", "zebra"])
        assert set(weights) == {"port", "server", "zebra"}
        assert weights["zebra"] >= weights["port"] > weights["server"] >= 0.0


@pytest.mark.unit
class TestSqliteKeywordIndex(KeywordStoreContract):
    @pytest.fixture
    def keywords(self, tmp_path: Path) -> Iterator[KeywordStore]:
        index = KeywordIndex(tmp_path / "keywords.sqlite3")
        yield index
        index.close()


@pytest.mark.cluster
class TestPgKeywordIndex(KeywordStoreContract):
    @pytest.fixture
    def keywords(self, database_url: str) -> Iterator[KeywordStore]:
        database = Database(database_url)
        yield PgKeywordIndex(database)
        database.close()
