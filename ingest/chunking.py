"""Splitting text into chunks with LangChain's recursive splitter, CJK-aware.

Separators are tried in order: paragraphs, lines, then sentence ends in Chinese and
English, then clause breaks, then spaces. Chinese has no spaces between words, so
without its own punctuation in the list a Chinese paragraph would be cut at an
arbitrary character.
"""

from __future__ import annotations

from langchain_text_splitters import RecursiveCharacterTextSplitter

SEPARATORS = [
    "\n\n",
    "\n",
    "。",
    "！",
    "？",
    "；",
    ". ",
    "! ",
    "? ",
    "; ",
    "，",
    "、",
    ", ",
    " ",
    "",
]


class Chunker:
    """Splits text into pieces of at most `size` characters, overlapping by `overlap`."""

    def __init__(self, size: int, overlap: int):
        self._splitter = RecursiveCharacterTextSplitter(
            chunk_size=size,
            chunk_overlap=overlap,
            separators=SEPARATORS,
            keep_separator="end",
            strip_whitespace=True,
        )

    def split(self, text: str) -> list[str]:
        return [piece for piece in self._splitter.split_text(text) if piece.strip()]
