"""Which language a text is written in, as far as Lore needs to know: Chinese or not.

Lore's users write English and Chinese, and ask in one about documents in the other.
Questions are answered in their own language; a question whose best passages are in
the other language is also searched for in translation (rag/retrieval/retriever.py).
"""

from __future__ import annotations

import itertools
import re
from typing import Literal

Language = Literal["en", "zh"]


def is_cjk(character: str) -> bool:
    """True for a CJK ideograph (basic block, extension A, compatibility)."""
    return "\u3400" <= character <= "\u9fff" or "\uf900" <= character <= "\ufaff"


def language_of(text: str) -> Language:
    """`zh` when CJK ideographs make up at least 30 % of the text's letters, else `en`.

    A share rather than "any ideograph": an English passage quoting one Chinese name
    stays English, and a Chinese question naming "NFL" stays Chinese.
    """
    cjk = sum(1 for c in text if is_cjk(c))
    letters = sum(1 for c in text if c.isalpha())
    return "zh" if letters and cjk >= 0.3 * letters else "en"


def other_language(language: Language) -> Language:
    return "en" if language == "zh" else "zh"


# Sentence ends inside a passage: Chinese end marks, Latin ones before a blank, line breaks.
_PASSAGE_SENTENCE_END = re.compile(
    "[\u3002\uff01\uff1f\uff1b]+[\u201d\u2019\u300d\u300f\uff09]?"  # 。！？； and a closing quote
    r"|[.!?;]+[\"')\]]?(?=\s|$)|\n+"
)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of the sentences of `text`, blanks trimmed off."""
    bounds = [0, *(m.end() for m in _PASSAGE_SENTENCE_END.finditer(text)), len(text)]
    spans = []
    for begin, end in itertools.pairwise(bounds):
        piece = text[begin:end]
        left, right = len(piece) - len(piece.lstrip()), len(piece.rstrip())
        if right > left:
            spans.append((begin + left, begin + right))
    return spans
