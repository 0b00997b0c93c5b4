"""Finding the passages that answer a question."""

from __future__ import annotations

from rag.embeddings import Embedder
from rag.store import VectorStore
from rag.types import Passage


class Retriever:
    """Dense retrieval: embed the question, take the nearest chunks, drop unrelated ones.

    `min_score` is the cosine similarity under which a passage is treated as unrelated
    to the question. It depends on the embedder, so the catalogue gives each one a
    default; an answer built on no passage is declined rather than invented.
    """

    def __init__(self, embedder: Embedder, store: VectorStore, *, min_score: float = 0.0):
        self._embedder = embedder
        self._store = store
        self.min_score = min_score

    def search(self, question: str, collection: str, k: int) -> list[Passage]:
        """The `k` nearest passages, best first, without the filter on `min_score`."""
        vector = self._embedder.embed_query(question)
        return self._store.query(collection, vector, k)

    def retrieve(self, question: str, collection: str, k: int) -> list[Passage]:
        """The nearest passages above `min_score`, best first; possibly none."""
        return [p for p in self.search(question, collection, k) if p.score >= self.min_score]
