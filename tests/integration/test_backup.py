"""`lore backup` taken from a live `lore serve` while it ingests and answers, and
`lore restore` of it into a fresh data directory on "another machine".

The server runs the hashing embedder: what is under test is that the stores are copied
consistently, which no model changes, and it keeps the ingest fast enough to run here.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from rag.governance.access import KeyStore
from rag.models import sha256_of
from tests.servers import REPO, ServerProcess, free_port, lore_env
from tests.servers import models_dir as models_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SHARED = REPO.parent / "shared" / "eval"
QUESTIONS = [
    "Who won Super Bowl 50?",
    "Where is Warsaw's Old Town?",
    "When did the Normans conquer England?",
    "What is the capital of Poland?",
    "Which team lost the Super Bowl?",
]


def _env(data_dir: Path, models: Path) -> dict[str, str]:
    return {**lore_env(data_dir, models), "LORE_EMBEDDING_BACKEND": "hashing"}


def _lore(
    env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def _search_ids(env: dict[str, str]) -> list[list[tuple[str, float]]]:
    """For each question, the chunk ids `lore search` returns in collection main, with scores."""
    results = []
    for question in QUESTIONS:
        done = _lore(env, "search", question, "--collection", "main", "--json")
        assert done.returncode == 0, done.stderr
        results.append(
            [(row["chunk_id"], round(row["score"], 5)) for row in json.loads(done.stdout)]
        )
    return results


def test_backup_during_ingest_and_queries_restores_the_same_answers(
    tmp_path: Path, models_dir: Path
) -> None:
    if not (SHARED / "cmrc2018-trial" / "docs").is_dir():
        pytest.skip("../shared/eval is not here")
    models = models_dir  # the server loads the chat model; the embedder needs none
    data = tmp_path / "data"
    env = _env(data, models)
    english = SHARED / "xquad" / "docs"
    added = _lore(env, "ingest", str(english), "--collection", "main")
    assert added.returncode == 0, added.stderr
    before = _search_ids(env)
    assert all(before), "every question should find passages"

    _, key = KeyStore(data / "keys.sqlite3").create("tests", "admin")
    headers = {"Authorization": f"Bearer {key}"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = ServerProcess("lore serve", tmp_path / "server.log")
    server.spawn(
        [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        {**env, "LORE_RATE_LIMIT_PER_MINUTE": "0"},  # the test asks as fast as it can
    )
    try:
        server.wait_until(lambda: _answers(f"{url}/healthz"), 120)
        chinese = sorted((SHARED / "cmrc2018-trial" / "docs").iterdir())
        files = [("files", (p.name, p.read_bytes())) for p in chinese]
        created = httpx.post(
            f"{url}/v1/ingest/jobs", files=files, data={"collection": "incoming"},
            headers=headers, timeout=120,
        )  # fmt: skip
        assert created.status_code == 202, created.text
        job_url = f"{url}/v1/ingest/jobs/{created.json()['id']}"

        # Queries stream throughout; every one must be answered.
        statuses: list[int] = []
        stop = threading.Event()

        def ask() -> None:
            number = 0
            while not stop.is_set():
                body = {"question": QUESTIONS[number % len(QUESTIONS)], "collection": "main"}
                answer = httpx.post(f"{url}/v1/search", json=body, headers=headers, timeout=60)
                statuses.append(answer.status_code)
                number += 1

        asker = threading.Thread(target=ask)
        asker.start()
        deadline = time.monotonic() + 300
        while httpx.get(job_url, headers=headers).json()["done"] < 10:
            assert time.monotonic() < deadline, "the ingest job did not start"
            time.sleep(0.2)
        made = _lore(env, "backup", str(tmp_path / "backup"), "--json")
        job_after_backup = httpx.get(job_url, headers=headers).json()
        while httpx.get(job_url, headers=headers).json()["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline, "the ingest job did not finish"
            time.sleep(0.5)
        stop.set()
        asker.join()
        job = httpx.get(job_url, headers=headers).json()
    finally:
        server.terminate()
    assert made.returncode == 0, made.stdout + made.stderr
    report = json.loads(made.stdout)
    # The backup really was taken mid-ingest: the job was still running after it.
    assert job_after_backup["status"] == "running", job_after_backup
    assert job["status"] == "done", job
    assert statuses
    assert set(statuses) == {200}, sorted(set(statuses))
    assert report["collections"]["main"]["documents"] == 48
    assert 0 < report["collections"].get("incoming", {}).get("documents", 0) < len(chinese)

    # "Another machine": a fresh data directory, the backup moved elsewhere.
    moved = tmp_path / "elsewhere" / "backup"
    shutil.copytree(tmp_path / "backup", moved)
    restored_env = _env(tmp_path / "restored", models)
    put_back = _lore(restored_env, "restore", str(moved))
    assert put_back.returncode == 0, put_back.stdout + put_back.stderr
    assert _search_ids(restored_env) == before
    verified = _lore(restored_env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout
    assert "intact" in verified.stdout
    listed = _lore(restored_env, "docs", "list", "--collection", "incoming", "--json")
    documents = json.loads(listed.stdout)
    assert len(documents) == report["collections"]["incoming"]["documents"]
    assert all(d["status"] == "indexed" for d in documents)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_a_backup_of_a_newer_release_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from api.cli import app

    data, docs = tmp_path / "data", tmp_path / "docs"
    docs.mkdir()
    (docs / "note.txt").write_text("A note about the archive's opening hours.", encoding="utf-8")
    env = {"LORE_DATA_DIR": str(data), "LORE_EMBEDDING_BACKEND": "hashing", "LORE_CONFIG": ""}
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(docs)], env=env).exit_code == 0
    assert runner.invoke(app, ["backup", str(tmp_path / "b")], env=env).exit_code == 0
    backup = tmp_path / "b"
    with closing(sqlite3.connect(backup / "manifest.sqlite3")) as db:
        db.execute("PRAGMA user_version = 99")
    listing = json.loads((backup / "lore-backup.json").read_text())
    entry = listing["files"]["manifest.sqlite3"]
    entry["sha256"] = sha256_of(backup / "manifest.sqlite3")
    entry["size"] = (backup / "manifest.sqlite3").stat().st_size
    (backup / "lore-backup.json").write_text(json.dumps(listing))
    target = {**env, "LORE_DATA_DIR": str(tmp_path / "fresh")}
    refused = runner.invoke(app, ["restore", str(backup)], env=target)
    assert refused.exit_code == 1
    assert "newer release" in str(refused.exception)
    assert not (tmp_path / "fresh").exists() or not any((tmp_path / "fresh").iterdir())
