"""Finding the passages that answer a question."""

from __future__ import annotations

from rag.embeddings import Embedder
from rag.manifest import Manifest
from rag.store import VectorStore
from rag.types import Passage


class Retriever:
    """Dense retrieval: embed the question, take the nearest chunks, drop unrelated ones.

    `min_score` is the cosine similarity under which a passage is treated as unrelated
    to the question. It depends on the embedder, so the catalogue gives each one a
    default; an answer built on no passage is declined rather than invented.
    """

    # Over-fetch when some hits belong to documents that are not visible (being written,
    # replaced or deleted); those are rare, so a few rounds always suffice.
    _MAX_FETCH = 2000

    def __init__(
        self, embedder: Embedder, store: VectorStore, manifest: Manifest, *, min_score: float = 0.0
    ):
        self._embedder = embedder
        self._store = store
        self._manifest = manifest
        self.min_score = min_score

    def search(self, question: str, collection: str, k: int) -> list[Passage]:
        """The `k` nearest visible passages, best first, without the filter on `min_score`.

        Only chunks of documents the manifest lists as indexed are returned, so a
        document being written or replaced is never half-visible.
        """
        vector = self._embedder.embed_query(question)
        fetch = k
        while True:
            hits = self._store.query(collection, vector, fetch)
            visible = self._manifest.visible(collection, {p.chunk.doc_id for p in hits})
            passages = [p for p in hits if p.chunk.doc_id in visible]
            if len(passages) >= k or len(hits) < fetch or fetch >= self._MAX_FETCH:
                return passages[:k]
            fetch = min(fetch * 4, self._MAX_FETCH)

    def retrieve(self, question: str, collection: str, k: int) -> list[Passage]:
        """The nearest passages above `min_score`, best first; possibly none."""
        return [p for p in self.search(question, collection, k) if p.score >= self.min_score]
