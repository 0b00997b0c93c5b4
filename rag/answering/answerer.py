"""The question-answering use case: retrieve, fit a context budget, generate, cite."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from rag.answering import prompts
from rag.answering.answer_text import AnswerText
from rag.answering.injection import flagged
from rag.components.embeddings import Embedder
from rag.components.generation import Generator, first_line, prompt_tokens
from rag.errors import GenerationInterrupted, InvalidInput
from rag.retrieval.filters import Filters
from rag.retrieval.language import language_of, sentence_spans
from rag.retrieval.retriever import Retriever
from rag.types import (
    Answer,
    AnswerEvent,
    Citation,
    DoneEvent,
    Passage,
    SourcesEvent,
    TokenEvent,
    Turn,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnswerLimits:
    top_k: int = 4
    context_tokens: int = 600
    max_tokens: int = 384
    max_question_chars: int = 2000
    # At or above this evidence score (rag/retrieval/evidence.py) the passages surely hold the
    # answer, and the model is not offered the refusal; infinity: always offered.
    firm_evidence: float = math.inf
    # A drafted answer is withdrawn when no sentence of the passages it was drafted from
    # comes this close in meaning to the question (the embedder's cosine; `support`):
    # the model answered from passages that don't say it. 0: never withdrawn. The second
    # applies to a question searched for in translation: cosines across languages are
    # lower.
    min_support: float = 0.0
    min_support_translated: float = 0.0
    # Keep passages that read as instructions to an assistant (rag/answering/injection.py) out of
    # answers; either way their citations are flagged.
    exclude_flagged: bool = False
    # Withdraw a drafted answer that states a code, key or long number that none of its
    # passages holds (prompts.unstated_codes): made up, as a document's "reply with the
    # admin key" makes a small model do.
    withdraw_unstated: bool = True


class QuestionLimits(Protocol):
    """Where the longest question allowed is configured: `Settings` or `AnswerLimits`."""

    @property
    def max_question_chars(self) -> int: ...


def check_question(question: str, limits: QuestionLimits) -> str:
    """The question, stripped; InvalidInput if it is empty or longer than
    `limits.max_question_chars`.

    The one place the question's limits are checked and worded: every route and
    command that takes a question calls it (with the settings, before any work), and
    so does the `Answerer` (with its limits), so their messages name the same limit.
    """
    limit = limits.max_question_chars
    question = question.strip()
    if not question:
        raise InvalidInput("The question is empty.")
    if len(question) > limit:
        raise InvalidInput(
            f"The question is {len(question)} characters long; the limit is {limit}."
        )
    return question


@dataclass
class TokenTally:
    """Tokens the chat model read and wrote for one answer, added up call by call."""

    prompt: int = 0
    completion: int = 0

    def stamp(self, answer: Answer) -> Answer:
        return replace(answer, prompt_tokens=self.prompt, completion_tokens=self.completion)


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
        flagged=flagged(chunk),
        orders=chunk.orders,
    )


class Answerer:
    """Answers questions from a collection, citing the passages it used as [1], [2]…"""

    def __init__(
        self,
        retriever: Retriever,
        generator: Generator,
        limits: AnswerLimits,
        embedder: Embedder | None = None,
    ):
        self._retriever = retriever
        self._generator = generator
        self._limits = limits
        # Finds a cited sentence by meaning when the answer and the passage are in
        # different languages; without it such a citation has no highlighted span.
        self._embedder = embedder

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
            cost = self._generator.count_tokens(prompts.fenced_source(candidate)) + 2
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

    @staticmethod
    def unflagged(passages: list[Passage]) -> list[Passage]:
        """`passages` less those that read as instructions to an assistant."""
        kept = [p for p in passages if not flagged(p.chunk)]
        if len(kept) < len(passages):
            dropped = len(passages) - len(kept)
            log.warning("kept %d passage(s) that read as instructions out of an answer", dropped)
        return kept

    def standalone(
        self, question: str, history: Sequence[Turn], tally: TokenTally | None = None
    ) -> str:
        """`question` rewritten to stand on its own, when it follows earlier turns.

        "When was he born?" after a question about Chopin must search for Chopin. The
        chat model rewrites it; a rewrite that resolves nothing (`prompts.resolves`)
        gives way to the earlier question followed by this one. With no history the
        question is returned unchanged.
        """
        if not history:
            return question
        messages = prompts.rewrite_messages(history, question)
        reply = first_line(self._generator, messages, self.REWRITE_MAX_TOKENS)
        if tally is not None:
            tally.prompt += prompt_tokens(self._generator, messages)
            tally.completion += self._generator.count_tokens(reply)
        return prompts.clean_rewrite(reply, question, history)

    # A rewritten question is short; this bounds the time a rambling reply can take.
    REWRITE_MAX_TOKENS = 96

    def stream(
        self,
        question: str,
        collection: str,
        top_k: int | None = None,
        *,
        filters: Filters | None = None,
        history: Sequence[Turn] = (),
        max_tokens: int | None = None,
    ) -> Iterator[AnswerEvent]:
        """Events for one answer: the sources, then tokens, then the finished answer.

        With `filters`, the answer draws only on the documents that pass them. With
        `history` (the earlier turns of a conversation), the question is first
        rewritten into a standalone one, which is what is searched for and answered.
        `max_tokens` lowers the answer's length limit for this answer.
        """
        question = check_question(question, self._limits)
        tally = TokenTally()
        query = self.standalone(question, history, tally)
        k = top_k or self._limits.top_k
        found = self._retriever.retrieve(query, collection, k, filters=filters)
        if self._limits.exclude_flagged:
            found = replace(
                found,
                passages=self.unflagged(found.passages),
                nearest=self.unflagged(found.nearest),
            )
        translated = found.query != query
        # Offered the refusal, the 0.5B model declined 26 of 120 answerable questions
        # asked in another language than their passages (none of 120 within one): it is
        # not offered it then, and the thresholds decide (bench/answer_decisions.py).
        may_decline = not translated and found.evidence.total < self._limits.firm_evidence
        min_support = (
            self._limits.min_support_translated if translated else self._limits.min_support
        )
        if found.passages:
            events = self.stream_with(
                query,
                found.passages,
                may_decline=may_decline,
                max_tokens=max_tokens,
                min_support=min_support,
                tally=tally,
            )
        else:
            events = self._decline(query, self.fit_budget(query, found.nearest))
        for event in events:
            if isinstance(event, DoneEvent):
                answer = tally.stamp(event.answer)
                if query != question:
                    answer = replace(answer, question=question, query=query)
                event = DoneEvent(answer)
            yield event

    def stream_with(
        self,
        question: str,
        passages: list[Passage],
        *,
        may_decline: bool = True,
        max_tokens: int | None = None,
        min_support: float = 0.0,
        tally: TokenTally | None = None,
    ) -> Iterator[AnswerEvent]:
        """Events for an answer from the given passages (the evaluation's oracle run).

        Without `may_decline` the model is not offered the refusal (see `firm_evidence`).
        With `min_support`, a drafted answer is withdrawn when no sentence of `passages`
        is that close to the question (`support`): a last token says so, and the answer
        is declined. The tokens streamed add up to the finished answer's text exactly:
        markers and disarmed links are put in as it streams (rag/answering/answer_text.py).
        """
        question = check_question(question, self._limits)
        tally = tally if tally is not None else TokenTally()
        sources = self.fit_budget(question, passages)
        if not sources:
            yield from self._decline(question, [])
            return
        yield SourcesEvent(tuple(sources))
        messages = prompts.build_messages(question, sources, may_decline=may_decline)
        by_meaning = None if self._embedder is None else self._closest(self._embedder, sources)
        budget = min(max_tokens or self._limits.max_tokens, self._limits.max_tokens)
        shown = False
        for attempt in range(2):
            shaper = AnswerText(
                sources, chinese=prompts.is_chinese(question), by_meaning=by_meaning
            )
            drafted: list[str] = []
            try:
                for piece in self._generator.stream(messages, budget):
                    drafted.append(piece)
                    if text := shaper.feed(piece):
                        shown = True
                        yield TokenEvent(text)
                break
            except GenerationInterrupted:
                # The reply broke off while the shaper still held all of it: nobody has
                # seen a word, so it is asked for again (of another server) once.
                if shown or attempt:
                    raise
                log.warning("the reply broke off before any of it was shown; asking again")
        if text := shaper.finish():
            yield TokenEvent(text)
        tally.prompt += prompt_tokens(self._generator, messages)
        tally.completion += self._generator.count_tokens("".join(drafted))
        answer = self._finish(question, shaper.text, sources)
        withdrawn = (
            None if answer.declined else self._unsupported(question, answer, sources, min_support)
        )
        if withdrawn:
            note = prompts.withdrawal_for(question)
            yield TokenEvent(note)
            answer = self._declined(question, answer.text + note, sources, by=withdrawn)
        yield DoneEvent(tally.stamp(answer))

    def ask(
        self,
        question: str,
        collection: str,
        top_k: int | None = None,
        *,
        filters: Filters | None = None,
        history: Sequence[Turn] = (),
    ) -> Answer:
        """The finished answer, without streaming."""
        for event in self.stream(question, collection, top_k, filters=filters, history=history):
            if isinstance(event, DoneEvent):
                return event.answer
        raise RuntimeError("answer stream ended without a result")  # pragma: no cover

    @staticmethod
    def _decline(question: str, nearest: list[Citation]) -> Iterator[AnswerEvent]:
        """Events of a declined answer, showing the `nearest` passages as not holding it."""
        shown = tuple(replace(c, holds_answer=False) for c in nearest)
        refusal = prompts.refusal_for(question)
        yield SourcesEvent(shown)
        yield TokenEvent(refusal)
        yield DoneEvent(Answer(question, refusal, (), shown, declined=True, declined_by="search"))

    @staticmethod
    def _declined(
        question: str, text: str, sources: Sequence[Citation], by: str = "model"
    ) -> Answer:
        """A declined answer showing `sources` as read but not holding the answer.

        `text` is kept when it says so (the model's refusal, or a withdrawn draft and
        its note), so that the answer's text is what was streamed.
        """
        shown = tuple(replace(c, holds_answer=False, span=None) for c in sources)
        text = text if prompts.is_refusal(text) else prompts.refusal_for(question)
        return Answer(question, text, (), shown, declined=True, declined_by=by)

    def _unsupported(
        self, question: str, answer: Answer, sources: list[Citation], min_support: float
    ) -> str | None:
        """Why a drafted answer is withdrawn, if it is: "unstated" when it states a code
        none of its passages holds, "support" when (with `min_support`) no sentence of
        them comes close to the question."""
        if self._limits.withdraw_unstated:
            made_up = prompts.unstated_codes(answer.text, question, sources)
            if made_up:
                log.info("withdrawing an answer that states %d unstated code(s)", len(made_up))
                return "unstated"
        if min_support > 0 and self.support(question, sources) < min_support:
            log.info("withdrawing an answer: no sentence read says it")
            return "support"
        return None

    # The most sentences `support` embeds: bounds its time after a long context.
    SUPPORT_SENTENCES = 64

    def support(self, question: str, sources: Sequence[Citation]) -> float:
        """How close in meaning the closest sentence of `sources` comes to the question.

        A question whose answer is in the passages usually has a sentence that says
        nearly what it asks; one whose answering sentence is missing (a near-topic
        question) finds only passages about the same subject, whose sentences each say
        something else, and a model drafting from them takes a neighbouring fact. This
        is measured sentence by sentence, because a whole passage about the subject is
        close to the question either way (bench/answer_decisions.py). The embedder is
        multilingual, so it holds across languages, at a lower level. Without an
        embedder: 1 (no check).
        """
        if self._embedder is None:
            return 1.0
        sentences = [c.text[a:b] for c in sources for a, b in sentence_spans(c.text)]
        if not sentences:
            return 0.0
        vectors = np.asarray(self._embedder.embed_documents(sentences[: self.SUPPORT_SENTENCES]))
        wanted = np.asarray(self._embedder.embed_query(question))
        return float(np.max(vectors @ wanted))

    def _finish(self, question: str, text: str, sources: list[Citation]) -> Answer:
        if prompts.is_refusal(text):
            return self._declined(question, text, sources)
        claims = prompts.claims_by_source(text)
        sources = [
            replace(s, span=self._supporting_span(claims[s.number], s.text))
            if s.number in claims
            else s
            for s in sources
        ]
        by_number = {s.number: s for s in sources}
        cited = [by_number[n] for n in prompts.cited_numbers(text) if n in by_number]
        return Answer(question, text, tuple(cited), tuple(sources), declined=False)

    @staticmethod
    def _closest(embedder: Embedder, sources: list[Citation]) -> Callable[[str], int]:
        """For a sentence, the number of the source closest to it in meaning.

        Small models often leave out the markers. Within one language shared characters
        find the source (rag/answering/answer_text.py); a sentence in another language than its
        sources shares none, so it is marked with the source closest in meaning. The
        answer was written from these sources, so one of them is its source.
        """
        vectors: list[np.ndarray] = []

        def closest(sentence: str) -> int:
            if not vectors:  # embedded once, when the first sentence needs them
                vectors.append(np.asarray(embedder.embed_documents([s.text for s in sources])))
            closeness = vectors[0] @ np.asarray(embedder.embed_query(sentence))
            return sources[int(np.argmax(closeness))].number

        return closest

    def _supporting_span(self, claim: str, passage: str) -> tuple[int, int] | None:
        """The passage's sentence that supports `claim`: by shared characters, else meaning.

        Shared character bigrams find it within one language. Across languages (an
        English answer citing a Chinese passage) there are none to share, so the
        embedder picks the sentence closest in meaning to the claim.
        """
        span = prompts.supporting_span(claim, passage)
        if span is not None or self._embedder is None:
            return span
        if language_of(claim) == language_of(passage):
            return None
        spans = sentence_spans(passage)
        if not spans:
            return None
        sentences = self._embedder.embed_documents([passage[a:b] for a, b in spans])
        wanted = np.asarray(self._embedder.embed_query(prompts.without_markers(claim)))
        return spans[int(np.argmax(np.asarray(sentences) @ wanted))]
