"""The question-answering use case: retrieve, fit a context budget, generate, cite."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from rag import prompts
from rag.errors import InvalidInput
from rag.filters import Filters
from rag.generation import Generator
from rag.retrieval import Retriever
from rag.types import Answer, AnswerEvent, Citation, DoneEvent, Passage, SourcesEvent, TokenEvent


@dataclass(frozen=True)
class AnswerLimits:
    top_k: int = 4
    context_tokens: int = 1200
    max_tokens: int = 384
    max_question_chars: int = 2000


def _as_citation(number: int, passage: Passage) -> Citation:
    chunk = passage.chunk
    return Citation(
        number=number,
        chunk_id=chunk.id,
        doc_id=chunk.doc_id,
        source=chunk.source,
        title=chunk.title,
        page=chunk.page,
        text=chunk.text,
        score=round(passage.score, 4),
        heading=chunk.heading,
    )


class Answerer:
    """Answers questions from a collection, citing the passages it used as [1], [2]…"""

    def __init__(self, retriever: Retriever, generator: Generator, limits: AnswerLimits):
        self._retriever = retriever
        self._generator = generator
        self._limits = limits

    def _check(self, question: str) -> str:
        question = question.strip()
        if not question:
            raise InvalidInput("The question is empty.")
        if len(question) > self._limits.max_question_chars:
            raise InvalidInput(
                f"The question is {len(question)} characters long; the limit is "
                f"{self._limits.max_question_chars}."
            )
        return question

    def fit_budget(self, question: str, passages: list[Passage]) -> list[Citation]:
        """The leading passages whose prompt fits `context_tokens`, numbered from 1.

        Prompt processing dominates time to first token on a CPU, so the budget bounds
        latency. The best passage is always kept, cut short if it alone is too long.
        """
        budget = self._limits.context_tokens
        used = self._generator.count_tokens(
            "".join(m["content"] for m in prompts.build_messages(question, []))
        )
        chosen: list[Citation] = []
        for passage in passages:
            candidate = _as_citation(len(chosen) + 1, passage)
            cost = self._generator.count_tokens(prompts.format_source(candidate)) + 2
            if used + cost > budget:
                if not chosen:
                    chosen.append(self._truncate(candidate, budget - used))
                break
            chosen.append(candidate)
            used += cost
        return chosen

    def _truncate(self, citation: Citation, tokens: int) -> Citation:
        text = citation.text
        while text and self._generator.count_tokens(text) > max(tokens, 16):
            text = text[: int(len(text) * 0.8)]
        return replace(citation, text=text)

    def stream(
        self,
        question: str,
        collection: str,
        top_k: int | None = None,
        *,
        filters: Filters | None = None,
    ) -> Iterator[AnswerEvent]:
        """Events for one answer: the sources, then tokens, then the finished answer.

        With `filters`, the answer draws only on the documents that pass them.
        """
        question = self._check(question)
        k = top_k or self._limits.top_k
        passages = self._retriever.retrieve(question, collection, k, filters=filters)
        yield from self.stream_with(question, passages)

    def stream_with(self, question: str, passages: list[Passage]) -> Iterator[AnswerEvent]:
        """Events for an answer from the given passages (the evaluation's oracle run)."""
        question = self._check(question)
        sources = self.fit_budget(question, passages)
        yield SourcesEvent(tuple(sources))
        if not sources:
            refusal = prompts.refusal_for(question)
            yield TokenEvent(refusal)
            yield DoneEvent(Answer(question, refusal, (), (), declined=True))
            return
        pieces: list[str] = []
        for piece in self._generator.stream(
            prompts.build_messages(question, sources), self._limits.max_tokens
        ):
            pieces.append(piece)
            yield TokenEvent(piece)
        yield DoneEvent(self._finish(question, "".join(pieces).strip(), sources))

    def ask(
        self,
        question: str,
        collection: str,
        top_k: int | None = None,
        *,
        filters: Filters | None = None,
    ) -> Answer:
        """The finished answer, without streaming."""
        for event in self.stream(question, collection, top_k, filters=filters):
            if isinstance(event, DoneEvent):
                return event.answer
        raise RuntimeError("answer stream ended without a result")  # pragma: no cover

    @staticmethod
    def _finish(question: str, text: str, sources: list[Citation]) -> Answer:
        if prompts.is_refusal(text):
            return Answer(question, text, (), tuple(sources), declined=True)
        text = prompts.attribute(text, sources)
        by_number = {s.number: s for s in sources}
        cited = [by_number[n] for n in prompts.cited_numbers(text) if n in by_number]
        return Answer(question, text, tuple(cited), tuple(sources), declined=False)
