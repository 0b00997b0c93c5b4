from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ingest.pipeline import delete_document, ingest_file
from rag.components.hashing_embeddings import HashingEmbedder
from rag.components.keyword import KeywordIndex, words
from rag.container import Lore
from rag.retrieval.retriever import Retriever, drop_near_duplicates, score_fusion
from rag.types import Chunk, Passage

pytestmark = pytest.mark.unit


def _chunk(chunk_id: str, text: str, doc_id: str = "d1") -> Chunk:
    return Chunk(chunk_id, doc_id, text, f"/docs/{doc_id}.txt", doc_id, 0, "0" * 64)


def test_words_split_chinese_with_jieba_and_english_into_lowercase_words() -> None:
    assert words("The Lore server, port 8000!") == ["the", "lore", "server", "port", "8000"]
    found = words("长城的总长度超过两万公里")
    assert "长城" in found
    assert "公里" in found
    assert "的" in found
    assert "长城的总长度超过两万公里" not in found
    mixed = words("Lore 支持中文问答 and naïve café")
    assert mixed[0] == "lore"
    assert "中文" in mixed
    assert mixed[-2:] == ["naïve", "café"]


def test_keyword_index_ranks_by_bm25_and_keeps_collections_apart(tmp_path: Path) -> None:
    index = KeywordIndex(tmp_path / "k.sqlite3")
    index.add(
        "a",
        [
            _chunk("c1", "Replacement part XJ-9000 fits the left hinge.", "d1"),
            _chunk("c2", "The hinge is greased every spring.", "d2"),
            _chunk("c3", "故宫位于北京，是明清两代的皇家宫殿。", "d3"),
        ],
    )
    index.add("b", [_chunk("c9", "XJ-9000 is also sold in collection b.", "d9")])
    hits = index.search("a", "Which part is XJ-9000?", 5)
    assert [h.chunk_id for h in hits][:1] == ["c1"]
    assert all(h.chunk_id != "c9" for h in hits)
    assert [h.chunk_id for h in index.search("a", "故宫在哪里？", 5)] == ["c3"]
    assert index.search("a", "completely unrelated zebra", 5) == []
    assert index.chunk_counts("a") == {"d1": 1, "d2": 1, "d3": 1}

    index.add("a", [_chunk("c1", "The part number changed to XK-1.", "d1")])  # replaced
    assert [h.chunk_id for h in index.search("a", "XJ-9000", 5)] == []
    index.delete_document("a", "d3")
    assert index.search("a", "故宫", 5) == []
    assert index.chunk_counts("b") == {"d9": 1}


def test_words_in_most_chunks_are_left_out_of_the_query(tmp_path: Path) -> None:
    index = KeywordIndex(tmp_path / "k.sqlite3")
    index.add("a", [_chunk(f"c{i}", f"lore note number {i}", f"d{i}") for i in range(10)])
    index.add("a", [_chunk("rare", "lore note about backups", "dx")])
    assert index.query_terms("a", "lore backups") == ["backups"]
    # When every word is common, the query keeps them rather than searching for nothing.
    assert index.query_terms("a", "lore note") != []


def test_score_fusion_adds_normalised_scores() -> None:
    dense = {"a": 0.9, "b": 0.7, "c": 0.5}  # cosine: normalised to 1, 0.5, 0
    keyword = {"b": 30.0, "d": 20.0, "a": 10.0}  # BM25: normalised to 1, 0.5, 0
    assert score_fusion([dense, keyword]) == ["b", "a", "d", "c"]
    assert score_fusion([{"x": 2.0}, {}]) == ["x"]  # one candidate: no division by zero


def test_near_duplicates_are_dropped_keeping_the_better_ranked() -> None:
    text = "To back up Lore, copy the data directory while the server is stopped."
    passages = [
        Passage(_chunk("c1", text, "v1"), 0.9),
        Passage(_chunk("c2", text.replace("stopped.", "stopped!"), "v2"), 0.8),
        Passage(_chunk("c3", "The server listens on port 8000.", "v3"), 0.7),
    ]
    assert [p.chunk.id for p in drop_near_duplicates(passages)] == ["c1", "c3"]


def test_hybrid_finds_exact_terms_and_follows_updates_and_deletes(
    lore: Lore, tmp_path: Path
) -> None:
    docs = tmp_path / "parts"
    docs.mkdir()
    for i in range(8):
        (docs / f"note{i}.txt").write_text(f"Maintenance note {i}: check the hinges and seals.")
    (docs / "parts.txt").write_text("Order replacement kit QZ-4471 for the pump seals.")
    results = {p.name: ingest_file(lore, p, "default") for p in sorted(docs.iterdir())}
    retriever = lore.retriever
    assert retriever.mode == "hybrid"
    top = retriever.search("QZ-4471", "default", 3)
    assert top[0].chunk.doc_id == results["parts.txt"].doc_id
    assert -1.0 <= top[0].score <= 1.0
    keyword_only = retriever.search("QZ-4471", "default", 3, mode="keyword")
    assert [p.chunk.doc_id for p in keyword_only] == [results["parts.txt"].doc_id]

    (docs / "parts.txt").write_text("Order replacement kit QZ-5000 for the pump seals.")
    updated = ingest_file(lore, docs / "parts.txt", "default")
    old = retriever.search("QZ-4471", "default", 9, mode="keyword")
    assert all("4471" not in p.chunk.text for p in old)
    assert retriever.search("QZ-5000", "default", 1)[0].chunk.doc_id == updated.doc_id
    delete_document(lore, "default", updated.doc_id)
    assert retriever.search("QZ 5000", "default", 3, mode="keyword") == []
    assert lore.keywords.chunk_counts("default") == {
        r.doc_id: r.chunks for r in lore.manifest.documents("default")
    }


class _KeywordsThatSignal(KeywordIndex):
    """A keyword index that says when a search has begun."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.searching = threading.Event()

    def search(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.searching.set()
        return super().search(*args, **kwargs)


class _EmbedderThatWaits(HashingEmbedder):
    """Embeds a question only once the keyword search has begun, or after 5 s."""

    def __init__(self, keywords: _KeywordsThatSignal):
        super().__init__()
        self.overlapped = False
        self._keywords = keywords

    def embed_query(self, text: str) -> list[float]:
        self.overlapped = self._keywords.searching.wait(5)
        return super().embed_query(text)


@pytest.mark.parametrize("mode", ["hybrid", "keyword"])
def test_the_keyword_search_runs_while_the_question_is_embedded(
    lore: Lore, tmp_path: Path, mode: str
) -> None:
    (tmp_path / "kit.txt").write_text("Order replacement kit QZ-4471 for the pump seals.")
    doc = ingest_file(lore, tmp_path / "kit.txt", "default")
    keywords = _KeywordsThatSignal(lore.settings.data_dir / "keywords-copy.sqlite3")
    keywords.add("default", [p.chunk for p in lore.retriever.search("QZ-4471", "default", 1)])
    embedder = _EmbedderThatWaits(keywords)
    retriever = Retriever(embedder, lore.store, lore.manifest, keywords, mode="hybrid")
    found = retriever.search("QZ-4471", "default", 1, mode=mode)  # type: ignore[arg-type]
    assert embedder.overlapped
    assert [p.chunk.doc_id for p in found] == [doc.doc_id]
    keywords.searching.clear()
    plain = Retriever(HashingEmbedder(), lore.store, lore.manifest, keywords, mode="hybrid")
    plain.search("QZ-4471", "default", 1, mode="dense")
    assert not keywords.searching.is_set()  # dense mode searches no keywords
