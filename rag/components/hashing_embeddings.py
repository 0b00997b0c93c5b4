"""An embedder with no model: `embedding_backend: hashing`, for demos and tests.

It hashes character bigrams, so texts that share many of them (in any language) come
out close. That finds the obviously right passage and nothing subtle; it exists so
that Lore runs, end to end, on a machine with no model installed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np

from rag.components.embeddings import Vectors


class HashingEmbedder:
    """Embeds text by hashing its character bigrams into a fixed-size unit vector.

    Texts that share many bigrams (in any language) get a high cosine similarity,
    which is enough for retrieval tests to find the obviously right passage.
    """

    # The name is stored with each collection's vectors; changing it would orphan them.
    def __init__(self, dimension: int = 256, name: str = "hashing-test"):
        self._dimension = dimension
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._dimension

    def _vector(self, text: str) -> list[float]:
        squashed = "".join(text.lower().split())
        vector = [0.0] * self._dimension
        for i in range(max(len(squashed) - 1, 1)):
            gram = squashed[i : i + 2]
            slot = int.from_bytes(hashlib.blake2b(gram.encode(), digest_size=4).digest(), "big")
            vector[slot % self._dimension] += 1.0
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        return [x / norm for x in vector]

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return np.asarray([self._vector(t) for t in texts], dtype=np.float32).reshape(
            len(texts), self._dimension
        )

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)
