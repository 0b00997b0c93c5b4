"""The `JobQueue` contract (ingest/jobs.py): how an ingest job's status moves, and what
cancel, list and close do to it.

A new queue passes by subclassing `JobQueueContract` and giving the `jobs` fixture: an
empty queue over the suite's `lore` that runs one job at a time (a distributed queue:
one worker), takes at most `WAITING` waiting jobs, and passes every file a job handles
through the suite's `turnstile`: calls it with the file's `IngestResult`, in the thread
that handled the file, and breaks the job if it raises. Here: `JobManager` (one machine,
jobs in jobs.sqlite3) and `ClusterJobQueue` (PostgreSQL, with one worker on a thread).

Most jobs here name files that are not there: each is one file that fails at once,
without a parser, so that a job is as quick as the queue around it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from ingest.batch import BatchOptions
from ingest.jobs import Job, JobManager, JobQueue
from rag.components.hashing_embeddings import HashingEmbedder
from rag.components.store import ChromaStore
from rag.config import Settings
from rag.container import Lore
from rag.errors import Busy, InvalidInput, NotFound
from tests.fakes import ScriptedGenerator

pytestmark = pytest.mark.contract

WAITING = 2
TIMEOUT = 30.0  # seconds that any wait may take before the test fails
FINISHED = ("done", "failed", "cancelled")


class Turnstile:
    """Where the test holds jobs: every file a job handles passes through it, and while
    it is held, waits there until the test lets it through."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._held = False
        self._passes = 0  # files that may go through while it is held
        self.arrived = 0  # files that have reached it
        self.breaks: Exception | None = None  # raised at every file, to break its job

    def hold(self) -> None:
        with self._changed:
            self._held = True

    def let_through(self, files: int = 1) -> None:
        with self._changed:
            self._passes += files
            self._changed.notify_all()

    def open(self) -> None:
        with self._changed:
            self._held = False
            self._changed.notify_all()

    def wait_for(self, arrived: int) -> None:
        """Return once `arrived` files in all have reached the turnstile."""
        with self._changed:
            reached = self._changed.wait_for(lambda: self.arrived >= arrived, TIMEOUT)
            assert reached, f"{self.arrived} files reached the turnstile, not {arrived}"

    def __call__(self, result: object) -> None:
        with self._changed:
            self.arrived += 1
            self._changed.notify_all()
            if self.breaks is not None:
                raise self.breaks
            passed = self._changed.wait_for(lambda: not self._held or self._passes > 0, TIMEOUT)
            if not passed:
                raise RuntimeError("the test never let this file through")
            if self._held:
                self._passes -= 1


def missing(folder: Path, count: int) -> list[Path]:
    return [folder / f"missing-{number}.md" for number in range(count)]


def finished(jobs: JobQueue, job_id: str) -> Job:
    """The job once it has finished (the test fails if it takes TIMEOUT)."""
    deadline = time.monotonic() + TIMEOUT
    while (job := jobs.get(job_id)).status not in FINISHED:
        assert time.monotonic() < deadline, f"job {job_id} is still {job.status}"
        time.sleep(0.01)
    return job


