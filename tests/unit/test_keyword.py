"""The keyword index keeps each collection's statistics to itself.

BM25's inverse document frequencies and document lengths, the rarity that weighs the
evidence, and the common words left out of a query all come from one collection's
chunks, so what else the server holds changes no score and no answer decision.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from ingest.pipeline import ingest_file
from rag.components.keyword import KeywordIndex, words
from rag.container import Lore
from rag.types import Chunk, Passage

pytestmark = pytest.mark.unit

ALPHA_DOCS = {
    "pumps.txt": "Order replacement kit QZ-4471 for the pump seals. The kit ships with gaskets.",
    "hinges.txt": "Grease the door hinges every spring with lithium grease.",
    "ports.txt": "The Lore server listens on port 8000 by default.",
    "backups.txt": "To back up Lore, copy the data directory while the server is stopped.",
    "wall.txt": "长城是中国古代的军事防御工程。长城的总长度超过两万公里。",
    **{f"note{i}.txt": f"Maintenance note {i}: check the hinges and seals." for i in range(6)},
}
# Documents of another collection that share the questions' words, and make the words
# that are rare in alpha (QZ-4471, kit, pump, port, 长城) common.
BETA_DOCS = {
    **{
        f"beta{i}.txt": f"Which kit fits the pump seals? Kit QZ-4471 and port {i} of the server "
        f"are noted; how often are the hinges greased? 长城有多长？ Note {i}."
        for i in range(12)
    },
    "long.txt": " ".join(["kit pump seals hinges port server lore grease"] * 40),
}
QUESTIONS = [
    "Which kit fits the pump seals?",
    "How often should the hinges be greased?",
    "Which port does the Lore server use?",
    "长城有多长？",
    "What colour is the sky on Mars?",
]


def _ingest(lore: Lore, folder: Path, files: dict[str, str], collection: str) -> None:
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
        ingest_file(lore, folder / name, collection)


def _scored(passages: list[Passage]) -> list[tuple[str, float]]:
    return [(p.chunk.id, p.score) for p in passages]


def _alpha_figures(lore: Lore) -> dict[str, dict[str, Any]]:
    """Every number that goes into searching and answering in collection alpha, by question."""
    retriever = lore.retriever
    figures = {}
    for question in QUESTIONS:
        found = retriever.retrieve(question, "alpha", 4)
        figures[question] = {
            "query terms": lore.keywords.query_terms("alpha", question),
            "rarity": lore.keywords.rarity("alpha", words(question)),
            "document counts": lore.keywords.document_counts("alpha", words(question)),
            "keyword hits": [
                (h.chunk_id, h.score) for h in lore.keywords.search("alpha", question, 10)
            ],
            "keyword passages": _scored(retriever.search(question, "alpha", 5, mode="keyword")),
            "hybrid passages": _scored(retriever.search(question, "alpha", 5)),
            "evidence": found.evidence,
            "declined": not found.passages,
            "answered from": _scored(found.passages),
            "nearest": _scored(found.nearest),
        }
    return figures


def test_scores_and_decisions_in_a_collection_ignore_other_collections(
    lore: Lore, tmp_path: Path
) -> None:
    _ingest(lore, tmp_path / "alpha", ALPHA_DOCS, "alpha")
    retriever = lore.retriever
    # The first question sits exactly on the evidence threshold: the least drop in its
    # evidence would decline it, and the question on Mars is declined.
    retriever.min_evidence = retriever.retrieve(QUESTIONS[0], "alpha", 4).evidence.total
    before = _alpha_figures(lore)
    assert before[QUESTIONS[0]]["declined"] is False
    assert before[QUESTIONS[-1]]["declined"] is True
    assert all(before[q]["keyword hits"] for q in QUESTIONS[:4])

    _ingest(lore, tmp_path / "beta", BETA_DOCS, "beta")
    # "kit" is rare in alpha and common in beta, and each collection weighs it so.
    assert lore.keywords.rarity("beta", ["kit"])["kit"] < before[QUESTIONS[0]]["rarity"]["kit"]
    assert _alpha_figures(lore) == before

    lore.keywords.drop_collection("beta")
    assert _alpha_figures(lore) == before


def _chunk(chunk_id: str, text: str, doc_id: str) -> Chunk:
    return Chunk(chunk_id, doc_id, text, f"/docs/{doc_id}.txt", doc_id, 0, "0" * 64)


CHUNKS = {
    "a": [
        _chunk("a1", "Replacement part XJ-9000 fits the left hinge.", "da1"),
        _chunk("a2", "The hinge is greased every spring.", "da2"),
        _chunk("a3", "故宫位于北京，是明清两代的皇家宫殿。", "da3"),
        _chunk("a4", "The left door and the right door both have a hinge.", "da4"),
    ],
    "b": [
        _chunk("b1", "XJ-9000 is also sold in collection b, left and right.", "db1"),
        _chunk("b2", "XJ-9000 XJ-9000 part part part fits fits the hinge.", "db2"),
        _chunk("b3", "故宫 故宫 北京 grease", "db3"),
    ],
}
KEYWORD_QUESTIONS = [
    "Which part is XJ-9000?",
    "Which hinge is greased, left or right?",
    "故宫在哪里？",
    "part fits hinge",
]

_OLD_SCHEMA = """
CREATE TABLE chunk_rows (
    rowid       INTEGER PRIMARY KEY,
    collection  TEXT NOT NULL,
    doc_id      TEXT NOT NULL,
    chunk_id    TEXT NOT NULL
);
CREATE INDEX chunk_rows_by_doc ON chunk_rows (collection, doc_id);
CREATE VIRTUAL TABLE chunk_terms USING fts5(
    terms, tokenize = 'unicode61 remove_diacritics 0'
);
CREATE VIRTUAL TABLE chunk_vocab USING fts5vocab(chunk_terms, 'row');
"""


def _old_layout(path: Path) -> None:
    """An index as the earlier code wrote it: one FTS5 table for every collection."""
    db = sqlite3.connect(path)
    db.executescript(_OLD_SCHEMA)
    # Alternate the collections, as two collections ingested side by side would.
    for pair in zip(CHUNKS["a"], CHUNKS["b"] + [None], strict=True):
        for chunk in pair:
            if chunk is None:
                continue
            cursor = db.execute(
                "INSERT INTO chunk_rows (collection, doc_id, chunk_id) VALUES (?, ?, ?)",
                (chunk.id[0], chunk.doc_id, chunk.id),
            )
            db.execute(
                "INSERT INTO chunk_terms (rowid, terms) VALUES (?, ?)",
                (cursor.lastrowid, " ".join(words(chunk.embedding_text()))),
            )
    db.commit()
    db.close()


def _keyword_figures(index: KeywordIndex, collection: str) -> dict[str, Any]:
    figures: dict[str, Any] = {"chunks": index.chunk_counts(collection)}
    for question in KEYWORD_QUESTIONS:
        figures[question] = (
            [(h.chunk_id, h.doc_id, h.score) for h in index.search(collection, question, 10)],
            index.query_terms(collection, question),
            index.rarity(collection, words(question)),
            index.document_counts(collection, words(question)),
        )
    return figures


def _tables(path: Path) -> set[str]:
    """The names of the tables in the SQLite file at `path`."""
    db = sqlite3.connect(path)
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    db.close()
    return names


def _keyword_tables(path: Path) -> set[str]:
    """The FTS5 tables of collections in the index at `path` (not FTS5's own tables)."""
    return {t for t in _tables(path) if re.fullmatch(r"terms_\d+", t)}


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[dict[str, KeywordIndex]]:
    """For each collection, an index built from its chunks alone."""
    indexes = {}
    for collection, chunks in CHUNKS.items():
        indexes[collection] = KeywordIndex(tmp_path / f"fresh-{collection}.sqlite3")
        indexes[collection].add(collection, chunks)
    yield indexes
    for index in indexes.values():
        index.close()


def test_an_index_of_the_shared_layout_is_split_per_collection_on_opening(
    tmp_path: Path, fresh: dict[str, KeywordIndex]
) -> None:
    path = tmp_path / "keywords.sqlite3"
    _old_layout(path)

    index = KeywordIndex(path)
    for name, alone in fresh.items():
        assert _keyword_figures(index, name) == _keyword_figures(alone, name)
    assert not {"chunk_terms", "chunk_vocab"} & _tables(path)
    index.close()

    reopened = KeywordIndex(path)  # opening again moves nothing twice
    for name, alone in fresh.items():
        assert _keyword_figures(reopened, name) == _keyword_figures(alone, name)
    # The moved index is an ordinary one: it takes deletions and new chunks.
    reopened.delete_document("a", "da1")
    fresh["a"].delete_document("a", "da1")
    extra = [_chunk("a5", "A new hinge for the XJ-9000.", "da5")]
    reopened.add("a", extra)
    fresh["a"].add("a", extra)
    assert _keyword_figures(reopened, "a") == _keyword_figures(fresh["a"], "a")
    assert _keyword_figures(reopened, "b") == _keyword_figures(fresh["b"], "b")
    reopened.close()


def test_dropping_a_collection_removes_its_chunks_and_tables(
    tmp_path: Path, fresh: dict[str, KeywordIndex]
) -> None:
    index = KeywordIndex(tmp_path / "k.sqlite3")
    index.add("a", CHUNKS["b"])
    index.add("b", CHUNKS["b"])
    index.drop_collection("a")
    index.drop_collection("never-made")
    assert index.search("a", "XJ-9000", 5) == []
    assert index.chunk_counts("a") == {}
    assert index.document_counts("a", ["xj"]) == ({"xj": 0}, 0)
    assert len(_keyword_tables(index.path)) == 1

    # A collection made again under the same name starts from nothing.
    index.add("a", CHUNKS["a"])
    assert _keyword_figures(index, "a") == _keyword_figures(fresh["a"], "a")
    assert _keyword_figures(index, "b") == _keyword_figures(fresh["b"], "b")
    index.close()


@pytest.fixture
def client(lore: Lore) -> Iterator[TestClient]:
    with TestClient(create_app(lore=lore)) as test_client:
        yield test_client


def _upload(client: TestClient, folder: Path, files: dict[str, str], collection: str) -> None:
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
        with (folder / name).open("rb") as handle:
            response = client.post(
                "/v1/documents", files={"file": (name, handle)}, data={"collection": collection}
            )
        assert response.status_code == 201, response.text


def _asked(client: TestClient) -> list[Any]:
    replies = []
    for question in QUESTIONS:
        body = {"question": question, "collection": "alpha"}
        replies.append(client.post("/v1/search", json=body).json())
        answer = client.post("/v1/query", json=body).json()
        replies.append((answer["declined"], answer["citations"], answer["sources"]))
    return replies


def test_search_and_answers_over_http_ignore_other_collections(
    client: TestClient, lore: Lore, tmp_path: Path
) -> None:
    _upload(client, tmp_path / "alpha", ALPHA_DOCS, "alpha")
    retriever, k = lore.retriever, lore.settings.top_k
    retriever.min_evidence = retriever.retrieve(QUESTIONS[0], "alpha", k).evidence.total
    before = _asked(client)

    _upload(client, tmp_path / "beta", BETA_DOCS, "beta")
    assert _asked(client) == before

    assert client.delete("/v1/collections/beta").status_code == 200
    assert lore.keywords.chunk_counts("beta") == {}
    assert len(_keyword_tables(lore.keywords.path)) == 1
    assert _asked(client) == before
