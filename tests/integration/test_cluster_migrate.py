"""`lore migrate` moves an embedded installation into cluster mode (issue 16): documents,
keys, audit entries and feedback; then the audit chain verifies and retrieval gives the
same passages. The hashing embedder stands in for a model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from rag.config import Settings
from rag.container import Lore
from rag.governance.audit import AuditLog
from rag.governance.feedback import FeedbackStore
from tests.servers import REPO

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

DEMO = REPO / "demo"
QUESTIONS = [
    "What does Lore do with documents?",
    "Lore 适合哪些单位？",
    "How are backups made?",
    "谁可以上传文件",
]


def lore_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORE_")}
    env.update(LORE_DATA_DIR=str(data_dir), LORE_EMBEDDING_BACKEND="hashing")
    run = subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run


def test_migrate_moves_everything_and_retrieval_is_the_same(
    tmp_path: Path, database_url: str, chroma_server: tuple[str, int]
) -> None:
    data = tmp_path / "data"
    lore_cli(data, "ingest", str(DEMO), "--collection", "handbook")
    lore_cli(data, "ingest", str(DEMO / "faq-zh.txt"), "--collection", "faq")
    created = lore_cli(data, "keys", "create", "reader-one", "--role", "reader", "-c", "faq")
    secret = created.stdout.split("Key (shown only now): ")[1].strip()
    lore_cli(data, "keys", "create", "an-admin", "--role", "admin")
    feedback = FeedbackStore(data / "feedback.sqlite3")
    feedback.add(
        actor="key:x", collection="faq", question="q?", answer="a", chunk_ids=["c1"], rating="up"
    )
    feedback.close()
    audit = AuditLog(data / "audit.sqlite3")
    for number in range(5):
        audit.record(actor="cli", operation="query", status=200, question=f"問題 {number}")
    audit.close()

    host, port = chroma_server
    args = ["migrate", "--database-url", database_url, "--chroma-host", host]
    moved = lore_cli(data, *args, "--chroma-port", str(port), "--json")
    report = json.loads(moved.stdout.strip().splitlines()[-1])
    assert report["ok"], report
    assert report["keys"] == 2
    assert report["feedback"] == 1
    assert report["audit_entries"] >= 5
    assert set(report["collections"]) == {"handbook", "faq"}
    assert report["documents"] >= 5

    again = json.loads(lore_cli(data, *args, "--chroma-port", str(port), "--json").stdout)
    assert again["ok"]
    assert again["documents"] == report["documents"]

    embedded = Lore(Settings(data_dir=data, embedding_backend="hashing", min_score=0.0))
    cluster = Lore(
        Settings(
            data_dir=tmp_path / "unused",
            embedding_backend="hashing",
            min_score=0.0,
            database_url=SecretStr(database_url),
            chroma_host=host,
            chroma_port=port,
        )
    )
    assert cluster.audit.verify().ok
    assert cluster.audit.verify().entries == embedded.audit.verify().entries
    assert [k.key_id for k in cluster.keys.list()] == [k.key_id for k in embedded.keys.list()]
    principal = cluster.keys.authenticate(secret)
    assert principal is not None
    assert principal.collections == frozenset({"faq"})
    assert list(cluster.feedback.export()) == list(embedded.feedback.export())
    for collection in ("handbook", "faq"):
        assert cluster.manifest.documents(collection) == embedded.manifest.documents(collection)
        assert cluster.keywords.chunk_counts(collection) == embedded.keywords.chunk_counts(
            collection
        )
        assert cluster.store.chunk_counts(collection) == embedded.store.chunk_counts(collection)
        for question in QUESTIONS:
            here = embedded.retriever.search(question, collection, 5)
            there = cluster.retriever.search(question, collection, 5)
            assert [p.chunk.id for p in there] == [p.chunk.id for p in here], question
            assert [round(p.score, 4) for p in there] == [round(p.score, 4) for p in here]


def _refused(data: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORE_")}
    env.update(LORE_DATA_DIR=str(data), LORE_EMBEDDING_BACKEND="hashing")
    run = subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    said = run.stdout + run.stderr
    assert run.returncode != 0, said
    assert "Traceback" not in said, said
    return said


def test_migrate_refuses_what_it_could_not_copy_faithfully_and_writes_nothing(
    tmp_path: Path, database_url: str, chroma_server: tuple[str, int]
) -> None:
    host, port = chroma_server
    args = ["migrate", "--database-url", database_url, "--chroma-host", host]
    args += ["--chroma-port", str(port)]
    # An audit entry holding NUL: its hash could not be kept in PostgreSQL.
    nul = tmp_path / "nul"
    audit = AuditLog(nul / "audit.sqlite3")
    audit.record(actor="cli", operation="query", status=200, question="a\x00b")
    audit.close()
    assert "NUL character" in _refused(nul, *args)

    # A cluster whose audit log has entries of its own: two chains cannot be joined.
    theirs = Lore(
        Settings(
            data_dir=tmp_path / "cluster",
            embedding_backend="hashing",
            database_url=SecretStr(database_url),
            chroma_host=host,
            chroma_port=port,
        )
    )
    theirs.audit.record(actor="key:x", operation="query", status=200)
    ours = tmp_path / "ours"
    audit = AuditLog(ours / "audit.sqlite3")
    audit.record(actor="cli", operation="query", status=200)
    audit.close()
    assert "already holds entries of its own" in _refused(ours, *args)
    assert theirs.audit.verify().entries == 1  # nothing was added to it
    assert theirs.keys.list() == []
    theirs.database.close()
