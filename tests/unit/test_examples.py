"""Example questions for an empty chat: which headings are worth offering, from which
documents, and how long what was found is kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ingest.pipeline import ingest_file
from rag.answering.examples import ExampleQuestions, Examples, clean_heading, pick_headings
from rag.components.store import ChromaStore
from rag.config import Settings
from rag.container import Lore

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("heading", "clean"),
    [
        ("# Ports", "Ports"),
        ("Setup > 2.1 Ports", "Ports"),
        ("## 3. Backups ##", "Backups"),
        ("**Install**", "Install"),
        ("1) Install Lore", "Install Lore"),
        ("(iv) Retention policy", "Retention policy"),
        ("IV. Deployment", "Deployment"),
        ("一、安装", "安装"),
        ("第二章 备份与恢复", "备份与恢复"),
        ("3.2.1 How the audit   chain works", "How the audit chain works"),
        ("2024 Annual Report", "2024 Annual Report"),
        ("VPN", "VPN"),
    ],
)
def test_a_heading_is_cleaned_of_marks_and_numbering(heading: str, clean: str) -> None:
    assert clean_heading(heading) == clean


@pytest.mark.parametrize(
    "heading",
    ["", "  ", "12", "3.1", "## 7 ##", "Go", "Sheet1", "Table of Contents", "目录", "x" * 81],
)
def test_a_heading_that_says_too_little_is_left_out(heading: str) -> None:
    assert clean_heading(heading) is None


def test_headings_come_from_every_document_before_a_second_from_any() -> None:
    pairs = [
        ("a", "Ports"),
        ("a", "Ports > Backups"),
        ("a", "Ports > Backups"),
        ("b", "Keys"),
        ("b", "ports"),  # the same as a's, in other letters
        ("c", ""),
        ("c", "Audit log"),
    ]
    assert pick_headings(pairs, 6) == ["Ports", "Keys", "Audit log", "Backups"]
    assert pick_headings(pairs, 2) == ["Ports", "Keys"]


def test_many_documents_give_headings_spread_over_all_of_them() -> None:
    pairs = [(f"d{i:02d}", f"Topic number {i}") for i in range(30)]
    assert pick_headings(pairs, 6) == [f"Topic number {i}" for i in (0, 5, 10, 15, 20, 25)]


class CountingStore(ChromaStore):
    """A Chroma directory that counts the samples of headings it is asked for."""

    samples = 0

    def heading_sample(self, collection: str, size: int) -> list[tuple[str, str]]:
        self.samples += 1
        return super().heading_sample(collection, size)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_headings_are_kept_a_while_and_looked_for_again_when_documents_change(
    lore: Lore, docs: Path
) -> None:
    store = CountingStore.embedded(lore.settings.chroma_dir, lore.embedder.name)
    clock = Clock()
    examples = ExampleQuestions({}, store, lore.manifest, fresh_s=60, clock=clock)
    ingest_file(lore, docs / "ports.md", "alpha")
    first = examples.for_collection("alpha")
    assert first == Examples((), ("Ports", "Backups"), "headings")
    clock.now += 59
    assert examples.for_collection("alpha") == first
    assert store.samples == 1
    clock.now += 2
    examples.for_collection("alpha")
    assert store.samples == 2
    # A new document is offered at once, however fresh the headings are.
    (docs / "keys.md").write_text("# API keys\n\nEvery route needs one.\n", encoding="utf-8")
    ingest_file(lore, docs / "keys.md", "alpha")
    assert examples.for_collection("alpha").headings == ("Ports", "API keys", "Backups")
    assert store.samples == 3


def test_configured_questions_are_offered_without_reading_the_store(lore: Lore) -> None:
    store = CountingStore.embedded(lore.settings.chroma_dir, lore.embedder.name)
    questions = {"alpha": ["What is Lore?", "How do I back it up?"], "beta": []}
    examples = ExampleQuestions(questions, store, lore.manifest)
    found = examples.for_collection("alpha")
    assert found == Examples(("What is Lore?", "How do I back it up?"), (), "settings")
    lore.store.create_collection("beta")
    assert examples.for_collection("beta") == Examples((), (), "none")
    assert store.samples == 0


@pytest.mark.parametrize(
    "questions",
    [
        {"a": ["What is Lore?"]},  # not a collection name
        {"default": ["x" * 301]},
        {"default": ["   "]},
        {"default": [f"Question {i}?" for i in range(11)]},
    ],
)
def test_example_questions_in_settings_are_bounded(questions: dict[str, list[str]]) -> None:
    with pytest.raises(ValidationError, match="example_questions"):
        Settings(example_questions=questions)


def test_example_questions_in_settings_are_trimmed() -> None:
    settings = Settings(example_questions={"default": ["  What is Lore? "]})
    assert settings.example_questions == {"default": ["What is Lore?"]}
