"""Finding the passages that answer a question: dense, keyword, or both fused."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from rag.embeddings import Embedder
from rag.keyword import KeywordIndex
from rag.manifest import Manifest
from rag.store import VectorStore
from rag.types import Chunk, Passage

Mode = Literal["hybrid", "dense", "keyword"]
MODES: tuple[Mode, ...] = ("hybrid", "dense", "keyword")

# Reciprocal rank fusion: a passage scores the sum of 1 / (RRF_K + rank) over the
# lists that hold it. 60 is the constant of the original paper (Cormack et al., 2009);
# it keeps one list's top hit from drowning agreement between the lists.
RRF_K = 60


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> list[str]:
    """Ids from several best-first rankings, merged best first by reciprocal rank."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda item: -scores[item])


def _shingles(text: str) -> set[str]:
    squashed = "".join(text.lower().split())
    return {squashed[i : i + 3] for i in range(max(len(squashed) - 2, 1))}


def drop_near_duplicates(passages: Sequence[Passage], threshold: float = 0.9) -> list[Passage]:
    """Passages minus those whose text is nearly the same as a better-ranked one's.

    Near means a Jaccard similarity of character 3-grams at or above `threshold`:
    two versions of a file, or the same paragraph pasted into two documents.
    """
    kept: list[tuple[Passage, set[str]]] = []
    for passage in passages:
        grams = _shingles(passage.chunk.text)
        if all(len(grams & g) < threshold * len(grams | g) for _, g in kept):
            kept.append((passage, grams))
    return [p for p, _ in kept]


class Retriever:
    """Finds the passages for a question, best first, among visible documents only.

    `mode` "hybrid" (the default) fuses the nearest chunks by embedding with the best
    chunks by BM25; "dense" and "keyword" use one of them alone. Every passage carries
    its cosine similarity to the question, whichever list found it, and `min_score` is
    the similarity under which a passage is treated as unrelated: an answer built on no
    passage is declined rather than invented.
    """

    # Over-fetch when some hits belong to documents that are not visible (being written,
    # replaced or deleted); those are rare, so a few rounds always suffice.
    _MAX_FETCH = 2000
    # Each list contributes this many candidates (at least) to the fusion.
    CANDIDATES = 20

    def __init__(
        self,
        embedder: Embedder,
        store: VectorStore,
        manifest: Manifest,
        keywords: KeywordIndex | None = None,
        *,
        min_score: float = 0.0,
        mode: Mode = "hybrid",
    ):
        self._embedder = embedder
        self._store = store
        self._manifest = manifest
        self._keywords = keywords
        self.min_score = min_score
        self.mode: Mode = mode if keywords is not None else "dense"

    def search(
        self, question: str, collection: str, k: int, *, mode: Mode | None = None
    ) -> list[Passage]:
        """The `k` best visible passages, best first, without the filter on `min_score`."""
        mode = mode or self.mode
        vector = self._embedder.embed_query(question)
        if mode == "dense" or self._keywords is None:
            return drop_near_duplicates(self._dense(vector, collection, k))
        wanted = max(k, self.CANDIDATES) if mode == "hybrid" else k
        keyword_ids = self._keyword(self._keywords, question, collection, wanted)
        if mode == "keyword":
            return self._with_scores(keyword_ids[:k], vector, collection, {})
        dense = self._dense(vector, collection, wanted)
        fused = reciprocal_rank_fusion([[p.chunk.id for p in dense], keyword_ids])
        known = {p.chunk.id: p for p in dense}
        passages = self._with_scores(fused[: 2 * k], vector, collection, known)
        return drop_near_duplicates(passages)[:k]

    def retrieve(self, question: str, collection: str, k: int) -> list[Passage]:
        """The best passages above `min_score`, best first; possibly none."""
        return [p for p in self.search(question, collection, k) if p.score >= self.min_score]

    def _visible_prefix(
        self, fetch_hits: Callable[[int], list[tuple[str, str]]], collection: str, k: int
    ) -> list[str]:
        """The first `k` hits (chunk id, doc id) whose documents are visible, over-fetching."""
        fetch = k
        while True:
            hits = fetch_hits(fetch)
            visible = self._manifest.visible(collection, {doc for _, doc in hits})
            kept = [chunk for chunk, doc in hits if doc in visible]
            if len(kept) >= k or len(hits) < fetch or fetch >= self._MAX_FETCH:
                return kept[:k]
            fetch = min(fetch * 4, self._MAX_FETCH)

    def _dense(self, vector: list[float], collection: str, k: int) -> list[Passage]:
        found: dict[str, Passage] = {}

        def fetch(n: int) -> list[tuple[str, str]]:
            hits = self._store.query(collection, vector, n)
            found.update((p.chunk.id, p) for p in hits)
            return [(p.chunk.id, p.chunk.doc_id) for p in hits]

        return [found[i] for i in self._visible_prefix(fetch, collection, k)]

    def _keyword(self, keywords: KeywordIndex, question: str, collection: str, k: int) -> list[str]:
        def fetch(n: int) -> list[tuple[str, str]]:
            return [(h.chunk_id, h.doc_id) for h in keywords.search(collection, question, n)]

        return self._visible_prefix(fetch, collection, k)

    def _with_scores(
        self, ids: Sequence[str], vector: list[float], collection: str, known: dict[str, Passage]
    ) -> list[Passage]:
        """Passages for `ids`, in order, scored by cosine similarity to the question."""
        missing = [i for i in ids if i not in known]
        fetched: dict[str, tuple[Chunk, np.ndarray]] = {
            chunk.id: (chunk, stored)
            for chunk, stored in self._store.chunks_with_vectors(collection, missing)
        }
        query = np.asarray(vector, dtype=np.float32)
        passages = []
        for chunk_id in ids:
            if chunk_id in known:
                passages.append(known[chunk_id])
            elif chunk_id in fetched:
                chunk, stored = fetched[chunk_id]
                passages.append(Passage(chunk, score=float(stored @ query)))
        return passages
