"""A disk that fills mid-ingest, on a real filesystem: a tmpfs of a few megabytes that the
test mounts (root only, as `make test` runs here; skipped elsewhere).

The files that could not be written fail with `disk_full` and stay invisible; what was
indexed before answers as before; once space is freed, `lore doctor` is clean and the
same ingest run again converges. Uploads are refused with 507 while free space is under
`min_free_mb`.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.config import Settings
from rag.container import Lore
from tests.fakes import ScriptedGenerator
from tests.servers import REPO

pytestmark = pytest.mark.integration

CORPUS = REPO.parent / "shared" / "eval" / "xquad" / "docs"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 12 MB tmpfs mounted for this test alone."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small filesystem needs root")
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(folder)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave_kb: int) -> Path:
    """Take all the space of `folder`'s filesystem but `leave_kb` kilobytes."""
    filler = folder / "filler.bin"
    free = shutil.disk_usage(folder).free - leave_kb * 1024
    with filler.open("wb") as handle:
        handle.write(b"\0" * max(free, 0))
    return filler


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    """A `lore` command in a process of its own, as an operator runs one."""
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.returncode, done.stdout


def test_a_disk_filling_mid_ingest_fails_files_not_the_index(
    small_disk: Path, tmp_path: Path
) -> None:
    if not CORPUS.is_dir():
        pytest.skip("../shared/eval is not here")
    env = {
        "LORE_DATA_DIR": str(small_disk / "data"),
        "LORE_EMBEDDING_BACKEND": "hashing",
        "LORE_LLM_BACKEND": "openai",
        "LORE_LLM_BASE_URL": "http://127.0.0.1:9/v1",
        "LORE_MIN_FREE_MB": "0",
        "LORE_CONFIG": "",
    }
    first, rest = tmp_path / "first", tmp_path / "rest"
    first.mkdir()
    rest.mkdir()
    files = sorted(CORPUS.iterdir())
    for path in files[:3]:
        shutil.copy(path, first)
    for path in files[3:]:
        shutil.copy(path, rest)
    code, _ = run(env, "ingest", str(first), "-c", "main")
    assert code == 0
    code, before = run(env, "docs", "list", "-c", "main", "--json")
    assert code == 0

    filler = fill(small_disk, leave_kb=900)
    code, output = run(env, "ingest", str(rest), "-c", "main", "--json")
    report = json.loads(output)
    assert report["failed"] > 0, "the disk should have filled"
    assert {f["code"] for f in report["failures"]} == {"disk_full"}
    assert report["added"] + report["failed"] == len(files) - 3
    code, output = run(env, "search", "Super Bowl 50", "-c", "main")
    assert code == 1  # the vector store can't open on a full disk: said in a sentence
    with closing(sqlite3.connect(small_disk / "data" / "manifest.sqlite3")) as db:
        rows = db.execute("SELECT doc_id, status, chunks FROM documents").fetchall()
    states = {doc_id: (status, chunks) for doc_id, status, chunks in rows}
    for earlier in json.loads(before):  # what was indexed before is as it was
        assert states[earlier["doc_id"]] == ("indexed", earlier["chunks"])
    indexed = sum(status == "indexed" for status, _ in states.values())
    assert indexed == 3 + report["added"]  # what failed is invisible

    filler.unlink()
    code, output = run(env, "doctor", "--json")
    assert code == 0, output
    code, output = run(env, "ingest", str(rest), "-c", "main", "--json")
    again = json.loads(output)
    assert code == 0
    assert again["failed"] == 0
    assert again["added"] == report["failed"]
    code, output = run(env, "doctor", "--json")
    assert code == 0, output
    code, listed = run(env, "docs", "list", "-c", "main", "--json")
    assert len(json.loads(listed)) == len(files)
    assert {d["status"] for d in json.loads(listed)} == {"indexed"}


def test_uploads_are_refused_with_507_under_min_free_mb(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", embedding_backend="hashing", auth=False, min_free_mb=10**9
    )
    lore = Lore(settings, generator_override=ScriptedGenerator())
    with TestClient(create_app(settings, lore)) as client:
        answer = client.post(
            "/v1/documents", files={"file": ("note.txt", b"A short note.", "text/plain")}
        )
    assert answer.status_code == 507
    assert answer.json()["code"] == "disk_full"
    assert "min_free_mb" in answer.json()["message"]
    assert not any((settings.uploads_dir).rglob("*.txt"))
