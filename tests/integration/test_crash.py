"""kill -9 a real `lore ingest` at several points; the manifest and the index must agree."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag.config import Settings
from rag.container import Lore
from tests.servers import REPO

pytestmark = pytest.mark.integration

FILES = 60


def _write_corpus(folder: Path, version: str, files: int = FILES) -> None:
    folder.mkdir(exist_ok=True)
    for i in range(files):
        body = "\n\n".join(
            f"Paragraph {p} of document {i}, {version}. " + "Lore keeps the archive safe. " * 12
            for p in range(6)
        )
        chinese = f"第{i}号文件（{version}）。档案保存在本机，不会离开机器。" * 10
        suffix = ".md" if i % 2 else ".txt"
        (folder / f"doc-{i:03d}{suffix}").write_text(f"# Document {i}\n\n{body}\n\n{chinese}\n")


def _env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORE_")}
    env.update({"LORE_DATA_DIR": str(data), "LORE_EMBEDDING_BACKEND": "hashing"})
    return env


INDEXED = "SELECT count(*) FROM documents WHERE status = 'indexed'"


def _count(data: Path, query: str = INDEXED, *args: float) -> int:
    manifest = data / "manifest.sqlite3"
    if not manifest.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{manifest}?mode=ro", uri=True, timeout=1) as db:
            row = db.execute(query, args).fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0])


def _ingest(corpus: Path, data: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "ingest", str(corpus), "--workers", "1"],
        cwd=REPO,
        env=_env(data),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so the kill reaches the parsers too
    )


def _kill_when(
    process: subprocess.Popen[bytes], data: Path, at_least: int, query: str = INDEXED, *args: float
) -> int:
    """SIGKILL the job (and its parsers) once `query` counts `at_least`; returns the count."""
    deadline = time.monotonic() + 300
    while _count(data, query, *args) < at_least:
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail("the ingest ended before it could be killed")
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return _count(data, query, *args)


def _check_consistent(data: Path) -> tuple[int, int]:
    """Every invariant between manifest and index; returns (indexed docs, chunks in index)."""
    lore = Lore(Settings(data_dir=data, embedding_backend="hashing"))
    try:
        collection = lore.settings.collection
        records = {r.doc_id: r for r in lore.manifest._documents("d.collection = ?", (collection,))}
        if collection not in lore.store.list_collections():
            return 0, 0
        chunk_docs = lore.store.chunk_counts(collection)
        keyword_docs = lore.keywords.chunk_counts(collection)
        for record in records.values():
            if record.status == "indexed":
                # A visible document is complete: every chunk it claims is in both indexes.
                assert chunk_docs.get(record.doc_id, 0) == record.chunks, record
                assert keyword_docs.get(record.doc_id, 0) == record.chunks, record
                assert record.sources, "a visible document is reachable from a file"
        # No chunk in either index belongs to a document the manifest does not know.
        assert set(chunk_docs) <= set(records)
        assert set(keyword_docs) <= set(records)
        # Each file points at exactly one document, so a file is never visible twice.
        with sqlite3.connect(lore.manifest.path) as db:
            pairs = db.execute("SELECT source, doc_id FROM sources").fetchall()
        assert len({s for s, _ in pairs}) == len(pairs)
        assert all(d in records for _, d in pairs)
        indexed = sum(1 for r in records.values() if r.status == "indexed")
        return indexed, sum(chunk_docs.values())
    finally:
        lore.manifest.close()


def test_kill_9_at_several_points_converges_without_duplicates(tmp_path: Path) -> None:
    corpus, data = tmp_path / "corpus", tmp_path / "data"
    _write_corpus(corpus, "first edition")

    killed_at = []
    for point in (1, 20, 45):
        killed_at.append(_kill_when(_ingest(corpus, data), data, point))
        _check_consistent(data)
    assert killed_at == sorted(killed_at)
    assert killed_at[-1] < FILES, "the last kill came before the job finished"

    assert _ingest(corpus, data).wait(timeout=600) == 0
    indexed, chunks = _check_consistent(data)
    assert indexed == FILES
    lore = Lore(Settings(data_dir=data, embedding_backend="hashing"))
    assert chunks == sum(r.chunks for r in lore.manifest.documents("default"))

    # Now every file changes, and the job replacing them is killed half-way.
    edited = time.time()
    _write_corpus(corpus, "second edition")
    replaced = "SELECT count(*) FROM documents WHERE status = 'indexed' AND created_at > ?"
    assert _kill_when(_ingest(corpus, data), data, 25, replaced, edited) < FILES
    _check_consistent(data)
    assert _ingest(corpus, data).wait(timeout=600) == 0
    indexed, chunks = _check_consistent(data)
    assert indexed == FILES
    records = lore.manifest.documents("default")
    assert chunks == sum(r.chunks for r in records)
    texts = lore.store.document_chunks("default", records[0].doc_id)
    assert all("first edition" not in c.text for c in texts)


def test_ctrl_c_stops_cleanly_and_the_next_run_continues(tmp_path: Path) -> None:
    corpus, data = tmp_path / "corpus", tmp_path / "data"
    # Enough files that the job is still running well after the signal, even on a
    # loaded machine where reading the manifest from here is slow.
    files = 4 * FILES
    _write_corpus(corpus, "only edition", files)
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "ingest", str(corpus), "--workers", "1"],
        cwd=REPO,
        env=_env(data),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell starts background jobs with SIGINT ignored, and the ignoring is
        # inherited; Python then never turns SIGINT into KeyboardInterrupt. Give the
        # job the default disposition, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    while _count(data) < 10:
        assert process.poll() is None, "the job ended before Ctrl-C"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Run the same command again to continue" in stderr
    assert "Traceback" not in stderr
    done_before = _count(data)
    assert 10 <= done_before < files
    _check_consistent(data)

    resumed = subprocess.run(
        [sys.executable, "-m", "api.cli", "ingest", str(corpus), "--json"],
        cwd=REPO, env=_env(data), capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["unchanged"] == done_before
    assert report["added"] == files - done_before
    assert _check_consistent(data)[0] == files
