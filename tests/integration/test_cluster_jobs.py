"""Cluster ingest jobs end to end (issue 16): `lore worker` processes on one PostgreSQL and
one Chroma server. A worker killed with SIGKILL mid-job leaves the job to another, which
finishes it without duplicating a chunk; files given at once to two API processes and
the command line are each indexed once; two workers share one job."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import SecretStr

from ingest.jobs import Job
from ingest.queue import ClusterJobQueue
from rag.components.hashing_embeddings import HashingEmbedder
from rag.config import Settings
from rag.container import Lore
from rag.postgres.claims import PgDocumentClaims
from rag.postgres.database import Database
from tests.fakes import ScriptedGenerator
from tests.servers import REPO, lore_env

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

FINISHED = ("done", "failed", "cancelled")
# Workers that notice a dead one within seconds, not the half-minute of production.
FAST = ["--poll", "0.2", "--heartbeat", "0.5", "--stalled-after", "3", "--sweep", "0.5"]


@pytest.fixture
def settings(tmp_path: Path, database_url: str, chroma_server: tuple[str, int]) -> Settings:
    host, port = chroma_server
    return Settings(
        data_dir=tmp_path / "data",
        models_dir=tmp_path / "models",
        embedding_backend="hashing",
        database_url=SecretStr(database_url),
        chroma_host=host,
        chroma_port=port,
        translate_questions=False,
    )


@pytest.fixture
def lore(settings: Settings) -> Iterator[Lore]:
    lore = Lore(
        settings, embedder_override=HashingEmbedder(), generator_override=ScriptedGenerator()
    )
    yield lore
    lore.close_records()
    lore.database.close()


@pytest.fixture
def collection() -> str:
    """A collection of its own for each test: the Chroma server outlives a test."""
    return f"jobs-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    """The environment of a Lore process of the same cluster."""
    assert settings.database_url is not None
    return {
        **lore_env(settings.data_dir, settings.data_dir / "models"),
        "LORE_DATABASE_URL": settings.database_url.get_secret_value(),
        "LORE_CHROMA_HOST": str(settings.chroma_host),
        "LORE_CHROMA_PORT": str(settings.chroma_port),
        "LORE_EMBEDDING_BACKEND": "hashing",
    }


def corpus(folder: Path, count: int) -> Path:
    """`count` Markdown files of a few paragraphs each, all different."""
    folder.mkdir()
    for number in range(count):
        paragraphs = (
            f"Section {part} of note {number}: the {number * 7919 % 1000}th rule of topic "
            f"{part * 31 % 97} says to copy the data directory before {number} upgrades."
            for part in range(12)
        )
        (folder / f"note-{number:03d}.md").write_text(
            f"# Note {number}\n\n" + "\n\n".join(paragraphs), encoding="utf-8"
        )
    return folder


@contextmanager
def worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A `lore worker` process, stopped (SIGTERM) when the block ends, if still alive."""
    command = [sys.executable, "-m", "api.cli", "worker", "--parse-workers", "1", *FAST]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=sink)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()


def wait_for(queue: ClusterJobQueue, job_id: str, done: int = -1, timeout: float = 240) -> Job:
    """The job once it has `done` files (or, by default, once it has finished)."""
    deadline = time.monotonic() + timeout
    while True:
        job = queue.get(job_id)
        reached = job.status in FINISHED if done < 0 else job.done >= done
        if reached:
            return job
        assert time.monotonic() < deadline, f"job {job_id}: {job.as_json()}"
        time.sleep(0.1)


def stored_chunks(lore: Lore, collection: str) -> tuple[int, int, int]:
    """Chunks in Chroma, in the manifest's indexed documents, and in the keyword index."""
    chroma = sum(lore.store.chunk_counts(collection).values())
    manifest = sum(
        record.chunks
        for record in lore.manifest.documents(collection)
        if record.status == "indexed"
    )
    keywords = sum(lore.keywords.chunk_counts(collection).values())
    return chroma, manifest, keywords


def audited(lore: Lore, operation: str) -> list[str]:
    """The request ids (job ids) of the audit entries of `operation`."""
    return [e["request_id"] for e in lore.audit.export() if e["operation"] == operation]


