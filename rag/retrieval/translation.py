"""Translating a question into the documents' language, with the chat model.

The embedder matches meaning across languages, but less sharply than within one, and
keyword search can't match at all: an English question's words are not in a Chinese
document. So a question whose best passages are in the other language is also searched
for in translation (rag/retrieval/retriever.py). Questions are short, so this costs about one
second of a small model's time on a CPU, and only for such questions.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from rag.components import generation
from rag.retrieval.language import Language, is_cjk

_NAMES = {"en": "English", "zh": "Simplified Chinese"}
# A small model told only to translate often answers the question instead; two worked
# examples (our own, not from any evaluation set) keep it translating.
_EXAMPLES = (
    ("How many days of annual leave does a new employee get?", "新员工有多少天年假？"),
    ("Who designed the bridge over the river?", "河上的那座桥是谁设计的？"),
)


def translation_messages(text: str, language: Language) -> list[dict[str, str]]:
    """Chat messages asking for `text` in `language`, with two example turns."""
    messages = [
        {
            "role": "system",
            "content": f"You are a translator. Translate each question the user sends into "
            f"{_NAMES[language]}. Do not answer the question. Reply with the translated "
            "question only.",
        }
    ]
    for english, chinese in _EXAMPLES:
        source, target = (chinese, english) if language == "en" else (english, chinese)
        messages += [{"role": "user", "content": source}, {"role": "assistant", "content": target}]
    messages.append({"role": "user", "content": text})
    return messages


class Translator(Protocol):
    def translate(self, text: str, language: Language) -> str:
        """`text` in `language`; an empty string when no usable translation came back."""
        ...


class ChatTranslator:
    """Translates short texts with the chat model, loaded only when first needed."""

    # A question's translation is short; this bounds a rambling reply.
    MAX_TOKENS = 48
    # Recent translations are kept: the same question is often asked again (a retry, a
    # second retrieval mode, another user), and each costs about a second of the model.
    CACHED = 512

    def __init__(self, generator: Callable[[], generation.Generator]):
        self._generator = generator
        self._cache: OrderedDict[tuple[str, Language], str] = OrderedDict()

    def translate(self, text: str, language: Language) -> str:
        key = (text, language)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        translated = self._translate(text, language)
        self._cache[key] = translated
        while len(self._cache) > self.CACHED:
            self._cache.popitem(last=False)
        return translated

    def _translate(self, text: str, language: Language) -> str:
        messages = translation_messages(text, language)
        reply = generation.first_line(self._generator(), messages, self.MAX_TOKENS)
        return clean_translation(reply, text, language)


def clean_translation(reply: str, text: str, language: Language) -> str:
    """The translation in a model's reply: its first line, unquoted; "" if it isn't one.

    A small model often keeps a name or a term in the original language, and such a
    mixed translation still helps the search; a reply with nothing at all in the target
    language, or far longer than the text, or just the text again, is no translation.
    """
    lines = [line.strip() for line in reply.splitlines() if line.strip()]
    first = lines[0].strip("\"“”'「」") if lines else ""
    if not first or first == text.strip() or len(first) > 3 * len(text) + 40:
        return ""
    if language == "zh":
        has_target = sum(map(is_cjk, first)) >= 2
    else:
        has_target = len(re.findall(r"[A-Za-z]{2,}", first)) >= 2
    return first if has_target else ""
