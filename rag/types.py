"""Plain data passed between the layers. Frozen, so nothing changes behind a caller's back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Chunk:
    """A piece of a document as stored in the index.

    `content_hash` is the sha256 of the whole source file's bytes, shared by all of its
    chunks; it is how re-ingest tells an unchanged file from a changed one. `orders` are
    the (start, end) spans of the sentences that rag/answering/injection.py's classifier read, at
    ingest, as orders to an AI assistant.
    """

    id: str
    doc_id: str
    text: str
    source: str
    title: str
    chunk_index: int
    content_hash: str
    page: int | None = None
    heading: str = ""
    orders: tuple[tuple[int, int], ...] = ()

    def embedding_text(self) -> str:
        """What the embedder reads: the heading path gives a passage its context."""
        return f"{self.heading}\n{self.text}" if self.heading else self.text


@dataclass(frozen=True)
class DocumentWarning:
    """Something the parser noticed that a reader of a document's text should know (pages
    that gave no text, pages read by OCR, a guessed encoding): a stable `code` and a
    sentence. It describes the text; it never changes the chunks. `detail` is the
    sentence's variable part alone (the pages "2\N{EN DASH}4, 9", an encoding's name, a
    count), so an interface can say the same in another language."""

    code: str
    message: str
    detail: str = ""


@dataclass(frozen=True)
class Passage:
    """A chunk found for a query, with its cosine similarity to the query (higher is closer).

    `rerank_score` is the cross-encoder's relevance score when a reranker ordered the
    passages (higher is more relevant; its scale is the model's own), else None.
    """

    chunk: Chunk
    score: float
    rerank_score: float | None = None


@dataclass(frozen=True)
class Turn:
    """One message of an earlier exchange in a conversation."""

    role: Literal["user", "assistant"]
    text: str


@dataclass(frozen=True)
class Citation:
    """A source the answer was built from. `number` is the [n] marker used in the answer.

    `heading` is the heading path the chunk sits under. `span` is the (start, end)
    character range of `text` that supports the answer, for the page to highlight; None
    when the answer does not cite this source or no sentence of it matches.
    `holds_answer` is false for the passages shown with a declined answer: the closest
    ones found, judged not to answer the question. `flagged` is true when the passage
    reads as instructions to an AI assistant (rag/answering/injection.py): a reader should know
    that the document tries to steer the answer. `orders` are the chunk's (see `Chunk`):
    with the sentences that show the patterns' signs, they are what the model does not
    read of a flagged passage.
    """

    number: int
    chunk_id: str
    doc_id: str
    source: str
    title: str
    page: int | None
    text: str
    score: float
    heading: str = ""
    span: tuple[int, int] | None = None
    holds_answer: bool = True
    flagged: bool = False
    orders: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Answer:
    """A finished answer.

    `citations` are the sources the answer's [n] markers point to; `sources` are all the
    passages the model was shown, numbered as in the prompt. `declined` is true when
    the documents did not contain the answer. `query` is the standalone question that
    was searched for and answered, when a follow-up question was rewritten into one.
    `text` is exactly the concatenation of the answer's streamed tokens.
    `prompt_tokens` and `completion_tokens` count what the chat model read and wrote for
    this answer (the follow-up rewrite included), by its tokenizer where it runs in-process.
    `declined_by` says which step declined: "search" (no passage close enough), "model"
    (the model's refusal), "unstated" (the draft stated a code no passage holds) or
    "support" (no sentence read came close to the question); empty when answered.
    """

    question: str
    text: str
    citations: tuple[Citation, ...]
    sources: tuple[Citation, ...]
    declined: bool
    query: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    declined_by: str = ""


@dataclass(frozen=True)
class TokenEvent:
    """A piece of answer text, as the model produced it."""

    text: str
    kind: Literal["token"] = "token"


@dataclass(frozen=True)
class SourcesEvent:
    """The passages the model is about to read, sent before the first token."""

    sources: tuple[Citation, ...] = field(default_factory=tuple)
    kind: Literal["sources"] = "sources"


@dataclass(frozen=True)
class DoneEvent:
    """The finished answer; always the last event of a stream."""

    answer: Answer
    kind: Literal["done"] = "done"


AnswerEvent = TokenEvent | SourcesEvent | DoneEvent
