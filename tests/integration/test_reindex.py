"""`lore reindex`: a collection re-embedded with another model while it answers.

The collections are built with the hashing embedder and re-embedded with
multilingual-e5-small (shipped as a Python package, so no model folder is needed):
two embedders whose vectors differ in every way, so a mix of the two would show.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from ingest.doctor import examine
from ingest.pipeline import build_chunks, chunk_plan, ingest_paths, plan, write
from ingest.reindex import reindex
from rag.components.store import ChromaStore
from rag.config import load_settings
from rag.container import Lore
from rag.governance.access import KeyStore
from tests.servers import REPO, ServerProcess, free_port, lore_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

XQUAD = REPO.parent / "shared" / "eval" / "xquad" / "docs"
NEW_MODEL = "multilingual-e5-small"
QUESTIONS = [
    "Who won Super Bowl 50?",
    "Where is Warsaw's Old Town?",
    "When did the Normans conquer England?",
    "What did Martin Luther write?",
]


@pytest.fixture
def english(tmp_path: Path) -> Path:
    """24 English XQuAD articles (about 480 chunks): more than one page of the copy."""
    if not XQUAD.is_dir():
        pytest.skip("../shared/eval is not here")
    folder = tmp_path / "docs"
    folder.mkdir()
    for path in sorted(XQUAD.glob("en-*"))[:24]:
        shutil.copy(path, folder)
    return folder


def _env(data: Path, models: Path) -> dict[str, str]:
    return {
        **lore_env(data, models),
        "LORE_CONFIG": "",
        "LORE_EMBEDDING_BACKEND": "hashing",
        "LORE_LLM_BACKEND": "openai",
        "LORE_LLM_BASE_URL": "http://127.0.0.1:9/v1",  # nothing here answers: none is asked
        "LORE_RATE_LIMIT_PER_MINUTE": "0",
    }


def _lore(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def _assert_embedded_by(store: ChromaStore, collection: str, lore: Lore) -> int:
    """Every chunk of `collection` holds the vector `lore`'s embedder gives its text now;
    returns how many chunks there are."""
    ids = sorted(store.chunk_ids(collection))
    pairs = store.chunks_with_vectors(collection, ids)
    expected = lore.embedder.embed_documents([chunk.embedding_text() for chunk, _ in pairs])
    stored = np.stack([vector for _, vector in pairs])
    np.testing.assert_allclose(stored, expected, atol=2e-3)
    return len(ids)


# A reindex that dies by SIGKILL once the copy holds its first page of chunks.
_DIES_HALF_WAY = """
import os, signal
from ingest.reindex import reindex
from rag.config import load_settings
from rag.container import Lore

def progress(done, total):
    if done > 0:
        os.kill(os.getpid(), signal.SIGKILL)

