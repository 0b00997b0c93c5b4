"""`lore doctor` finds each kind of damage, and `--repair` mends what it can: a chunk gone
from Chroma, a keyword row gone, a manifest row pointing at nothing, orphan chunks, a
deleted upload, an altered model, a tampered audit log (reported, never touched).

A real Chroma folder and SQLite files, the hashing embedder (no model needed to mend an
index), and the command line as an operator runs it.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from api.cli import app
from rag.components.hashing_embeddings import HashingEmbedder
from rag.components.store import ChromaStore
from rag.models import sha256_of
from rag.types import Chunk
from tests.servers import CHAT_GGUF, installed_models_dir

pytestmark = pytest.mark.integration

PARAGRAPHS = [
    "The archive opens at nine in the morning and closes at five.",
    "Visitors must show a reader's card at the front desk.",
    "Photographs of the manuscripts need written permission.",
    "The reading room holds forty seats and six microfilm readers.",
]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A data directory with three ingested files and one "upload" in collection main;
    the chat model is served elsewhere, so no model file is checked here."""
    data = tmp_path / "data"
    docs = tmp_path / "docs"
    docs.mkdir()
    for number in range(3):
        text = "\n\n".join(f"File {number}. {p} " * 6 for p in PARAGRAPHS)
        (docs / f"rules-{number}.txt").write_text(text, encoding="utf-8")
    upload = data / "uploads" / "main" / "uploaded.txt"
    upload.parent.mkdir(parents=True)
    upload.write_text("An uploaded note about the archive's winter hours.", encoding="utf-8")
    values = _settings_env(data)
    for path in (docs, upload):
        done = CliRunner().invoke(app, ["ingest", str(path), "-c", "main"], env=values)
        assert done.exit_code == 0, done.output
    for question in ("When does the archive open?", "How many seats?"):  # audited
        done = CliRunner().invoke(app, ["search", question, "-c", "main"], env=values)
        assert done.exit_code == 0, done.output
    return values


def _settings_env(data: Path) -> dict[str, str]:
    """Lore's settings for the data directory `data`: the hashing embedder, no chat model."""
    return {
        "LORE_DATA_DIR": str(data),
        "LORE_EMBEDDING_BACKEND": "hashing",
        "LORE_LLM_BACKEND": "openai",
        "LORE_LLM_BASE_URL": "http://127.0.0.1:9/v1",
        "LORE_MIN_FREE_MB": "1",
        "LORE_CONFIG": "",
    }


def doctor(env: dict[str, str], *options: str) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(app, ["doctor", "--json", *options], env=env)
    return result.exit_code, json.loads(result.stdout)


def problems(report: dict[str, object]) -> list[str]:
    findings = report["findings"]
    assert isinstance(findings, list)
    return [f["message"] for f in findings if f["severity"] == "problem"]


def found_then_mended(env: dict[str, str], problem: str, repaired: str) -> None:
    """`lore doctor` reports `problem` (exit 1); `--repair` says `repaired` and leaves it
    healthy (exit 0)."""
    code, report = doctor(env)
    assert code == 1
    assert any(problem in p for p in problems(report)), problems(report)
    code, report = doctor(env, "--repair")
    assert code == 0, report
    done = report["repaired"]
    assert isinstance(done, list)
    assert any(repaired in line for line in done), done


def store(env: dict[str, str]) -> ChromaStore:
    return ChromaStore.embedded(Path(env["LORE_DATA_DIR"]) / "chroma", None)


def sqlite(env: dict[str, str], name: str) -> sqlite3.Connection:
    return closing(sqlite3.connect(Path(env["LORE_DATA_DIR"]) / name))  # type: ignore[return-value]


def first_document(env: dict[str, str]) -> str:
    with sqlite(env, "manifest.sqlite3") as db:
        row = db.execute("SELECT doc_id FROM sources WHERE source LIKE '%rules-0.txt'").fetchone()
    return str(row[0])


def test_a_fresh_data_directory_is_healthy(env: dict[str, str]) -> None:
    code, report = doctor(env)
    assert code == 0, report
    assert problems(report) == []
    assert report["healthy"] is True


def test_a_chunk_removed_from_chroma_is_found_and_indexed_again(env: dict[str, str]) -> None:
    doc_id = first_document(env)
    chroma = store(env)
    chunks = chroma.document_chunks("main", doc_id)
    chroma.delete_chunks("main", [chunks[1].id])
    found_then_mended(env, "lack chunks in the vector store", "indexed rules-0.txt again")
    assert [c.id for c in chroma.document_chunks("main", doc_id)] == [c.id for c in chunks]


def test_a_keyword_row_removed_is_found_and_the_index_rebuilt(env: dict[str, str]) -> None:
    with sqlite(env, "keywords.sqlite3") as db, db:
        db.execute("DELETE FROM chunk_rows WHERE rowid = (SELECT min(rowid) FROM chunk_rows)")
    found_then_mended(env, "lack rows in the keyword index", "rebuilt the keyword index")


