"""The cross-encoder reranker's real code path, with sentence-transformers and torch.

No reranker weights ship with Lore, so the installed MiniLM embedder stands in: loaded
as a `CrossEncoder` with one output, its classification head is random (seeded here).
These tests check the plumbing and the ordering invariants, not the ranking quality.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from rag.components.embeddings import CrossEncoderReranker
from rag.components.hashing_embeddings import HashingEmbedder
from rag.components.store import ChromaStore
from rag.config import Settings
from rag.container import Lore
from rag.errors import ConfigError
from rag.models import get_spec
from rag.retrieval.retriever import Retriever
from tests.fakes import ScriptedGenerator
from tests.servers import installed_models_dir

pytestmark = pytest.mark.integration

MINILM = get_spec("all-minilm-l6-v2").path(installed_models_dir())
needs_minilm = pytest.mark.skipif(
    not (MINILM / "config.json").is_file(), reason=f"{MINILM} is not installed"
)
TEXTS = [
    "The Lore server listens on port 8000 by default.",
    "To back up Lore, copy the data directory while the server is stopped.",
    "Chunks are 200 tokens long and overlap by 30.",
    "Hybrid search fuses BM25 keywords with dense vectors.",
    "The web page talks only to the public HTTP API.",
]


@pytest.fixture
def lore(tmp_path: Path) -> Lore:
    """A Lore whose settings point the reranker at MiniLM, with the hashing embedder."""
    torch.manual_seed(0)  # the random classification head, the same every run
    settings = Settings(
        data_dir=tmp_path / "data", embedding_backend="hashing", reranker_model_path=MINILM
    )
    embedder = HashingEmbedder()
    store = ChromaStore.embedded(settings.chroma_dir, embedder.name)
    return Lore(
        settings,
        embedder_override=embedder,
        store_override=store,
        generator_override=ScriptedGenerator(),
    )


@needs_minilm
def test_cross_encoder_scores_each_text_deterministically() -> None:
    torch.manual_seed(0)
    reranker = CrossEncoderReranker(MINILM, device="cpu")
    first = reranker.score("Which port does Lore use?", TEXTS)
    assert len(first) == len(TEXTS)
    assert all(isinstance(s, float) and math.isfinite(s) for s in first)
    assert reranker.score("Which port does Lore use?", TEXTS) == first
    assert reranker.score("anything", []) == []


@needs_minilm
def test_configured_reranker_orders_passages_by_its_score(lore: Lore) -> None:
    from ingest.pipeline import ingest_file

    folder = lore.settings.data_dir.parent / "docs"
    folder.mkdir()
    for i, text in enumerate(TEXTS):
        (folder / f"note{i}.txt").write_text(text)
        ingest_file(lore, folder / f"note{i}.txt", "default")
    retriever = lore.retriever
    assert isinstance(retriever._reranker, CrossEncoderReranker)
    found = retriever.search("How do I back up the Lore server?", "default", 3)
    assert len(found) == 3
    scores = [p.rerank_score for p in found]
    assert all(s is not None for s in scores)
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    # The cosine score stays the one the refusal threshold reads.
    plain = Retriever(lore.embedder, lore.store, lore.manifest, lore.keywords)
    question = "How do I back up the Lore server?"
    cosine = {p.chunk.id: p.score for p in plain.search(question, "default", 5)}
    assert all(p.score == pytest.approx(cosine[p.chunk.id]) for p in found)
    answer = lore.answerer.ask("How do I back up the Lore server?", "default", top_k=2)
    assert len(answer.sources) <= 2


def test_a_folder_that_is_not_a_cross_encoder_is_a_config_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="could not be loaded as a cross-encoder"):
        CrossEncoderReranker(broken, device="cpu")
