"""Whether the passages found hold the answer to a question: the evidence score.

The retriever always returns its best passages, even for a question the documents
don't answer, and a small chat model asked to refuse in that case often answers
anyway (or refuses when it shouldn't). So Lore decides before generating. Three
signs that the answer is in the passages, each about 0..1, are added:

- closeness: the cosine similarity of the best passage to the question;
- distinctness: how much closer the best passage is than the others. A question on
  a document's subject that the document doesn't answer finds several passages about
  equally close; an answerable one finds one that stands out;
- coverage: the share of the question's words (weighted by rarity, so names and
  terms count and "what" does not) that two adjacent sentences of one passage hold.
  An answer is usually stated near the words the question asks about.

On the dev sets and Lore's own unanswerable questions the sum separates answerable
from unanswerable questions better than any one part (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rag.components.keyword import words
from rag.retrieval.language import sentence_spans
from rag.types import Passage


@dataclass(frozen=True)
class Evidence:
    closeness: float
    distinctness: float
    coverage: float

    @property
    def total(self) -> float:
        return self.closeness + self.distinctness + self.coverage


def sentence_pair_coverage(weights: dict[str, float], text: str) -> float:
    """The largest weighted share of the question words two adjacent sentences hold."""
    total = sum(weights.values())
    if not total:
        return 0.0
    sentences = [set(words(text[a:b])) for a, b in sentence_spans(text)]
    best = 0.0
    for index, sentence in enumerate(sentences):
        pair = sentence | (sentences[index + 1] if index + 1 < len(sentences) else set())
        best = max(best, sum(w for term, w in weights.items() if term in pair) / total)
    return best


def evidence(
    question: str,
    passages: Sequence[Passage],
    rarity: Callable[[Sequence[str]], dict[str, float]] | None = None,
) -> Evidence:
    """How well `passages` (best first, as retrieved) support answering `question`.

    `rarity` weighs the question's words (the keyword index's inverse document
    frequencies); without it every word counts the same.
    """
    if not passages:
        return Evidence(0.0, 0.0, 0.0)
    terms = list(dict.fromkeys(words(question)))
    weights = rarity(terms) if rarity is not None else dict.fromkeys(terms, 1.0)
    closeness = passages[0].score
    others = [p.score for p in passages[1:]]
    distinctness = closeness - sum(others) / len(others) if others else 0.0
    coverage = max(sentence_pair_coverage(weights, p.chunk.text) for p in passages)
    return Evidence(closeness, distinctness, coverage)
