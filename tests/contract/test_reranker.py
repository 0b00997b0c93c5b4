"""The `Reranker` contract (rag/components/embeddings.py), run against every implementation.

A new reranker passes by subclassing `RerankerContract` and giving the `reranker`
fixture. The suite checks the scores' shape, not the ranking's quality.
"""

from __future__ import annotations

import math

import pytest

from rag.components.embeddings import CrossEncoderReranker, Reranker
from rag.models import get_spec
from tests.fakes import WordCountReranker
from tests.servers import installed_models_dir

pytestmark = pytest.mark.contract

QUERY = "How do I back up the Lore server?"
TEXTS = [
    "To back up Lore, copy the data directory while the server is stopped.",
    "The Lore server listens on port 8000 by default.",
    "长城是中国古代的军事防御工程。",
]


class RerankerContract:
    """What every `Reranker` promises. `reranker` gives one ready to score."""

    @pytest.fixture
    def reranker(self) -> Reranker:
        raise NotImplementedError("a subclass gives the reranker to test")

    def test_no_texts_get_no_scores(self, reranker: Reranker) -> None:
        assert reranker.score(QUERY, []) == []

    def test_each_text_gets_one_finite_score_in_order(self, reranker: Reranker) -> None:
        scores = reranker.score(QUERY, TEXTS)
        assert len(scores) == len(TEXTS)
        assert all(isinstance(s, float) and math.isfinite(s) for s in scores)

    def test_a_score_does_not_depend_on_the_other_texts(self, reranker: Reranker) -> None:
        together = reranker.score(QUERY, TEXTS)
        alone = [reranker.score(QUERY, [text])[0] for text in TEXTS]
        assert alone == pytest.approx(together, abs=1e-3)
        assert reranker.score(QUERY, TEXTS[::-1]) == pytest.approx(together[::-1], abs=1e-3)


@pytest.mark.unit
class TestWordCountReranker(RerankerContract):
    @pytest.fixture
    def reranker(self) -> Reranker:
        return WordCountReranker("lore")


# No reranker weights ship with Lore: the MiniLM embedder stands in, loaded as a
# cross-encoder with a random (seeded) head, as in tests/integration/test_reranker.py.
MINILM = get_spec("all-minilm-l6-v2").path(installed_models_dir())


@pytest.mark.integration
@pytest.mark.skipif(not (MINILM / "config.json").is_file(), reason=f"{MINILM} is not installed")
class TestCrossEncoder(RerankerContract):
    @pytest.fixture(scope="class")
    @classmethod
    def reranker(cls) -> Reranker:
        import torch

        torch.manual_seed(0)
        return CrossEncoderReranker(MINILM, device="cpu")
