"""Splitting sections into chunks: LangChain's recursive splitter, CJK-aware, sized in tokens.

Separators are tried in order: paragraphs, lines, then sentence ends in Chinese and
English, then clause breaks, then spaces. Chinese has no spaces between words, so
without its own punctuation in the list a Chinese paragraph would be cut at an
arbitrary character. Sizes are counted with the embedder's tokenizer when one is
given (characters otherwise), so a chunk never overflows what the embedder reads.

Tables are never mixed with other text. A table with a header row becomes a chunk
per row, each naming the column of every value ("Team: Blues | Location: STL |
Stanley Cups: 1"), so that a small model reading it can tell which value answers the
question. A table without one is cut between rows.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from langchain_text_splitters import RecursiveCharacterTextSplitter

from ingest.parsing import Section, Table

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
        if section.table is not None:
            return self._split_table(section.table)
        return self.split(section.text)

    def _split_table(self, table: Table) -> list[str]:
        """A table's pieces, cut between rows.

        A table with a header gives a piece per row, and each row names the column of
        every value: a question about one record finds that record, and the model can
        tell which value answers it (bench/table_questions.py measured this against
        pieces of several rows under a header line). A table without a header is
        packed, rows whole, up to the chunk size. A row too long for a piece is cut
        between cells, each part led by the row's first value (what the row is
        about); a single cell too long even then is split as text.
        """
        lines = [line for row in table.rows for line in self._row_lines(table, row)]
        if table.header:
            return lines
        pieces: list[str] = []
        current: list[str] = []
        for line in lines:
            if current and not self._fits("\n".join([*current, line])):
                pieces.append("\n".join(current))
                current = []
            current.append(line)
        if current:
            pieces.append("\n".join(current))
        return pieces

    def _fits(self, text: str) -> bool:
        return self._length(text) <= self._size

    def _row_lines(self, table: Table, row: tuple[str, ...]) -> list[str]:
        """The row as one line, or as several when it is longer than a piece."""
        line = table.row_line(row)
        if not line or self._fits(line):
            return [line] if line else []
        key = table.row_line(row[:1])
        parts: list[str] = []
        current: list[str] = []
        for cell in [table.row_line(c) for c in _single_cells(row)][1 if key else 0 :]:
            if not cell:
                continue
            if current and not self._fits(" | ".join([key, *current, cell]).lstrip(" |")):
                parts.append(" | ".join([key, *current]).lstrip(" |"))
                current = []
            current.append(cell)
        if current:
            parts.append(" | ".join([key, *current]).lstrip(" |"))
        return [
            piece for part in parts for piece in ([part] if self._fits(part) else self.split(part))
        ]


def _single_cells(row: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Each cell of `row` alone, in place: ("", "", "x", "")."""
    return [tuple(v if i == j else "" for j, v in enumerate(row)) for i in range(len(row))]
