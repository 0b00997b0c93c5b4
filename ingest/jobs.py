"""Ingest jobs for the HTTP API: queued, run in the background, followed by id.

Ingestion is CPU-bound and the embedder uses every core, so on one machine jobs run one
after the other, in a thread of the server; the queue is bounded so a client cannot pile
up work without limit. A job can be cancelled: it stops between files, keeping what it
finished. `JobQueue` states what any ingest job queue promises; `JobManager` is the one
of one machine, which keeps its jobs in <data_dir>/jobs.sqlite3 so that a restart
resumes them; in cluster mode (database_url) `build_job_queue` gives the queue of
ingest/queue.py, whose jobs `lore worker` processes run.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from ingest.batch import BatchOptions, run_batch
from ingest.pipeline import IngestResult
from rag.components.database import connect, open_schema, stamp_schema, storable
from rag.container import Lore
from rag.errors import Busy, LoreError, NotFound

log = logging.getLogger(__name__)

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
    tests/contract/test_job_queue.py holds every implementation to these promises:
    `JobManager` (one machine) and `ClusterJobQueue` (ingest/queue.py).
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
        (`done` if it had no file left). Jobs still waiting are not started here: a
        durable queue keeps them `queued`, for its next start or its other workers.
        `get` and `list` still tell how jobs ended; a second `close` does nothing more;
        nothing is submitted after the first."""
        ...


def job_failure(exc: Exception) -> str:
    """The sentence a job that broke on `exc` shows: a LoreError's own, else a fixed one
    (any other exception's text may name paths on the server)."""
    return str(exc) if isinstance(exc, LoreError) else "The ingest job failed unexpectedly."


def uploaded_by(lore: Lore, actor: str, paths: Iterable[Path]) -> str | None:
    """Who uploaded the files a job ingests: its `actor` when every one lies in the
    uploads folder, where `POST /v1/ingest/jobs` puts the files sent with it; None for a
    job of a folder on the server or of files named at the command line."""
    uploads = lore.settings.uploads_dir.resolve()
    paths = list(paths)
    if actor and paths and all(path.resolve().is_relative_to(uploads) for path in paths):
        return actor
    return None


def audit_job(lore: Lore, job: Job) -> None:
    """Record a finished job in the audit log: `ingest.jobs.<status>` by its actor, with
    the documents it changed."""
    lore.audit.record(
        actor=job.actor or "anonymous",
        operation=f"ingest.jobs.{job.status}",
        collection=job.collection,
        doc_ids=job.doc_ids,
        status=200,
        request_id=job.id,
    )


def build_job_queue(
    lore: Lore,
    *,
    on_result: Callable[[IngestResult], None] | None = None,
    on_finish: Callable[[Job], None] | None = None,
) -> JobQueue:
    """The settings' job queue. In cluster mode (database_url) jobs are kept in PostgreSQL
    and run by `lore worker` processes, never in this one (ingest/queue.py); else a
    `JobManager` runs them here. The callbacks are those of `JobManager`."""
    if lore.settings.cluster:
        from ingest.queue import ClusterJobQueue

        return ClusterJobQueue(lore, on_result=on_result, on_finish=on_finish)
    return JobManager(lore, on_result=on_result, on_finish=on_finish)


SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id          TEXT PRIMARY KEY,
    collection  TEXT NOT NULL,
    paths       TEXT NOT NULL,
    actor       TEXT NOT NULL,
    status      TEXT NOT NULL
                CHECK (status IN ('queued', 'running', 'done', 'cancelled', 'failed')),
    total       INTEGER NOT NULL,
    done        INTEGER NOT NULL,
    counts      TEXT NOT NULL,
    report      TEXT,
    error       TEXT,
    doc_ids     TEXT NOT NULL,
    created_at  REAL NOT NULL,
    started_at  REAL,
    finished_at REAL,
    -- How many times a server started running it: a job that was running whenever the
    -- server died, MAX_STARTS times, is given up rather than tried on every start.
    starts      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_finished_at ON jobs (finished_at);