def test_a_manifest_row_pointing_at_nothing_is_forgotten(env: dict[str, str]) -> None:
    with sqlite(env, "manifest.sqlite3") as db, db:
        db.execute(
            "INSERT INTO sources (collection, source, doc_id, size, mtime_ns, updated_at, name) "
            "VALUES ('main', '/nowhere/lost.pdf', 'no-such-document', 1, 1, 0, 'lost.pdf')"
        )
    found_then_mended(env, "point at no document", "forgot the source /nowhere/lost.pdf")


def test_a_document_whose_chunks_and_file_are_gone_is_failed_not_half_shown(
    env: dict[str, str], tmp_path: Path
) -> None:
    doc_id = first_document(env)
    chroma = store(env)
    chroma.delete_chunks("main", [c.id for c in chroma.document_chunks("main", doc_id)])
    (tmp_path / "docs" / "rules-0.txt").unlink()
    code, _ = doctor(env, "--repair")
    assert code == 0
    listed = CliRunner().invoke(app, ["docs", "list", "-c", "main", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    [record] = [d for d in json.loads(listed.stdout) if d["doc_id"] == doc_id]
    assert record["status"] == "failed"
    assert record["error_code"] == "chunks_missing"


def test_orphan_chunks_are_removed(env: dict[str, str]) -> None:
    orphan = Chunk("ghost-00000", "ghost", "a ghost passage", "/x", "x", 0, "h")
    writer = ChromaStore.embedded(Path(env["LORE_DATA_DIR"]) / "chroma", HashingEmbedder().name)
    writer.add("main", [orphan], np.ones((1, 256), dtype=np.float32))
    found_then_mended(env, "belong to no document", "removed the orphan chunks of 1 document")
    assert store(env).document_chunks("main", "ghost") == []


def test_a_deleted_upload_is_reported_and_left_to_the_operator(env: dict[str, str]) -> None:
    (Path(env["LORE_DATA_DIR"]) / "uploads" / "main" / "uploaded.txt").unlink()
    code, report = doctor(env, "--repair")
    assert code == 1
    [problem] = problems(report)
    assert "missing from the uploads folder" in problem


def test_a_tampered_audit_log_is_reported_and_never_repaired(env: dict[str, str]) -> None:
    audit = Path(env["LORE_DATA_DIR"]) / "audit.sqlite3"
    with sqlite(env, "audit.sqlite3") as db, db:
        db.execute("DROP TRIGGER entries_no_update")  # as someone covering their tracks would
        db.execute("UPDATE entries SET actor = 'someone-else' WHERE seq = 1")
    before = sha256_of(audit)
    code, report = doctor(env, "--repair")
    assert code == 1
    [problem] = problems(report)
    assert "audit chain broken at entry 1" in problem
    assert sha256_of(audit) == before


def test_an_altered_model_is_reported(env: dict[str, str], tmp_path: Path) -> None:
    source = installed_models_dir() / CHAT_GGUF
    if not source.is_file():
        pytest.skip(f"{source} is not installed")
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(source, models / CHAT_GGUF)
    with (models / CHAT_GGUF).open("r+b") as weights:
        weights.seek(-1, 2)
        last = weights.read(1)
        weights.seek(-1, 2)
        weights.write(bytes([last[0] ^ 0xFF]))
    local = {**env, "LORE_LLM_BACKEND": "llama_cpp", "LORE_MODELS_DIR": str(models)}
    code, report = doctor(local)
    assert code == 1
    [problem] = problems(report)
    assert "is corrupt" in problem


def test_doctor_on_a_new_data_directory_creates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "not-yet"
    env = _settings_env(data)
    code, report = doctor(env)
    assert code == 0, report
    assert not data.exists()  # so `lore restore` may still fill it


def _truncate(path: Path) -> None:
    """Cut a SQLite file in half, its log written back into it first."""
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def test_a_damaged_keyword_index_is_moved_aside_and_rebuilt(env: dict[str, str]) -> None:
    index = Path(env["LORE_DATA_DIR"]) / "keywords.sqlite3"
    _truncate(index)
    code, report = doctor(env)
    assert code == 1
    assert any(str(index) in p for p in problems(report))
    code, report = doctor(env, "--repair")
    assert code == 0, report
    assert index.with_name("keywords.sqlite3.damaged").is_file()
    found = CliRunner().invoke(app, ["search", "reading room seats", "-c", "main"], env=env)
    assert found.exit_code == 0, found.output


def test_a_damaged_audit_log_is_reported_not_a_trace(env: dict[str, str]) -> None:
    audit = Path(env["LORE_DATA_DIR"]) / "audit.sqlite3"
    _truncate(audit)
    before = sha256_of(audit)
    code, report = doctor(env, "--repair")
    assert code == 1
    assert any(str(audit) in p for p in problems(report))
    assert sha256_of(audit) == before
