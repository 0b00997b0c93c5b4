"""Translating a question into the documents' language, with the chat model.

The embedder matches meaning across languages, but less sharply than within one, and
keyword search can't match at all: an English question's words are not in a Chinese
document. So a question whose best passages are in the other language is also searched
for in translation (rag/retrieval.py). Questions are short, so this costs about one
second of a small model's time on a CPU, and only for such questions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from rag.generation import Generator
from rag.language import Language, language_of

_INSTRUCTION = {
    "zh": "把用户发来的问题翻译成简体中文。人名、地名、数字和术语要准确。"
    "只回复译文，不要回答问题，不要解释。",
    "en": "Translate the user's question into English. Keep names, places, numbers and "
    "terms exact. Reply with the translation only: do not answer it, do not explain.",
}


class Translator(Protocol):
    def translate(self, text: str, language: Language) -> str:
        """`text` in `language`; an empty string when no usable translation came back."""
        ...


class ChatTranslator:
    """Translates short texts with the chat model, loaded only when first needed."""

    # A question's translation is short; this bounds a rambling reply.
    MAX_TOKENS = 96

    def __init__(self, generator: Callable[[], Generator]):
        self._generator = generator

    def translate(self, text: str, language: Language) -> str:
        messages = [
            {"role": "system", "content": _INSTRUCTION[language]},
            {"role": "user", "content": text},
        ]
        reply = "".join(self._generator().stream(messages, self.MAX_TOKENS))
        return clean_translation(reply, text, language)


def clean_translation(reply: str, text: str, language: Language) -> str:
    """The translation in a model's reply: its first line, unquoted; "" if it isn't one.

    A reply in the wrong language, or far longer than the text, is no translation.
    """
    lines = [line.strip() for line in reply.splitlines() if line.strip()]
    if not lines:
        return ""
    first = lines[0].strip("\"“”'「」")
    if not first or language_of(first) != language or len(first) > 3 * len(text) + 40:
        return ""
    return first
