"""`lore worker` and `lore ingest --queue` are for cluster mode: on one machine each says
so and what to do instead, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app

pytestmark = pytest.mark.unit


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "LORE_DATA_DIR": str(tmp_path / "data"),
        "LORE_EMBEDDING_BACKEND": "hashing",
        "LORE_CONFIG": "",
    }


def test_worker_without_a_database_url_says_the_server_runs_jobs(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["worker"], env=env)
    assert result.exit_code == 2
    assert "database_url is not set" in result.output
    assert "lore serve" in result.output


def test_ingest_queue_without_a_database_url_is_refused_before_any_work(
    env: dict[str, str], docs: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["ingest", "--queue", str(docs)], env=env)
    assert result.exit_code == 2
    assert "lore serve" in result.output
    assert not (tmp_path / "data" / "manifest.sqlite3").exists()
