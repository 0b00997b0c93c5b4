from __future__ import annotations

from pathlib import Path

import pytest

from ingest.chunking import Chunker, tokenizer_length

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


def test_token_length_ignores_the_tokenizers_padding(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "[PAD]": 1}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.enable_padding(length=128, pad_id=1, pad_token="[PAD]")
    tokenizer.enable_truncation(max_length=128)
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    count = tokenizer_length(str(tmp_path))
    assert count("one two three") == 3
    assert count(" ".join(["word"] * 300)) == 300
    pieces = Chunker(size=50, overlap=0, length=count).split(" ".join(["word"] * 300))
    assert [count(p) for p in pieces] == [50] * 6
