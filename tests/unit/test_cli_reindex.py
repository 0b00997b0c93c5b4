"""`lore reindex`'s refusals: each says what is wrong, before any work, and the collection
answers as before (the re-embedding itself: tests/integration/test_reindex.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app

pytestmark = pytest.mark.unit


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "hours.txt").write_text("The archive opens at nine on weekdays.", encoding="utf-8")
    values = {
        "LORE_DATA_DIR": str(tmp_path / "data"),
        "LORE_EMBEDDING_BACKEND": "hashing",
        "LORE_LLM_BACKEND": "openai",
        "LORE_LLM_BASE_URL": "http://127.0.0.1:9/v1",
        "LORE_CONFIG": "",
    }
    assert CliRunner().invoke(app, ["ingest", str(docs), "-c", "main"], env=values).exit_code == 0
    return values


def _search(env: dict[str, str]) -> list[str]:
    done = CliRunner().invoke(
        app, ["search", "When does the archive open?", "-c", "main", "--json"], env=env
    )
    assert done.exit_code == 0, done.output
    return [row["chunk_id"] for row in json.loads(done.stdout)]


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        ([], "Name the embedding model"),
        (["--embedding-model", "  "], "Name the embedding model"),
        (["--embedding-model", "no-such-model"], "Unknown embedding model 'no-such-model'"),
        (["--embedding-model", "qwen2.5-coder-0.5b-instruct"], "is a chat model"),
        (["--embedding-model", "hashing", "-c", "missing"], "'missing' does not exist"),
    ],
)
def test_a_bad_reindex_is_refused_with_a_sentence_and_changes_nothing(
    env: dict[str, str], arguments: list[str], said: str
) -> None:
    before = _search(env)
    done = CliRunner().invoke(app, ["reindex", "-c", "main", *arguments], env=env)
    assert done.exit_code != 0
    assert said in str(done.exception), done.exception
    assert _search(env) == before


def test_a_reindex_to_the_embedder_it_has_does_nothing(env: dict[str, str]) -> None:
    runner = CliRunner()
    same = runner.invoke(app, ["reindex", "--embedding-model", "hashing", "-c", "main"], env=env)
    assert same.exit_code == 0, same.output
    assert "nothing to do" in same.stdout
    nothing = runner.invoke(app, ["reindex", "--abandon", "-c", "main"], env=env)
    assert nothing.exit_code == 0
    assert "No reindex of 'main' was unfinished" in nothing.stdout
