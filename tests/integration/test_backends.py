"""The scale-out options against real servers: a Chroma server and a llama.cpp server."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.pipeline import delete_document, ingest_file, ingest_paths
from rag.components.hashing_embeddings import HashingEmbedder
from rag.components.store import ChromaStore, VectorStore
from rag.config import Settings
from rag.container import Lore
from tests.fakes import ScriptedGenerator
from tests.servers import REPO

pytestmark = pytest.mark.integration


@pytest.fixture(params=["embedded", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> VectorStore:
    """The same contract is checked against Chroma embedded and Chroma as a server."""
    if request.param == "embedded":
        return ChromaStore.embedded(tmp_path / "chroma", "hashing-test")
    host, port = request.getfixturevalue("chroma_server")
    return ChromaStore.server(host, port, False, "hashing-test")


def test_store_contract_ingest_update_delete(store: VectorStore, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", models_dir=tmp_path / "m", min_score=0.05)
    lore = Lore(settings, HashingEmbedder(), store, ScriptedGenerator())
    collection = f"contract-{tmp_path.name[-12:].strip('_-')}x"
    doc = tmp_path / "doc.md"
    doc.write_text("# Title\n\nThe archive opens at nine.\n\n长城的总长度超过两万公里。\n")
    first = ingest_file(lore, doc, collection)
    assert ingest_file(lore, doc, collection).status == "unchanged"
    hits = lore.retriever.search("长城有多长", collection, 1)
    assert hits[0].chunk.doc_id == first.doc_id
    doc.write_text("# Title\n\nThe archive now opens at ten.\n")
    second = ingest_file(lore, doc, collection)
    assert second.status == "updated"
    assert store.document_chunks(collection, first.doc_id) == []
    texts = [c.text for c in store.document_chunks(collection, second.doc_id)]
    assert texts
    assert all("nine" not in t for t in texts)
    assert delete_document(lore, collection, second.doc_id)[0] == len(texts)
    assert store.document_chunks(collection, second.doc_id) == []


def test_answers_through_a_llama_cpp_server(
    tmp_path: Path, models_dir: Path, llama_server: str
) -> None:
    """The chat model served by llama.cpp's OpenAI-compatible server instead of in-process."""
    settings = Settings(
        data_dir=tmp_path / "data",
        models_dir=models_dir,
        llm_backend="openai",
        llm_base_url=llama_server,
    )
    lore = Lore(settings)
    ingest_paths(lore, [REPO / "demo" / "operations.md"], "default")
    answer = lore.answerer.ask("What port does the Lore server listen on by default?", "default")
    assert "8000" in answer.text
    assert answer.citations
    assert answer.citations[0].source.endswith("operations.md")
