"""Small, honest fakes of Lore's model components, for tests.

They obey the same interfaces as the real components (`Generator`, `Reranker`,
`Embedder`), so code under test cannot tell them apart by type, only by quality. The
model-free embedder is a product backend (`embedding_backend: hashing`), so it lives in
rag/components/hashing_embeddings.py, not here.
"""

from __future__ import annotations

from collections.abc import Sequence

from rag.components.embeddings import Embedder, Vectors
from rag.components.generation import TokenStream


class ScriptedGenerator:
    """Replies with a fixed script, split into word-sized tokens, and records every prompt.

    Replies queued in `replies` are used first, one a call, then `reply` every time.
    """

    def __init__(self, reply: str = "Lore answers from sources [1]."):
        self.reply = reply
        self.replies: list[str] = []
        self.prompts: list[list[dict[str, str]]] = []

    def count_tokens(self, text: str) -> int:
        # About one token per 4 characters, as for English with a BPE vocabulary.
        return max(1, len(text) // 4) if text else 0

    def stream(self, messages: list[dict[str, str]], max_tokens: int) -> TokenStream:
        self.prompts.append(messages)
        reply = self.replies.pop(0) if self.replies else self.reply
        words = reply.split(" ")
        for index, word in enumerate(words[:max_tokens]):
            yield word if index == 0 else " " + word


class WordCountReranker:
    """Scores each text by how often it contains `word`, and records every call.

    A stand-in for a cross-encoder whose preference a test can predict exactly.
    """

    def __init__(self, word: str):
        self.word = word.lower()
        self.calls: list[tuple[str, list[str]]] = []

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        self.calls.append((query, list(texts)))
        return [float(text.lower().count(self.word)) for text in texts]


class RecordingEmbedder:
    """Wraps an embedder and records how many texts each `embed_documents` call gets.

    With `fail_on=N`, the Nth call raises RuntimeError instead, as a crash would.
    """

    def __init__(self, inner: Embedder, fail_on: int | None = None) -> None:
        self.inner = inner
        self.calls: list[int] = []
        self.fail_on = fail_on

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(len(texts))
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            raise RuntimeError("the embedder died mid-document")
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)
