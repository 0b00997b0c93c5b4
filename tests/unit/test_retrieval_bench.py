"""The latency bench grows an index to 100k chunks with synthetic copies: are they consistent?"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.retrieval_latency import SYNTHETIC, base_documents, indexed_chunks, replicate
from ingest.pipeline import ingest_paths
from rag.container import Lore
from rag.retrieval.retriever import MODES, drop_near_duplicates
from rag.types import Passage

pytestmark = pytest.mark.unit

TOPICS = [
    ("harbour", "The harbour master opens the north gate at dawn and logs every ship."),
    ("orchard", "Apple trees in the orchard are pruned in February, before the buds swell."),
    ("library", "The library lends maps for three weeks; rare atlases stay in the reading room."),
    ("railway", "Night trains to the coast leave from platform nine every hour after ten."),
    ("长城", "长城是中国古代的军事防御工程，总长度超过两万公里，东起山海关。"),
]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, sentence in TOPICS:
        paragraphs = [
            f"Part {i} about {name}. {sentence} Note {i * 7} of {name}." for i in range(8)
        ]
        (folder / f"{name}.md").write_text(f"# {name}\n\n" + "\n\n".join(paragraphs), "utf-8")
    return folder


def _manifest_counts(lore: Lore, collection: str) -> dict[str, int]:
    return {
        r.doc_id: r.chunks for r in lore.manifest.documents(collection) if r.status == "indexed"
    }


def test_replicate_keeps_store_keywords_and_manifest_in_agreement(lore: Lore, corpus: Path) -> None:
    ingest_paths(lore, [corpus], "bench")
    originals = indexed_chunks(lore, "bench")

    added = replicate(lore, "bench", 2000, batch_chunks=300)

    counts = _manifest_counts(lore, "bench")
    assert originals + added == sum(counts.values()) == indexed_chunks(lore, "bench")
    assert 2000 <= sum(counts.values()) < 2000 + max(counts.values())
    assert lore.store.chunk_counts("bench") == counts
    assert lore.keywords.chunk_counts("bench") == counts
    assert lore.manifest.unfinished("bench") == []
    for mode in MODES:
        passages = lore.retriever.search(
            "When does the harbour master open the gate?", "bench", 4, mode=mode
        )
        assert len(passages) == 4, mode
        assert all("harbour" in p.chunk.text for p in passages), mode


def test_replicate_again_adds_nothing(lore: Lore, corpus: Path) -> None:
    ingest_paths(lore, [corpus], "bench")
    replicate(lore, "bench", 500, batch_chunks=100)
    before = _manifest_counts(lore, "bench")

    assert replicate(lore, "bench", 500) == 0
    assert _manifest_counts(lore, "bench") == before
    assert len(base_documents(lore, "bench")) == len(TOPICS)


def test_copies_differ_from_their_originals_but_stay_close(lore: Lore, corpus: Path) -> None:
    ingest_paths(lore, [corpus], "bench")
    originals = base_documents(lore, "bench")
    replicate(lore, "bench", indexed_chunks(lore, "bench") + 1)  # one copy of one document

    [copy_record] = [
        r
        for r in lore.manifest.documents("bench")
        if any(s.startswith(SYNTHETIC) for s in r.sources)
    ]
    [original] = [d for d in originals if copy_record.title == f"{d.title} (copy0001)"]
    copies = lore.store.document_chunks("bench", copy_record.doc_id)
    assert len(copies) == len(original.chunks)
    stored = {c.id: v for c, v in lore.store.chunks_with_vectors("bench", [c.id for c in copies])}
    for first, copy in zip(original.chunks, copies, strict=True):
        assert sorted(copy.text) == sorted(first.text)  # words trade places, none change
        assert copy.text != first.text
        assert "copy0001" in copy.heading
        pair = [Passage(first, 1.0), Passage(copy, 0.9)]
        assert len(drop_near_duplicates(pair)) == 2  # not collapsed into one by retrieval
    vectors = np.stack([stored[c.id] for c in copies])
    cosines = np.sum(vectors * original.vectors, axis=1)
    assert np.all((cosines > 0.7) & (cosines < 0.99))