def test_a_claimed_document_is_refused_to_other_batches_until_let_go(database_url: str) -> None:
    database = Database(database_url)
    claims = PgDocumentClaims(database)
    try:
        with claims.batch("alpha") as first:
            assert first.sole
            assert first.claim("/srv/a.md")
            assert first.claim("/srv/a.md")  # held already
            with claims.batch("alpha") as second, claims.batch("beta") as elsewhere:
                assert not second.sole
                assert elsewhere.sole
                assert not second.claim("/srv/a.md")
                assert elsewhere.claim("/srv/a.md")  # another collection, another document
                assert second.claim("/srv/b.md")
                assert not first.claim("/srv/b.md")
                first.release("/srv/a.md")
                assert second.claim("/srv/a.md")
            assert first.claim("/srv/b.md")  # the second batch ended: its claims went
        with claims.batch("alpha") as alone:
            assert alone.sole
    finally:
        database.close()


@pytest.mark.parametrize(
    ("stop", "seed"),
    [(signal.SIGKILL, 1), (signal.SIGKILL, 2), (signal.SIGTERM, 3)],
    ids=["killed-1", "killed-2", "stopped"],
)
def test_a_worker_killed_mid_job_leaves_it_to_another_and_no_chunk_is_doubled(
    lore: Lore,
    env: dict[str, str],
    tmp_path: Path,
    collection: str,
    stop: signal.Signals,
    seed: int,
) -> None:
    # Seeded points: after a number of files, then a moment into the next ones, so the
    # signal lands mid-document (parsing, embedding or writing) as well as between two.
    rng = random.Random(seed)  # noqa: S311 (test points, not secrets)
    after_files, delay_s = rng.randint(2, 20), rng.uniform(0.0, 0.4)
    folder = corpus(tmp_path / "notes", 40)
    queue = ClusterJobQueue(lore)
    with worker(env, tmp_path / "first.log") as first:
        job = queue.submit(collection, [folder], actor="key:ab12")
        wait_for(queue, job.id, done=after_files)
        time.sleep(delay_s)
        first.send_signal(stop)
        # Stopped, a worker hands its part back before its next file and exits.
        assert first.wait(timeout=60) == (0 if stop == signal.SIGTERM else -signal.SIGKILL)
    cut = queue.get(job.id)
    assert cut.status == "running"
    assert cut.done < cut.total == 40
    with worker(env, tmp_path / "second.log"):
        ended = wait_for(queue, job.id)
    log = (tmp_path / "second.log").read_text(errors="replace")
    assert (ended.status, ended.error) == ("done", None), log[-3000:]
    assert (ended.done, ended.total) == (40, 40)
    assert set(ended.counts) <= {"added", "unchanged"}  # unchanged: written before the kill
    assert sum(ended.counts.values()) == 40
    assert ended.report is not None
    assert (ended.report["files"], ended.report["failed"]) == (40, 0)
    assert lore.manifest.visible_count(collection) == 40
    assert lore.manifest.unfinished(collection) == []
    chroma, manifest, keywords = stored_chunks(lore, collection)
    assert chroma == manifest == keywords > 40
    assert [j.id for j in queue.list() if j.status not in FINISHED] == []
    assert audited(lore, "ingest.jobs.done") == [job.id]


def test_files_given_at_once_to_two_api_processes_and_the_cli_are_each_indexed_once(
    lore: Lore, settings: Settings, env: dict[str, str], tmp_path: Path, collection: str
) -> None:
    folder = corpus(tmp_path / "notes", 24)
    # Two API processes: each its own components and queue over the same database.
    other = Lore(settings, embedder_override=HashingEmbedder())
    try:
        with worker(env, tmp_path / "a.log"), worker(env, tmp_path / "b.log"):
            first = ClusterJobQueue(lore).submit(collection, [folder])
            second = ClusterJobQueue(other).submit(collection, [folder])
            cli = subprocess.run(
                [sys.executable, "-m", "api.cli", "ingest", "--json", "--workers", "1",
                 "-c", collection, str(folder)],
                cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
            )  # fmt: skip
            assert cli.returncode == 0, cli.stderr[-3000:]
            jobs = [wait_for(ClusterJobQueue(lore), job.id) for job in (first, second)]
    finally:
        other.database.close()
    reports = [json.loads(cli.stdout)] + [job.report for job in jobs]
    for report in reports:
        assert report is not None
        assert report["failed"] == report["duplicate"] == 0, report
        assert report["added"] + report["unchanged"] == 24
    assert sum(report["added"] for report in reports) == 24  # each file indexed once
    assert lore.manifest.visible_count(collection) == 24
    chroma, manifest, keywords = stored_chunks(lore, collection)
    assert chroma == manifest == keywords > 24


