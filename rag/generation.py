"""Text generation with a local GGUF model. `llama_cpp` is imported here and nowhere else."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol


class Generator(Protocol):
    """A chat model that streams its reply and can count tokens of its own vocabulary."""

    def count_tokens(self, text: str) -> int: ...

    def stream(self, messages: list[dict[str, str]], max_tokens: int) -> Iterator[str]: ...


def gpu_layers_for(requested: int) -> int:
    """Layers to offload: -1 means all when this llama.cpp build can offload, none otherwise."""
    if requested != -1:
        return requested
    import llama_cpp

    return -1 if llama_cpp.llama_supports_gpu_offload() else 0


class LlamaCppGenerator:
    """A GGUF model run in-process by llama-cpp-python, with the chat template it ships.

    llama.cpp contexts are not thread-safe, so one generation runs at a time; other
    callers wait on the lock.
    """

    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int = 4096,
        gpu_layers: int = -1,
        threads: int | None = None,
        temperature: float = 0.1,
    ):
        from llama_cpp import Llama

        self._temperature = temperature
        self._lock = threading.Lock()
        self._llm: Any = Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_gpu_layers=gpu_layers_for(gpu_layers),
            n_threads=threads or os.cpu_count() or 1,
            seed=0,
            verbose=False,
        )

    @property
    def context_size(self) -> int:
        return int(self._llm.n_ctx())

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def stream(self, messages: list[dict[str, str]], max_tokens: int) -> Iterator[str]:
        with self._lock:
            chunks = self._llm.create_chat_completion(
                messages=messages,
                max_tokens=max_tokens,
                temperature=self._temperature,
                stream=True,
            )
            for chunk in chunks:
                piece = chunk["choices"][0]["delta"].get("content")
                if piece:
                    yield piece