"""

_SELECT = (
    "SELECT id, collection, paths, actor, status, total, done, counts, report, error, "
    "doc_ids, created_at, started_at, finished_at FROM jobs ORDER BY created_at, rowid"
)
_UPSERT = (
    "INSERT INTO jobs (id, collection, paths, actor, status, total, done, counts, report, "
    "error, doc_ids, created_at, started_at, finished_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET status = excluded.status, total = excluded.total, "
    "done = excluded.done, counts = excluded.counts, report = excluded.report, "
    "error = excluded.error, doc_ids = excluded.doc_ids, started_at = excluded.started_at, "
    "finished_at = excluded.finished_at"
)

# Starts of a job after which a server that keeps dying while running it gives it up.
MAX_STARTS = 3
GIVEN_UP = (
    f"The server stopped while running this job {MAX_STARTS} times, so it was given up; "
    "a file in it may need more memory or time than this machine has (the server's log "
    "names the last file). Files it finished stay indexed."
)

# How often a running job's progress is written down (its first file and its end always
# are): a resumed job starts over, keeping only the documents it had changed.
PROGRESS_EVERY_S = 1.0

_CHANGED = ("added", "updated", "removed")


def _job_row(job: Job) -> tuple[Any, ...]:
    return (
        job.id,
        storable(job.collection),
        json.dumps([str(p) for p in job.paths]),  # \u-escapes keep undecodable names exact
        storable(job.actor),
        job.status,
        job.total,
        job.done,
        json.dumps(job.counts),
        None if job.report is None else json.dumps(job.report),
        None if job.error is None else storable(job.error),
        json.dumps(job.doc_ids),
        job.created_at,
        job.started_at,
        job.finished_at,
    )


def _job_from_row(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        collection=row["collection"],
        paths=[Path(p) for p in json.loads(row["paths"])],
        actor=row["actor"],
        status=row["status"],
        total=row["total"],
        done=row["done"],
        counts=json.loads(row["counts"]),
        report=None if row["report"] is None else json.loads(row["report"]),
        error=row["error"],
        doc_ids=json.loads(row["doc_ids"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


class JobManager:
    """A `JobQueue` on one machine: jobs run in order on one thread of this process, at
    most `max_queued` of them waiting; the last `keep_finished` finished jobs are
    remembered.

    Every job is written to `path` (<data_dir>/jobs.sqlite3) as its status changes, and a
    new JobManager resumes what the last one left: the job that was running when its
    process died runs again from the start (the files it had indexed are then found
    unchanged), then the jobs that were waiting, in order. Call `close` to stop it (a
    running job gets a minute to stop); jobs still waiting stay queued for the next start.
    """

    def __init__(
        self,
        lore: Lore,
        *,
        max_queued: int = 16,
        keep_finished: int = 200,
        on_result: Callable[[IngestResult], None] | None = None,
        on_finish: Callable[[Job], None] | None = None,
        path: Path | None = None,
    ):
        """`on_result` hears of every file handled, on the jobs' thread (a job fails if it
        raises); `on_finish` of every job that ran, when it ends (not of one cancelled
        while it waited, nor of those still waiting at `close`)."""
        self._lore = lore
        self._on_result = on_result
        self._on_finish = on_finish
        self._max_queued = max_queued
        self._keep_finished = keep_finished
        self._jobs: dict[str, Job] = {}
        self._waiting: deque[Job] = deque()
        self._running: Job | None = None
        self._closing = False
        # `_lock` guards the jobs and the queue; `_db_lock` the connection (taken inside
        # `_lock` or alone, never the other way round).
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._db_lock = threading.Lock()
        where = path or lore.settings.data_dir / "jobs.sqlite3"
        self._db = connect(where)
        open_schema(self._db, where, SCHEMA_VERSION, _SCHEMA)
        stamp_schema(self._db, SCHEMA_VERSION)
        self._resume()
        self._thread = threading.Thread(target=self._run, name="lore-ingest-jobs", daemon=True)
        self._thread.start()

    def _resume(self) -> None:
        """Load the recorded jobs; queue again those that had not finished."""
        rows = self._db.execute(_SELECT)
        jobs = [_job_from_row(row) for row in rows.fetchall()]
        self._jobs = {job.id: job for job in jobs}
        unfinished = [job for job in jobs if job.finished_at is None]
        # The one that was running started before any that waited (sort is stable).
        unfinished.sort(key=lambda job: job.status != "running")
        for job in list(unfinished):
            if job.status != "running":
                continue
            starts = self._db.execute("SELECT starts FROM jobs WHERE id = ?", (job.id,))
            if starts.fetchone()[0] >= MAX_STARTS:
                log.error("ingest job %s stopped the server %d times; given up", job.id, MAX_STARTS)
                job.status, job.error, job.finished_at = "failed", GIVEN_UP, time.time()
                self._record(job)
                unfinished.remove(job)
                continue
            log.info("ingest job %s was interrupted; it starts again", job.id)
            job.done, job.total, job.counts = 0, 0, {}
        self._waiting.extend(unfinished)
        self._forget_old()

    def submit(self, collection: str, paths: list[Path], actor: str = "") -> Job:
        """See `JobQueue.submit`: Busy (retry in 60 s) when `max_queued` jobs wait."""
        job = Job(id=uuid.uuid4().hex, collection=collection, paths=paths, actor=actor)
        with self._lock:
            waiting = sum(1 for j in self._waiting if j.status == "queued")
            if self._closing or waiting >= self._max_queued:
                raise Busy("Too many ingest jobs are waiting; try again in a minute.", 60)
            self._save(job)
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._changed.notify_all()
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
            if job.finished_at is not None:
                return job
            job.cancel.set()
            if job.status == "queued":
                job.finished_at = time.time()
                job.status = "cancelled"
                self._waiting.remove(job)
                self._save(job)
        return job

    def close(self) -> None:
        """See `JobQueue.close`: jobs still waiting stay queued in jobs.sqlite3."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            if self._running is not None:
                self._running.cancel.set()
            self._changed.notify_all()
        self._thread.join(timeout=60)
        if not self._thread.is_alive():
            with self._db_lock:
                self._db.close()

    def _save(self, job: Job) -> None:
        with self._db_lock:
            self._db.execute(_UPSERT, _job_row(job))

    def _record(self, job: Job) -> None:
        """`_save` for the jobs' thread, which must outlive a failed write (it is logged)."""
        try:
            self._save(job)
        except sqlite3.Error:
            log.exception("could not record the state of ingest job %s", job.id)

    def _count_start(self, job: Job) -> None:
        try:
            with self._db_lock:
                self._db.execute("UPDATE jobs SET starts = starts + 1 WHERE id = ?", (job.id,))
        except sqlite3.Error:
            log.exception("could not count a start of ingest job %s", job.id)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._closing and not self._waiting:
                    self._changed.wait()
                if self._closing:
                    return
                job = self._waiting.popleft()
                if job.started_at is None:
                    job.started_at = time.time()
                job.status = "running"
                self._running = job
                self._record(job)
                self._count_start(job)
            self._execute(job)
            with self._lock:
                self._running = None
            self._forget_old()

    def _execute(self, job: Job) -> None:
        saved: float | None = None

        def progress(done: int, total: int, result: IngestResult) -> None:
            nonlocal saved
            job.done, job.total = done, total
            job.counts[result.status] = job.counts.get(result.status, 0) + 1
            for changed in (result, *result.members):  # an archive, and its members
                if changed.status in _CHANGED:
                    job.doc_ids.append(changed.doc_id)
            if saved is None or time.monotonic() - saved >= PROGRESS_EVERY_S:
                self._record(job)
                saved = time.monotonic()
            if self._on_result is not None:
                self._on_result(result)

        status: JobStatus
        try:
            report = run_batch(
                self._lore, job.paths, job.collection, BatchOptions(), progress, job.cancel,
                uploaded_by=uploaded_by(self._lore, job.actor, job.paths),
            )  # fmt: skip
        except Exception as exc:  # a job must never take the thread down with it
            status, job.error = "failed", job_failure(exc)
        else:
            job.report = report.as_json()
            status = "cancelled" if report.interrupted else "done"
        job.doc_ids = list(dict.fromkeys(job.doc_ids))  # a resumed job may meet one again
        job.finished_at = time.time()
        job.status = status  # last: a job that reads finished has all it ends with
        self._record(job)
        if self._on_finish is not None:
            try:
                self._on_finish(job)
            except Exception:
                log.exception("the end of ingest job %s could not be reported", job.id)

    def _forget_old(self) -> None:
        with self._lock:
            finished = [j for j in self._jobs.values() if j.finished_at is not None]
            finished.sort(key=lambda j: j.finished_at or 0.0)
            old = finished[: max(0, len(finished) - self._keep_finished)]
            for job in old:
                del self._jobs[job.id]
        if old:
            with self._db_lock:
                self._db.executemany("DELETE FROM jobs WHERE id = ?", [(j.id,) for j in old])
