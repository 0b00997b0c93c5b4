"""Shared fixtures. Every test runs offline; see the Makefile for the network namespace."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.components.hashing_embeddings import HashingEmbedder
from rag.components.offline import force_offline
from rag.components.store import ChromaStore
from rag.config import Settings
from rag.container import Lore
from tests.fakes import ScriptedGenerator

force_offline()

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # The hashing embedder of the tests has its own scale: no per-model thresholds.
    # Auth is off here, as for one local user; tests/unit/test_access.py turns it on.
    # Questions are not translated, so that each scripted reply is the answer; the
    # translation has tests of its own (tests/unit/test_translation.py).
    return Settings(
        auth=False,
        data_dir=tmp_path / "data",
        models_dir=tmp_path / "models",
        min_score=0.05,
        min_score_translated=0.05,
        min_evidence=0.0,
        firm_evidence=float("inf"),
        min_support=0.0,
        min_support_translated=0.0,
        translate_questions=False,
    )


@pytest.fixture
def generator() -> ScriptedGenerator:
    return ScriptedGenerator()


@pytest.fixture
def lore(settings: Settings, generator: ScriptedGenerator) -> Lore:
    embedder = HashingEmbedder()
    store = ChromaStore.embedded(settings.chroma_dir, embedder.name)
    return Lore(
        settings, embedder_override=embedder, store_override=store, generator_override=generator
    )


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "ports.md").write_text(
        "# Ports\n\nThe Lore server listens on port 8000 by default.\n\n"
        "## Backups\n\nTo back up Lore, copy the data directory while the server is stopped.\n",
        encoding="utf-8",
    )
    (folder / "zh.txt").write_text(
        "长城是中国古代的军事防御工程。长城的总长度超过两万公里。\n\n"
        "故宫位于北京，是明清两代的皇家宫殿。",
        encoding="utf-8",
    )
    return folder


@pytest.fixture
def long_text(tmp_path: Path) -> Path:
    """A plain-text file of 50 short numbered paragraphs (about 3,300 characters)."""
    path = tmp_path / "long.txt"
    lines = (f"Paragraph {i} of the long file, about topic {i * 7919 % 1000}." for i in range(50))
    path.write_text("\n\n".join(lines), encoding="utf-8")
    return path
