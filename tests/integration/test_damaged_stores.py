"""A damaged file of the data directory gives a sentence naming it and the fix: on the
command line, when `lore serve` starts, and in the middle of a request (503, never a
500 with a trace)."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app
from ingest.pipeline import ingest_paths
from rag.config import Settings
from rag.container import Lore
from tests.fakes import ScriptedGenerator

pytestmark = pytest.mark.integration


@pytest.fixture
def env(tmp_path: Path, docs: Path) -> dict[str, str]:
    values = {
        "LORE_DATA_DIR": str(tmp_path / "data"),
        "LORE_EMBEDDING_BACKEND": "hashing",
        "LORE_CONFIG": "",
    }
    done = CliRunner().invoke(app, ["ingest", str(docs)], env=values)
    assert done.exit_code == 0, done.output
    return values


def truncate(path: Path, keep: int) -> None:
    """Cut the database at `path` to `keep` bytes, its log first written back into it (as
    a clean shutdown leaves it), so that the damage is the file's alone."""
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with path.open("r+b") as handle:
        handle.truncate(keep)


@pytest.mark.parametrize(
    ("store", "keep"),
    [("manifest.sqlite3", 50), ("manifest.sqlite3", 2048), ("chroma/chroma.sqlite3", 50)],
)
def test_a_truncated_store_is_named_with_its_fix(
    env: dict[str, str], store: str, keep: int
) -> None:
    path = Path(env["LORE_DATA_DIR"]) / store
    truncate(path, keep)
    for command in (["search", "port"], ["serve", "--port", "1"]):
        result = CliRunner().invoke(app, command, env=env)
        assert result.exit_code == 1, result.output
        message = str(result.exception)
        assert f"{path} is damaged" in message
        assert "lore doctor --repair" in message
        assert "lore restore" in message
    checked = CliRunner().invoke(app, ["doctor"], env=env)
    assert checked.exit_code == 1
    assert str(path) in checked.output


def test_damage_found_mid_request_is_a_503_with_a_sentence(tmp_path: Path, docs: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_backend="hashing", auth=False)
    lore = Lore(settings, generator_override=ScriptedGenerator())
    ingest_paths(lore, [docs], "default")
    lore.keywords.close()
    lore.__dict__.pop("keywords")
    lore.__dict__.pop("retriever", None)
    index = settings.data_dir / "keywords.sqlite3"
    with sqlite3.connect(index) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = os.path.getsize(index)
    with index.open("r+b") as handle:  # every page after the first overwritten
        handle.seek(4096)
        handle.write(b"\xa5" * (size - 4096))
    with TestClient(create_app(settings, lore), raise_server_exceptions=False) as client:
        answer = client.post("/v1/search", json={"question": "port 8000"})
    assert answer.status_code == 503
    body = answer.json()
    assert body["code"] == "store_damaged"
    assert "lore doctor" in body["message"]
    assert "Traceback" not in answer.text
