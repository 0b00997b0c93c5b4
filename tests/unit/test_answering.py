from __future__ import annotations

from pathlib import Path

import pytest

from ingest.pipeline import ingest_paths
from rag import prompts
from rag.answering import Answerer, AnswerLimits
from rag.container import Lore
from rag.errors import InvalidInput, NotFound
from rag.testing import ScriptedGenerator
from rag.types import DoneEvent, SourcesEvent, TokenEvent

pytestmark = pytest.mark.unit


def test_answer_cites_the_retrieved_source(
    lore: Lore, docs: Path, generator: ScriptedGenerator
) -> None:
    ingest_paths(lore, [docs], "default")
    generator.reply = "The server listens on port 8000 [1]."
    answer = lore.answerer.ask("Which port does the Lore server listen on?", "default")
    assert not answer.declined
    assert [c.number for c in answer.citations] == [1]
    assert answer.citations[0].source.endswith("ports.md")


def test_no_relevant_passage_declines_without_generating(
    lore: Lore, docs: Path, generator: ScriptedGenerator
) -> None:
    ingest_paths(lore, [docs], "default")
    lore.retriever.min_score = 0.99
    answer = lore.answerer.ask("长城有多长？", "default")
    assert answer.declined
    assert answer.text == prompts.REFUSAL_ZH
    assert answer.citations == ()
    assert generator.prompts == []


def test_model_refusal_is_reported_as_declined(
    lore: Lore, docs: Path, generator: ScriptedGenerator
) -> None:
    ingest_paths(lore, [docs], "default")
    generator.reply = prompts.REFUSAL_EN
    answer = lore.answerer.ask("What is the capital of Mars?", "default")
    assert answer.declined
    assert answer.citations == ()


def test_stream_sends_sources_then_tokens_then_answer(lore: Lore, docs: Path) -> None:
    ingest_paths(lore, [docs], "default")
    events = list(lore.answerer.stream("How do I back up Lore?", "default"))
    assert isinstance(events[0], SourcesEvent)
    assert all(isinstance(e, TokenEvent) for e in events[1:-1])
    assert isinstance(events[-1], DoneEvent)
    assert "".join(e.text for e in events[1:-1]).strip() == ScriptedGenerator().reply


def test_context_budget_limits_sources(
    lore: Lore, docs: Path, generator: ScriptedGenerator
) -> None:
    ingest_paths(lore, [docs], "default")
    question = "Lore port backup 长城"
    passages = lore.retriever.retrieve(question, "default", 4)
    roomy = Answerer(lore.retriever, generator, AnswerLimits(context_tokens=10_000))
    assert len(passages) >= 2
    assert len(roomy.fit_budget(question, passages)) == len(passages)
    tight = Answerer(lore.retriever, generator, AnswerLimits(context_tokens=1))
    chosen = tight.fit_budget(question, passages)
    assert [c.number for c in chosen] == [1], "the best passage is always kept"
    assert len(chosen[0].text) < len(passages[0].chunk.text), "and cut to fit"


def test_bad_questions_and_collections_are_clear_errors(lore: Lore) -> None:
    with pytest.raises(InvalidInput, match="empty"):
        lore.answerer.ask("   ", "default")
    with pytest.raises(InvalidInput, match="limit"):
        lore.answerer.ask("x" * 5000, "default")
    with pytest.raises(NotFound, match="nope-collection"):
        lore.answerer.ask("anything", "nope-collection")