def test_the_same_bytes_under_two_paths_at_once_are_indexed_once(
    lore: Lore, env: dict[str, str], tmp_path: Path, collection: str
) -> None:
    first = corpus(tmp_path / "notes", 24)
    second = tmp_path / "copies"
    shutil.copytree(first, second)
    command = [sys.executable, "-m", "api.cli", "ingest", "--json", "--workers", "1"]
    runs = [
        subprocess.Popen(
            [*command, "-c", collection, str(folder)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for folder in (first, second)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in outputs]
    reports = [json.loads(out) for out, _ in outputs]
    # Each document's bytes were parsed, embedded and written by one of the two; the
    # other recorded its path as a duplicate of what the first wrote.
    assert sum(report["added"] for report in reports) == 24, reports
    assert sum(report["duplicate"] for report in reports) == 24, reports
    assert lore.manifest.visible_count(collection) == 24
    assert all(len(record.sources) == 2 for record in lore.manifest.documents(collection))
    chroma, manifest, keywords = stored_chunks(lore, collection)
    assert chroma == manifest == keywords > 24


def test_ingest_queue_prints_the_id_of_a_job_the_workers_run(
    lore: Lore, env: dict[str, str], docs: Path, tmp_path: Path, collection: str
) -> None:
    with worker(env, tmp_path / "worker.log"):
        queued = subprocess.run(
            [sys.executable, "-m", "api.cli", "ingest", "--queue", "-c", collection, str(docs)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert queued.returncode == 0, queued.stderr[-3000:]
        ended = wait_for(ClusterJobQueue(lore), queued.stdout.strip())
    assert (ended.status, ended.counts) == ("done", {"added": 2})
    assert ended.actor.startswith("cli:")
    assert len(audited(lore, "ingest.jobs.create")) == 1
    assert audited(lore, "ingest.jobs.done") == [ended.id]


@pytest.mark.slow
def test_two_workers_share_one_job(
    lore: Lore, env: dict[str, str], tmp_path: Path, collection: str
) -> None:
    """Both workers take parts of one job. The speed-up is printed: it needs free cores
    (a worker is two busy processes), so it is measured here, not asserted."""
    seconds = []
    for count in (1, 2):
        folder = corpus(tmp_path / f"notes-{count}", 64)  # 4 parts of 16 files
        queue = ClusterJobQueue(lore)
        with workers_running(env, tmp_path, count):
            job = wait_for(queue, queue.submit(f"{collection}-{count}", [folder]).id, timeout=600)
        assert (job.status, job.done) == ("done", 64)
        assert job.started_at is not None
        assert job.finished_at is not None
        seconds.append(job.finished_at - job.started_at)
        with lore.database.connection() as conn:
            takers = conn.execute(
                "SELECT DISTINCT taken_by FROM ingest_job_parts WHERE job_id = %s", (job.id,)
            ).fetchall()
        assert len(takers) == count
    print(
        f"one job of 64 files: 1 worker {seconds[0]:.1f} s, 2 workers {seconds[1]:.1f} s "
        f"({seconds[0] / seconds[1]:.2f}x) on {os.cpu_count()} cores"
    )


@contextmanager
def workers_running(env: dict[str, str], folder: Path, count: int) -> Iterator[None]:
    """`count` (1 or 2) workers, each with one parsing process."""
    with worker(env, folder / f"{count}-a.log"):
        if count == 1:
            yield
        else:
            with worker(env, folder / f"{count}-b.log"):
                yield