class JobQueueContract:
    """What every `JobQueue` promises. `jobs` gives an empty one that holds its files
    at `turnstile`."""

    @pytest.fixture
    def turnstile(self) -> Turnstile:
        return Turnstile()

    @pytest.fixture
    def jobs(self, lore: Lore, turnstile: Turnstile) -> JobQueue:
        raise NotImplementedError("a subclass gives the job queue to test")

    @pytest.fixture(autouse=True)
    def _open_before_closing(self, jobs: JobQueue, turnstile: Turnstile) -> Iterator[None]:
        """Lets held files go before `jobs` is closed, so that closing never waits."""
        yield
        turnstile.open()

    def test_a_job_ingests_its_files_and_ends_done_with_its_report(
        self, jobs: JobQueue, lore: Lore, docs: Path, turnstile: Turnstile
    ) -> None:
        job = jobs.submit("alpha", [docs], actor="key:ab12cd")
        assert (job.collection, job.actor) == ("alpha", "key:ab12cd")
        assert jobs.get(job.id).id == job.id
        ended = finished(jobs, job.id)
        assert (ended.status, ended.error) == ("done", None)
        assert (ended.done, ended.total, ended.counts) == (2, 2, {"added": 2})
        assert ended.report is not None
        assert (ended.report["added"], ended.report["interrupted"]) == (2, False)
        assert ended.report["chunks"] > 0
        assert ended.started_at is not None
        assert ended.finished_at is not None
        assert ended.created_at <= ended.started_at <= ended.finished_at
        assert set(lore.store.chunk_counts("alpha")) == set(ended.doc_ids)
        assert len(ended.doc_ids) == 2
        assert turnstile.arrived == 2

    def test_files_that_cannot_be_read_are_counted_and_the_job_is_done(
        self, jobs: JobQueue, tmp_path: Path
    ) -> None:
        ended = finished(jobs, jobs.submit("alpha", missing(tmp_path, 2)).id)
        assert (ended.status, ended.error) == ("done", None)
        assert (ended.done, ended.total, ended.counts) == (2, 2, {"failed": 2})
        assert ended.report is not None
        assert [f["source"] for f in ended.report["failures"]] == ["missing-0.md", "missing-1.md"]

    def test_a_job_that_breaks_fails_with_a_sentence_fit_to_show(
        self, jobs: JobQueue, tmp_path: Path, turnstile: Turnstile
    ) -> None:
        turnstile.breaks = RuntimeError(f"{tmp_path}/secret: boom")
        ended = finished(jobs, jobs.submit("alpha", missing(tmp_path, 1)).id)
        assert ended.status == "failed"
        assert ended.error
        assert "secret" not in ended.error
        assert ended.finished_at is not None
        turnstile.breaks = InvalidInput("The collection is being rebuilt.")
        ended = finished(jobs, jobs.submit("alpha", missing(tmp_path, 1)).id)
        assert (ended.status, ended.error) == ("failed", "The collection is being rebuilt.")

    def test_a_job_waits_while_another_runs(
        self, jobs: JobQueue, tmp_path: Path, turnstile: Turnstile
    ) -> None:
        turnstile.hold()
        first = jobs.submit("alpha", missing(tmp_path, 2))
        turnstile.wait_for(1)
        second = jobs.submit("alpha", missing(tmp_path, 1))
        running, waiting = jobs.get(first.id), jobs.get(second.id)
        assert (running.status, waiting.status) == ("running", "queued")
        assert running.started_at is not None
        assert (waiting.started_at, waiting.finished_at, waiting.report) == (None, None, None)
        turnstile.open()
        assert finished(jobs, first.id).status == "done"
        assert finished(jobs, second.id).status == "done"

    def test_a_waiting_job_is_cancelled_at_once_and_never_runs(
        self, jobs: JobQueue, tmp_path: Path, turnstile: Turnstile
    ) -> None:
        turnstile.hold()
        first = jobs.submit("alpha", missing(tmp_path, 1))
        turnstile.wait_for(1)
        second = jobs.submit("alpha", missing(tmp_path, 1))
        assert jobs.cancel(second.id).status == "cancelled"
        cancelled = jobs.get(second.id)
        assert cancelled.status == "cancelled"
        assert cancelled.finished_at is not None
        turnstile.open()
        assert finished(jobs, first.id).status == "done"
        # One more job through the queue gives the worker its chance to (wrongly) run it.
        assert finished(jobs, jobs.submit("alpha", missing(tmp_path, 1)).id).status == "done"
        never_ran = jobs.get(second.id)
        assert never_ran.status == "cancelled"
        assert (never_ran.started_at, never_ran.done, never_ran.report) == (None, 0, None)
        assert turnstile.arrived == 2

    def test_a_running_job_stops_before_its_next_file(
        self, jobs: JobQueue, tmp_path: Path, turnstile: Turnstile
    ) -> None:
        turnstile.hold()
        job = jobs.submit("alpha", missing(tmp_path, 5))
        turnstile.wait_for(1)
        assert jobs.cancel(job.id).status in ("running", "cancelled")
        turnstile.open()
        ended = finished(jobs, job.id)
        assert ended.status == "cancelled"
        assert (ended.done, ended.total, ended.counts) == (1, 5, {"failed": 1})
        assert ended.report is not None
        assert ended.report["interrupted"] is True
        assert turnstile.arrived == 1

    def test_cancel_of_a_finished_job_changes_nothing(
        self, jobs: JobQueue, tmp_path: Path, turnstile: Turnstile
    ) -> None:
        done = finished(jobs, jobs.submit("alpha", missing(tmp_path, 1)).id).as_json()
        turnstile.breaks = RuntimeError("boom")
        failed = finished(jobs, jobs.submit("alpha", missing(tmp_path, 1)).id).as_json()
        turnstile.breaks = None
        turnstile.hold()
        stopped = jobs.submit("alpha", missing(tmp_path, 2))
        turnstile.wait_for(3)
        jobs.cancel(stopped.id)
        turnstile.open()
        cancelled = finished(jobs, stopped.id).as_json()
        for before in (done, failed, cancelled):
            assert jobs.cancel(before["id"]).as_json() == before
            assert jobs.get(before["id"]).as_json() == before

    def test_unknown_ids_are_not_found(self, jobs: JobQueue) -> None:
        with pytest.raises(NotFound):
            jobs.get("nope")
        with pytest.raises(NotFound):
            jobs.cancel("nope")

    def test_list_gives_every_job_newest_first(
        self, jobs: JobQueue, tmp_path: Path, turnstile: Turnstile
    ) -> None:
        assert jobs.list() == []
        turnstile.hold()
        ids = [jobs.submit("alpha", missing(tmp_path, 1)).id]
        turnstile.wait_for(1)
        ids += [jobs.submit("beta", missing(tmp_path, 1)).id for _ in range(WAITING)]
        assert len(set(ids)) == len(ids)
        listed = jobs.list()
        assert [j.id for j in listed] == ids[::-1]
        assert [j.status for j in listed] == ["queued"] * WAITING + ["running"]
        turnstile.open()
        for job_id in ids:
            finished(jobs, job_id)
        assert [j.id for j in jobs.list()] == ids[::-1]

    def test_submit_is_busy_while_as_many_jobs_wait_as_it_takes(
        self, jobs: JobQueue, tmp_path: Path, turnstile: Turnstile
    ) -> None:
        turnstile.hold()
        ids = [jobs.submit("alpha", missing(tmp_path, 1)).id]
        turnstile.wait_for(1)
        ids += [jobs.submit("alpha", missing(tmp_path, 1)).id for _ in range(WAITING)]
        with pytest.raises(Busy) as refused:
            jobs.submit("alpha", missing(tmp_path, 1))
        assert refused.value.retry_after_s >= 1
        assert sorted(j.id for j in jobs.list()) == sorted(ids)
        turnstile.open()
        for job_id in ids:
            finished(jobs, job_id)
        assert finished(jobs, jobs.submit("alpha", missing(tmp_path, 1)).id).status == "done"

    def test_close_stops_the_running_job_and_starts_no_other(
        self, jobs: JobQueue, tmp_path: Path, turnstile: Turnstile
    ) -> None:
        turnstile.hold()
        running = jobs.submit("alpha", missing(tmp_path, 5))
        turnstile.wait_for(1)
        waiting = jobs.submit("alpha", missing(tmp_path, 1))
        closer = threading.Thread(target=jobs.close)
        closer.start()
        deadline = time.monotonic() + TIMEOUT
        while closer.is_alive():
            # A file at a time, each after close has had its chance to ask the job to stop.
            closer.join(timeout=0.05)
            turnstile.let_through()
            assert time.monotonic() < deadline, "close did not return"
        stopped = jobs.get(running.id)
        assert stopped.status == "cancelled"
        assert stopped.done < stopped.total
        left = jobs.get(waiting.id)
        assert left.status in ("queued", "cancelled")
        assert left.started_at is None
        jobs.close()


