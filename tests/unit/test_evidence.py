from __future__ import annotations

import pytest

from rag.retrieval.evidence import evidence, sentence_pair_coverage
from rag.types import Chunk, Passage

pytestmark = pytest.mark.unit


def _passage(text: str, score: float) -> Passage:
    return Passage(Chunk(f"c{score}", "d", text, "/docs/a.md", "a", 0, "h"), score)


def test_coverage_is_the_best_share_two_adjacent_sentences_hold() -> None:
    weights = {"broncos": 2.0, "won": 1.0, "when": 0.0, "1998": 1.0}
    text = "The Broncos were founded in 1960. They won in 1998. Tickets were cheap."
    # "broncos" is in the first sentence, "won" and "1998" in the second: all four.
    assert sentence_pair_coverage(weights, text) == pytest.approx(1.0)
    assert sentence_pair_coverage(weights, "Tickets were cheap. The Broncos.") == 0.5
    assert sentence_pair_coverage({}, text) == 0.0


def test_chinese_words_are_counted_through_jieba() -> None:
    text = "长城是中国古代的军事防御工程。长城的总长度超过两万公里。"
    assert sentence_pair_coverage({"长城": 1.0, "长度": 1.0}, text) == 1.0
    assert sentence_pair_coverage({"长城": 1.0, "护照": 1.0}, text) == 0.5


def test_an_answerable_question_has_more_evidence_than_an_unanswerable_one() -> None:
    passages = [
        _passage("The Denver Broncos won Super Bowl 50. The game was in Santa Clara.", 0.7),
        _passage("Super Bowl 50 was broadcast by CBS.", 0.45),
        _passage("The Panthers lost.", 0.4),
    ]
    found = evidence("Who won Super Bowl 50?", passages)
    assert found.closeness == 0.7
    assert found.distinctness == pytest.approx(0.7 - 0.425)
    # Without rarity weights every word counts: all but "who" are in the first pair.
    assert found.coverage == pytest.approx(4 / 5)
    flat = [_passage(p.chunk.text, 0.45) for p in passages]
    unanswerable = evidence("How much did a ticket to Super Bowl 50 cost?", flat)
    assert unanswerable.total < found.total
    assert evidence("anything", []).total == 0.0
