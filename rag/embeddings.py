"""Text embeddings. `sentence_transformers` is imported here and nowhere else."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from rag.errors import ConfigError


class Embedder(Protocol):
    """Turns text into unit-length vectors. Documents and queries may be encoded differently."""

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


def cpu_has_native_bfloat16() -> bool:
    """True on CPUs with bfloat16 instructions (AVX512-BF16 or AMX), read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_dtype(preference: str, device: str) -> str:
    """The weight type to load: bfloat16 where the hardware runs it natively, else float32."""
    if preference != "auto":
        return preference
    return "bfloat16" if device == "cuda" or cpu_has_native_bfloat16() else "float32"


def pick_device(preference: str) -> str:
    """'cuda' when asked for or when 'auto' finds a GPU, else 'cpu'."""
    if preference != "auto":
        return preference
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local folder, never from a hub.

    When the model declares `query` and `document` prompts (EmbeddingGemma does),
    they are applied; otherwise both sides are encoded as they are.
    """

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 16,
    ):
        import torch
        from sentence_transformers import SentenceTransformer

        self._name = name
        self._batch_size = batch_size
        chosen_device = pick_device(device)
        self.dtype = pick_dtype(dtype, chosen_device)
        self._model: Any = SentenceTransformer(
            str(path),
            device=chosen_device,
            local_files_only=True,
            model_kwargs={"torch_dtype": getattr(torch, self.dtype)},
        )
        prompts = getattr(self._model, "prompts", None) or {}
        self._query_prompt = "query" if "query" in prompts else None
        self._document_prompt = "document" if "document" in prompts else None
        dimension = self._model.get_embedding_dimension()
        if dimension is None:
            raise ConfigError(f"The embedding model at {path} does not declare its dimension.")
        self._dimension = int(dimension)

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._dimension

    def _encode(self, texts: Sequence[str], prompt_name: str | None) -> list[list[float]]:
        if not texts:
            return []
        vectors = self._model.encode(
            list(texts),
            prompt_name=prompt_name,
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [[float(x) for x in row] for row in vectors]

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return self._encode(texts, self._document_prompt)

    def embed_query(self, text: str) -> list[float]:
        return self._encode([text], self._query_prompt)[0]