reindex(Lore(load_settings()), "main", "multilingual-e5-small", progress=progress)
"""


def test_a_reindex_killed_half_way_resumes_and_switches_whole(
    tmp_path: Path, english: Path
) -> None:
    env = _env(tmp_path / "data", tmp_path / "models")
    added = _lore(env, "ingest", str(english), "--collection", "main")
    assert added.returncode == 0, added.stderr
    before = _lore(env, "search", QUESTIONS[0], "-c", "main", "--json")

    killed = subprocess.run(
        [sys.executable, "-c", _DIES_HALF_WAY], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=600, check=False,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    # Killed mid-copy: the collection answers as before, and doctor says what is left.
    assert _lore(env, "search", QUESTIONS[0], "-c", "main", "--json").stdout == before.stdout
    checked = _lore(env, "doctor")
    assert checked.returncode == 0, checked.stdout
    assert "a reindex to multilingual-e5-small stopped before its switch" in checked.stdout

    resumed = _lore(env, "reindex", "--embedding-model", NEW_MODEL, "-c", "main", "--json")
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["switched"], report
    assert report["resumed"], report
    assert report["previous"] == "hashing-test"
    assert report["embedder"] == NEW_MODEL
    # The first page was kept: only the rest was embedded again.
    assert 0 < report["embedded"] <= report["chunks"] - 256, report

    checked = _lore(env, "doctor", "--json")
    assert checked.returncode == 0, checked.stdout
    assert not [f for f in json.loads(checked.stdout)["findings"] if f["check"] == "reindex"]
    settings = load_settings(data_dir=tmp_path / "data", embedding_backend="hashing")
    lore = Lore(settings)
    new = lore.with_embedding_model(NEW_MODEL)
    store = ChromaStore.embedded(settings.chroma_dir, None)
    try:
        assert store.embedder_of("main") == NEW_MODEL
        assert store.staged() == {}
        assert _assert_embedded_by(store, "main", new) == report["chunks"]
        state = examine(lore).collections["main"]
        assert state.documents == 24
    finally:
        store.close()
    after = _lore(env, "search", QUESTIONS[0], "-c", "main", "--json")
    assert json.loads(after.stdout)[0]["path"].endswith("Super_Bowl_50.md")
    again = _lore(env, "reindex", "--embedding-model", NEW_MODEL, "-c", "main")
    assert "nothing to do" in again.stdout


def _search(url: str, headers: dict[str, str], question: str) -> tuple[int, list[object]]:
    answer = httpx.post(
        f"{url}/v1/search", json={"question": question, "collection": "main"},
        headers=headers, timeout=60,
    )  # fmt: skip
    if answer.status_code != 200:
        return answer.status_code, [answer.text]
    return 200, [(row["chunk_id"], round(row["score"], 4)) for row in answer.json()]


def test_queries_during_a_reindex_see_the_old_collection_or_the_new_never_a_mix(
    tmp_path: Path, english: Path
) -> None:
    data = tmp_path / "data"
    env = _env(data, tmp_path / "models")
    assert _lore(env, "ingest", str(english), "--collection", "main").returncode == 0
    _, admin = KeyStore(data / "keys.sqlite3").create("admin", "admin")
    _, reader = KeyStore(data / "keys.sqlite3").create("reader", "reader", ["main"])
    headers = {"Authorization": f"Bearer {admin}"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = ServerProcess("lore serve", tmp_path / "server.log")
    server.spawn(
        [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env,
    )
    reindex_url = f"{url}/v1/collections/main/reindex"
    seen: list[tuple[int, int, list[object]]] = []  # question, status, results
    try:
        server.wait_until(lambda: _answers(f"{url}/healthz"), 120)
        before = [_search(url, headers, q) for q in QUESTIONS]
        assert all(status == 200 and rows for status, rows in before)

        # What is refused, and said so.
        as_reader = {"Authorization": f"Bearer {reader}"}
        body = {"embedding_model": NEW_MODEL}
        assert httpx.post(reindex_url, json=body, headers=as_reader).status_code == 403
        missing = httpx.post(f"{url}/v1/collections/nope/reindex", json=body, headers=headers)
        assert missing.status_code == 404
        chat = {"embedding_model": "qwen2.5-coder-0.5b-instruct"}
        refused = httpx.post(reindex_url, json=chat, headers=headers)
        assert refused.status_code == 422
        assert "chat model" in refused.json()["message"]
        assert httpx.get(reindex_url, headers=headers).status_code == 404

        stop = threading.Event()

        def ask() -> None:
            number = 0
            while not stop.is_set():
                question = number % len(QUESTIONS)
                seen.append((question, *_search(url, headers, QUESTIONS[question])))
                number += 1

        asker = threading.Thread(target=ask)
        asker.start()
        started = httpx.post(reindex_url, json=body, headers=headers, timeout=120)
        assert started.status_code == 202, started.text
        assert started.json()["state"] == "running"
        again = httpx.post(reindex_url, json=body, headers=headers, timeout=120)
        assert again.status_code == 503  # one at a time
        deadline = time.monotonic() + 400
        while (task := httpx.get(reindex_url, headers=headers).json())["state"] == "running":
            assert time.monotonic() < deadline, "the reindex did not finish"
            time.sleep(0.5)
        during = len(seen)
        time.sleep(2)  # and a few queries after the switch
        stop.set()
        asker.join()
        after = [_search(url, headers, q) for q in QUESTIONS]
    finally:
        server.terminate()
    assert task["state"] == "switched", task
    assert task["report"]["embedder"] == NEW_MODEL
    assert task["done"] == task["total"] == task["report"]["chunks"]
    assert during > 10, "too few queries ran during the reindex to show anything"
    assert before != after  # the two embedders rank differently
    for question, status, rows in seen:
        assert status == 200, rows
        assert (status, rows) in (before[question], after[question]), (question, rows)
    # Both were seen: queries went on through the switch.
    assert any((s, r) == before[q] for q, s, r in seen)
    assert any((s, r) == after[q] and before[q] != after[q] for q, s, r in seen)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_documents_written_during_a_reindex_end_up_in_the_new_collection(
    tmp_path: Path, english: Path
) -> None:
    settings = load_settings(
        data_dir=tmp_path / "data", embedding_backend="hashing", models_dir=tmp_path / "models"
    )
    lore = Lore(settings)
    first, later = sorted(english.iterdir())[:12], sorted(english.iterdir())[12:18]
    ingest_paths(lore, first, "main")
    outcome: dict[str, object] = {}
    copying = threading.Event()

    def run() -> None:
        try:
            outcome["report"] = reindex(
                lore, "main", NEW_MODEL, progress=lambda done, total: copying.set()
            )
        except Exception as exc:  # the assertion below says what
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    assert copying.wait(120)
    # Written while the copy is made: these go into the old collection, then are caught up.
    results = ingest_paths(lore, later[:5], "main")
    assert [r.status for r in results] == ["added"] * 5
    worker.join(600)
    assert "error" not in outcome, outcome
    new = lore.for_collection("main")
    assert new.embedder_name == NEW_MODEL

    # A document whose writer chose the old embedder before the switch is written anew.
    path = later[5]
    todo = plan(lore.root, path, "main", str(path.resolve()))
    assert not isinstance(todo, type(results[0]))
    title, chunks = build_chunks(path, todo.doc_id, todo.sha256, todo.source, chunk_plan(lore))
    written = write(lore.root, "main", todo, title, chunks)
    assert written.status == "added", written

    store = new.store
    assert isinstance(store, ChromaStore)
    count = _assert_embedded_by(store, "main", new)
    report = examine(lore)
    problems = [f for f in report.findings if f.severity != "ok" and f.check != "models"]
    assert not problems  # (no chat model is installed here: its absence is not at issue)
    state = report.collections["main"]
    assert state.documents == 18
    assert count == sum(d.chunks for d in lore.manifest.documents("main"))
    assert not state.short_in_store
    assert not state.orphans_in_store