@pytest.mark.unit
class TestJobManager(JobQueueContract):
    @pytest.fixture
    def jobs(self, lore: Lore, turnstile: Turnstile) -> Iterator[JobQueue]:
        manager = JobManager(lore, max_queued=WAITING, on_result=turnstile)
        yield manager
        manager.close()


@pytest.mark.cluster
class TestClusterJobQueue(JobQueueContract):
    @pytest.fixture
    def lore(
        self,
        settings: Settings,
        generator: ScriptedGenerator,
        database_url: str,
        chroma_server: tuple[str, int],
    ) -> Iterator[Lore]:
        host, port = chroma_server
        shared = settings.model_copy(
            update={
                "database_url": SecretStr(database_url),
                "chroma_host": host,
                "chroma_port": port,
                "embedding_backend": "hashing",
            }
        )
        embedder = HashingEmbedder()
        store = ChromaStore.server(host, port, False, embedder.name)
        lore = Lore(
            shared, embedder_override=embedder, store_override=store, generator_override=generator
        )
        yield lore
        lore.database.close()

    @pytest.fixture
    def jobs(self, lore: Lore, turnstile: Turnstile) -> Iterator[JobQueue]:
        from ingest.queue import ClusterJobQueue, WorkerTiming

        queue = ClusterJobQueue(
            lore,
            max_queued=WAITING,
            on_result=turnstile,
            options=BatchOptions(workers=1),
            timing=WorkerTiming(poll_s=0.2, heartbeat_s=0.5, stalled_after_s=5.0, sweep_s=1.0),
        )
        worker = threading.Thread(target=queue.work, name="lore-test-worker", daemon=True)
        worker.start()
        yield queue
        queue.close()
        worker.join(timeout=TIMEOUT)
