"""A data directory written by an earlier release opens after upgrading; one written by
a newer release is refused with a sentence, before anything in it changes.

tests/fixtures/datadir-0.1.0-517e273.tgz was made by Lore 0.1.0 at commit 517e273 (the
main branch before schema versions were recorded) with the hashing embedder: two files
ingested into collection `main` (one English, one Chinese), an API key, two audit
entries and a rating. tests/fixtures/README.md says how to make the next one.
"""

from __future__ import annotations

import json
import sqlite3
import tarfile
from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from rag.components.database import schema_version
from rag.models import sha256_of

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "datadir-0.1.0-517e273.tgz"
KEY = "lore_dd0b96c172a3_JvhKSAu_nQd4l9nUa98pC_Wrq3twnDorlAitNXZfj5Q"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    with tarfile.open(FIXTURE) as archive:
        archive.extractall(tmp_path, filter="data")
    return {
        "LORE_DATA_DIR": str(tmp_path / "data"),
        "LORE_EMBEDDING_BACKEND": "hashing",
        "LORE_LLM_BACKEND": "openai",
        "LORE_LLM_BASE_URL": "http://127.0.0.1:9/v1",
        "LORE_MIN_FREE_MB": "1",
        "LORE_CONFIG": "",
    }


def test_a_data_directory_of_the_earlier_release_opens_and_answers(env: dict[str, str]) -> None:
    data = Path(env["LORE_DATA_DIR"])
    assert schema_version(data / "manifest.sqlite3") == 0  # written before versions
    runner = CliRunner()
    found = runner.invoke(app, ["search", "paid leave", "-c", "main", "--json"], env=env)
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)[0]["source"] == "handbook.md"
    chinese = runner.invoke(app, ["search", "借书证", "-c", "main", "--json"], env=env)
    assert json.loads(chinese.stdout)[0]["source"] == "规定.txt"
    checked = runner.invoke(app, ["doctor", "--json"], env=env)
    assert checked.exit_code == 0, checked.stdout
    assert schema_version(data / "manifest.sqlite3") == 3  # migrated and stamped
    assert schema_version(data / "keywords.sqlite3") == 2
    verified = runner.invoke(app, ["audit", "verify"], env=env)
    assert verified.exit_code == 0, verified.output
    listed = runner.invoke(app, ["keys", "list", "--json"], env=env)
    assert KEY.split("_")[1] in listed.stdout  # the key made by the earlier release
    ratings = runner.invoke(app, ["feedback", "export"], env=env)
    assert '"rating": "up"' in ratings.stdout


@pytest.mark.parametrize("store", ["manifest.sqlite3", "keywords.sqlite3", "audit.sqlite3"])
def test_a_data_directory_of_a_newer_release_is_refused_untouched(
    env: dict[str, str], store: str
) -> None:
    path = Path(env["LORE_DATA_DIR"]) / store
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version = 99")
    before = sha256_of(path)
    runner = CliRunner()
    command = ["search", "paid leave", "-c", "main"]
    if store == "audit.sqlite3":
        command = ["audit", "verify"]
    refused = runner.invoke(app, command, env=env)
    assert refused.exit_code == 1
    assert isinstance(refused.exception, SystemExit) or "newer release" in str(refused.exception)
    message = refused.output + str(refused.exception)
    assert "written by a newer release of Lore" in message
    assert store in message
    assert sha256_of(path) == before
