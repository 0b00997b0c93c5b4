"""An ingest job while PostgreSQL, then the Chroma server, restarts under it (issue 16):
the job completes or fails with a sentence, and a rerun converges with exact counts."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from ingest.jobs import Job
from ingest.queue import ClusterJobQueue
from rag.components.hashing_embeddings import HashingEmbedder
from rag.config import Settings
from rag.container import Lore
from tests.fakes import ScriptedGenerator
from tests.integration.test_cluster_jobs import FAST, FINISHED, corpus, stored_chunks
from tests.servers import REPO, ChromaServer, PostgresServer, lore_env

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


@pytest.fixture
def chroma(tmp_path: Path) -> Iterator[ChromaServer]:
    server = ChromaServer(tmp_path / "chroma")
    server.folder.mkdir()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def lore(tmp_path: Path, database_url: str, chroma: ChromaServer) -> Iterator[Lore]:
    settings = Settings(
        data_dir=tmp_path / "data",
        models_dir=tmp_path / "models",
        embedding_backend="hashing",
        database_url=SecretStr(database_url),
        chroma_host=chroma.host,
        chroma_port=chroma.port,
        translate_questions=False,
    )
    lore = Lore(
        settings, embedder_override=HashingEmbedder(), generator_override=ScriptedGenerator()
    )
    yield lore
    lore.database.close()


class Supervised:
    """`lore worker`, started again whenever it exits, as systemd's Restart=always does."""

    def __init__(self, env: dict[str, str], log: Path):
        self.command = [sys.executable, "-m", "api.cli", "worker", "--parse-workers", "1", *FAST]
        self.env, self.log, self.starts = env, log, 0
        self.process: subprocess.Popen[bytes] | None = None

    def tend(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self.starts += 1
            with self.log.open("ab") as sink:
                self.process = subprocess.Popen(
                    self.command, cwd=REPO, env=self.env, stdout=sink, stderr=sink
                )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()


def wait(
    queue: ClusterJobQueue, job_id: str, worker: Supervised, done: int = -1, timeout: float = 300
) -> Job:
    """The job once it has `done` files, or once it has finished; the worker is tended.
    PostgreSQL may be away for a moment: reading the job is retried."""
    deadline = time.monotonic() + timeout
    while True:
        worker.tend()
        try:
            job = queue.get(job_id)
        except Exception:  # the database restarting: look again
            job = None
        if job is not None and (job.status in FINISHED or 0 <= done <= job.done):
            return job
        assert time.monotonic() < deadline, job.as_json() if job else "no job"
        time.sleep(0.2)


def test_restarts_of_postgres_then_chroma_mid_ingest_end_in_exact_counts(
    lore: Lore, postgres_server: PostgresServer, chroma: ChromaServer, tmp_path: Path
) -> None:
    assert lore.settings.database_url is not None
    env = {
        **lore_env(lore.settings.data_dir, lore.settings.data_dir / "models"),
        "LORE_DATABASE_URL": lore.settings.database_url.get_secret_value(),
        "LORE_CHROMA_HOST": chroma.host,
        "LORE_CHROMA_PORT": str(chroma.port),
        "LORE_EMBEDDING_BACKEND": "hashing",
    }
    collection = f"outages-{uuid.uuid4().hex[:8]}"
    folder = corpus(tmp_path / "notes", 120)
    queue = ClusterJobQueue(lore)
    worker = Supervised(env, tmp_path / "worker.log")
    outages = [postgres_server.restart, chroma.restart]
    try:
        for outage in outages:
            job = queue.submit(collection, [folder], actor="cli")
            # Mid-ingest: a few files into this run (the second run skips what the first
            # wrote, so it counts from where the first stopped).
            wait(queue, job.id, worker, done=3)
            outage()
            ended = wait(queue, job.id, worker)
            if ended.status != "done":
                # A job may fail for an outage, but it says why in a sentence.
                assert ended.status == "failed", ended.as_json()
                assert ended.error
                assert "Traceback" not in ended.error
        rerun = wait(queue, queue.submit(collection, [folder], actor="cli").id, worker)
    finally:
        worker.stop()
    log = (tmp_path / "worker.log").read_text(errors="replace")[-4000:]
    assert rerun.status == "done", (rerun.as_json(), log)
    assert lore.manifest.visible_count(collection) == 120
    assert lore.manifest.unfinished(collection) == []
    chroma_chunks, manifest_chunks, keyword_chunks = stored_chunks(lore, collection)
    assert chroma_chunks == manifest_chunks == keyword_chunks > 120
    assert [j.id for j in queue.list() if j.status not in FINISHED] == []
