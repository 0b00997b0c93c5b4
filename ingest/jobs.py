"""Ingest jobs for the HTTP API: queued, run one at a time in a background thread.

Ingestion is CPU-bound and the embedder uses every core, so jobs run one after the
other; the queue is bounded so a client cannot pile up work without limit. A job can
be cancelled: it stops between files, keeping what it finished. `JobQueue` states what
any ingest job queue promises; `JobManager` is the one in this process.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from ingest.batch import BatchOptions, run_batch
from ingest.pipeline import IngestResult
from rag.container import Lore
from rag.errors import Busy, LoreError, NotFound

JobStatus = Literal["queued", "running", "done", "cancelled", "failed"]


@dataclass
class Job:
    id: str
    collection: str
    paths: list[Path]
    status: JobStatus = "queued"
    total: int = 0
    done: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    report: dict[str, Any] | None = None
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    # Who started it (an audit actor such as "key:ab12"), and the documents it changed.
    actor: str = ""
    doc_ids: list[str] = field(default_factory=list, repr=False)
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "collection": self.collection,
            "status": self.status,
            "total": self.total,
            "done": self.done,
            "counts": dict(self.counts),
            "report": self.report,
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


class JobQueue(Protocol):
    """Ingest jobs that run in the background, followed by id.

    A job's status only moves forward:

        queued ──▶ running ──▶ done | failed | cancelled
          └──────────────────────────────────▶ cancelled

    `done`: the job went through all its files, however many of them could not be read
    (those are counted as `failed` in `counts` and named in the report's `failures`).
    `failed`: the job itself broke, and `error` says so in a sentence fit to show a
    client, never an exception's own text unless it is a `LoreError`'s. `cancelled`: it
    was stopped while waiting, or between two files. A finished job (done, failed or
    cancelled) has `finished_at` and never changes again. A job that started has
    `started_at`, and `done` of `total` files handled, with `counts` by outcome adding
    up to `done`; once it is done, or cancelled after it started, it has its `report`
    (`BatchReport.as_json()`, `interrupted` when it was cancelled).

    A `Job` returned describes the job as it stood at the call or later: `get` it again
    to see it move on (the in-process queue hands out its live record; a distributed one
    may hand out copies). Jobs may run one at a time or several at once, here or in
    workers elsewhere: nothing promises which waiting job starts first.
    tests/contract/test_job_queue.py holds every implementation to these promises;
    `JobManager` is the one in process.
    """

    def submit(self, collection: str, paths: list[Path], actor: str = "") -> Job:
        """Record a new job that ingests `paths` (files, and folders walked for supported
        files) into `collection`, and return it `queued`, under a new id that `get` finds
        at once. `actor` names who asked, for the audit trail, and must not be a secret.
        When as many jobs wait as the queue takes, raise Busy with a `retry_after_s`, and
        record nothing."""
        ...

    def get(self, job_id: str) -> Job:
        """The job with this id; NotFound when there is none (never was, or forgotten)."""
        ...

    def list(self) -> list[Job]:
        """The jobs it remembers, newest `created_at` first: every job not finished, and
        the most recently finished ones (it may forget older finished jobs)."""
        ...

    def cancel(self, job_id: str) -> Job:
        """Ask the job to stop, and return it. A waiting job is `cancelled` at once and
        never runs. A running job stops before its next file, keeping the files it
        finished, and becomes `cancelled` (its report `interrupted`) once it has stopped:
        the job returned may still say `running`. A finished job is returned unchanged.
        NotFound for an unknown id, as `get`."""
        ...

    def close(self) -> None:
        """Stop working in this process, and return once no job runs here or a bounded
        wait is over. A job running here stops before its next file and ends `cancelled`
        (`done` if it had no file left). Jobs still waiting are not started here: the
        in-process queue, which has nowhere to keep them, drops them; a durable queue
        keeps them for its other workers. `get` and `list` still tell how jobs ended; a
        second `close` does nothing more; nothing is submitted after the first."""
        ...


class JobManager:
    """A `JobQueue` in this process: jobs run in order on one thread, at most
    `max_queued` of them waiting; the last `keep_finished` finished jobs are remembered.
    Call `close` to stop it (a running job gets a minute to stop)."""

    def __init__(
        self,
        lore: Lore,
        *,
        max_queued: int = 16,
        keep_finished: int = 200,
        on_result: Callable[[IngestResult], None] | None = None,
        on_finish: Callable[[Job], None] | None = None,
    ):
        """`on_result` hears of every file handled, on the jobs' thread (a job fails if it
        raises); `on_finish` of every job that ran, when it ends (not of one cancelled
        while it waited, nor of those still waiting at `close`)."""
        self._lore = lore
        self._on_result = on_result
        self._on_finish = on_finish
        self._jobs: dict[str, Job] = {}
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=max_queued)
        self._keep_finished = keep_finished
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="lore-ingest-jobs", daemon=True)
        self._thread.start()

    def submit(self, collection: str, paths: list[Path], actor: str = "") -> Job:
        """See `JobQueue.submit`: Busy (retry in 60 s) when `max_queued` jobs wait."""
        job = Job(id=uuid.uuid4().hex, collection=collection, paths=paths, actor=actor)
        with self._lock:
            self._jobs[job.id] = job
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            with self._lock:
                del self._jobs[job.id]
            raise Busy(
                "Too many ingest jobs are waiting; try again in a minute.", retry_after_s=60
            ) from None
        return job

    def get(self, job_id: str) -> Job:
        """See `JobQueue.get`."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"Ingest job '{job_id}' does not exist.")
        return job

    def list(self) -> list[Job]:
        """See `JobQueue.list`."""
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created_at, reverse=True)

    def cancel(self, job_id: str) -> Job:
        """See `JobQueue.cancel`."""
        job = self.get(job_id)
        # Under the lock that `_run` starts a job under: a waiting job is either
        # cancelled here or started there, never cancelled and then started.
        with self._lock:
            job.cancel.set()
            if job.status == "queued":
                job.status = "cancelled"
                job.finished_at = time.time()
        return job

    def close(self) -> None:
        """See `JobQueue.close`: waiting jobs are dropped (they stay `queued`)."""
        for job in self.list():
            job.cancel.set()
        self._queue.put(None)
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                if job.cancel.is_set():
                    continue
                job.status = "running"
                job.started_at = time.time()
            self._execute(job)
            self._forget_old()

    def _execute(self, job: Job) -> None:
        def progress(done: int, total: int, result: IngestResult) -> None:
            job.done, job.total = done, total
            job.counts[result.status] = job.counts.get(result.status, 0) + 1
            if result.status in ("added", "updated", "removed"):
                job.doc_ids.append(result.doc_id)
            if self._on_result is not None:
                self._on_result(result)

        try:
            report = run_batch(
                self._lore, job.paths, job.collection, BatchOptions(), progress, job.cancel
            )
        except LoreError as exc:
            job.status, job.error = "failed", str(exc)
        except Exception:  # a job must never take the thread down with it
            job.status, job.error = "failed", "The ingest job failed unexpectedly."
        else:
            job.report = report.as_json()
            job.status = "cancelled" if report.interrupted else "done"
        job.finished_at = time.time()
        if self._on_finish is not None:
            self._on_finish(job)

    def _forget_old(self) -> None:
        with self._lock:
            finished = [j for j in self._jobs.values() if j.finished_at is not None]
            finished.sort(key=lambda j: j.finished_at or 0.0)
            for job in finished[: max(0, len(finished) - self._keep_finished)]:
                del self._jobs[job.id]
