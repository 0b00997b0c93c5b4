from __future__ import annotations

from pathlib import Path

import pytest

from ingest.chunking import Chunker, tokenizer_length
from ingest.parsing import Section, Table

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


def _inventory(rows: int) -> Section:
    table = Table(
        ("Warehouse", "SKU", "Item"),
        tuple((f"W{i}", f"SKU-{i:04d}", f"item number {i}") for i in range(rows)),
    )
    return Section(table.text(), heading="Stock", table=table)


def test_table_with_header_gives_a_chunk_per_row_naming_each_value() -> None:
    pieces = Chunker(size=1000, overlap=0).split_section(_inventory(3))
    assert pieces == [
        f"Warehouse: W{i} | SKU: SKU-{i:04d} | Item: item number {i}" for i in range(3)
    ]


def test_table_without_header_is_cut_between_rows() -> None:
    table = Table((), tuple((f"Item {i}.", f"Section {i}", str(i)) for i in range(40)))
    pieces = Chunker(size=100, overlap=0).split_section(Section(table.text(), table=table))
    assert len(pieces) > 3
    assert all(len(p) <= 100 for p in pieces)
    assert "\n".join(pieces).splitlines() == [f"Item {i}. | Section {i} | {i}" for i in range(40)]


def test_wide_row_is_cut_between_cells_each_part_led_by_its_first_value() -> None:
    header = ("Name", *(f"F{i}" for i in range(6)))
    table = Table(header, (("srv-07", *(f"value number {i} of the row" for i in range(6))),))
    pieces = Chunker(size=80, overlap=0).split_section(Section(table.text(), table=table))
    assert len(pieces) > 1
    for piece in pieces:
        assert len(piece) <= 80
        assert piece.startswith("Name: srv-07 | F")
    found = " ".join(pieces)
    assert all(f"F{i}: value number {i} of the row" in found for i in range(6))


def test_cell_longer_than_a_chunk_is_split_as_text() -> None:
    table = Table(("Name", "Notes"), (("srv-07", "word " * 100),))
    pieces = Chunker(size=80, overlap=0).split_section(Section(table.text(), table=table))
    assert len(pieces) > 3
    assert all(len(p) <= 80 for p in pieces)
    assert pieces[0].startswith("Name: srv-07 | Notes: word")
