from __future__ import annotations

import pytest

from ingest.chunking import Chunker

pytestmark = pytest.mark.unit


def test_chinese_splits_at_sentence_punctuation() -> None:
    sentence = "长城是中国古代的军事防御工程。"
    text = sentence * 20
    pieces = Chunker(size=60, overlap=0).split(text)
    assert len(pieces) > 1
    for piece in pieces:
        assert len(piece) <= 60
        assert piece.endswith("。"), piece


def test_chunks_respect_size_and_keep_all_text() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(100))
    pieces = Chunker(size=120, overlap=20).split(text)
    assert all(len(p) <= 120 for p in pieces)
    for i in (0, 50, 99):
        assert any(f"Sentence number {i} is here." in p for p in pieces)


def test_blank_text_gives_no_chunks() -> None:
    assert Chunker(size=100, overlap=0).split("  \n\n  ") == []
