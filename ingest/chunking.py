"""Splitting sections into chunks: LangChain's recursive splitter, CJK-aware, sized in tokens.

Separators are tried in order: paragraphs, lines, then sentence ends in Chinese and
English, then clause breaks, then spaces. Chinese has no spaces between words, so
without its own punctuation in the list a Chinese paragraph would be cut at an
arbitrary character. Sizes are counted with the embedder's tokenizer when one is
given (characters otherwise), so a chunk never overflows what the embedder reads.

Tables are never mixed with other text: a table that fits is one chunk, and a
longer one is cut between rows, each piece starting with the header row again.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from langchain_text_splitters import RecursiveCharacterTextSplitter

from ingest.parsing import Section

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

Length = Callable[[str], int]


@lru_cache(maxsize=4)
def tokenizer_length(model_dir: str) -> Length:
    """A length function counting the tokens of the tokenizer stored in `model_dir`.

    A SentencePiece `tokenizer.model`, when the model ships one, is read in preference
    to `tokenizer.json`: it gives the same counts and, for EmbeddingGemma's 262k-token
    vocabulary, takes 50 MB of memory instead of 280 MB in every parsing process.
    """
    sentencepiece_model = Path(model_dir) / "tokenizer.model"
    if sentencepiece_model.is_file():
        import sentencepiece

        processor = sentencepiece.SentencePieceProcessor(model_file=str(sentencepiece_model))
        return lambda text: len(processor.encode(text))

    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    # A model's tokenizer.json may pad or truncate every input to a fixed length
    # (MiniLM's pads to 128), which would make every text look the same size.
    tokenizer.no_padding()
    tokenizer.no_truncation()

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    return count


class Chunker:
    """Splits sections into pieces of at most `size` units of `length`, overlapping by `overlap`."""

    def __init__(self, size: int, overlap: int, length: Length = len):
        self._size = size
        self._length = length
        self._splitter = RecursiveCharacterTextSplitter(
            chunk_size=size,
            chunk_overlap=overlap,
            separators=SEPARATORS,
            keep_separator="end",
            strip_whitespace=True,
            length_function=length,
        )

    def split(self, text: str) -> list[str]:
        return [piece for piece in self._splitter.split_text(text) if piece.strip()]

    def split_section(self, section: Section) -> list[str]:
        if section.table:
            return self._split_table(section.text)
        return self.split(section.text)

    def _split_table(self, text: str) -> list[str]:
        rows = [row for row in text.split("\n") if row.strip()]
        if not rows or self._length(text) <= self._size:
            return [text] if rows else []
        header, body = rows[0], rows[1:]
        pieces: list[str] = []
        current = [header]
        for row in body:
            if len(current) > 1 and self._length("\n".join([*current, row])) > self._size:
                pieces.append("\n".join(current))
                current = [header]
            current.append(row)
        pieces.append("\n".join(current))
        return pieces
