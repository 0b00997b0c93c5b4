"""The cluster's ingest job queue (database_url): jobs kept in PostgreSQL, run by workers.

Every process of a cluster shares one queue. API processes record jobs and read them
(`submit`, `get`, `list`, `cancel`); `lore worker` processes run them (`work`), on
Procrastinate, a task queue in the same database (imported here and nowhere else). A job
runs as a start task, which lists its files and splits them into parts (at least
`min_part_files` files each, at most `max_parts` of them), then one task per part, so
that several workers share one job. Its rows (rag/postgres/jobs.py) hold its progress,
added up file by file, and its report, assembled from its files' results when its last
part ends, by whichever worker ran that part; that worker reports the end (`on_finish`:
the audit entry), once.

Delivery is at least once. Each file a part handles is recorded with its result, so a
part that runs again redoes only the files not recorded; a file caught half-written is
written again over the same chunk ids (nothing shows it until its manifest commit). A
worker says it is alive every `heartbeat_s`; one silent for `stalled_after_s` is taken
for dead (kill -9, a lost machine) and the next sweep of any worker (every `sweep_s`)
queues its tasks again. A part taken `MAX_ATTEMPTS` times ends its job `failed`, so that
a file that kills its worker cannot take every worker down in turn, and no job stays
`running` forever. A worker told to stop (`stop`, SIGTERM to `lore worker`) hands the
parts it runs back to the queue before their next file.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import procrastinate
from pebble import ProcessPool
from procrastinate.exceptions import ConnectorException
from procrastinate.types import JSONDict
from procrastinate.worker import Worker

from ingest.batch import BatchOptions, BatchReport, parse_pool, run_batch
from ingest.jobs import Job, job_failure, uploaded_by
from ingest.pipeline import IngestResult, iter_files
from rag.container import Lore
from rag.errors import Busy, LoreError, NotFound
from rag.postgres.jobs import Connection, PgJobStore, Row

log = logging.getLogger(__name__)

QUEUE = "lore-ingest"
START_TASK = "lore.ingest.start"
PART_TASK = "lore.ingest.part"
# Times a part may be taken by a worker; past it, the job fails.
MAX_ATTEMPTS = 3
GAVE_UP = (
    "Workers stopped unexpectedly while ingesting part of this job, "
    f"{MAX_ATTEMPTS} times; the job was given up."
)
_CHANGED = ("added", "updated", "removed")


@dataclass(frozen=True)
class WorkerTiming:
    """How soon workers notice things, in seconds (the tests make them short)."""

    poll_s: float = 5.0  # an idle worker looks for work this often (besides being told)
    heartbeat_s: float = 10.0  # a worker says it is alive this often
    stalled_after_s: float = 30.0  # a worker silent this long is taken for dead
    sweep_s: float = 10.0  # workers look for stalled and stranded work this often


def _job(row: Row) -> Job:
    return Job(
        id=row["id"],
        collection=row["collection"],
        paths=[Path(os.fsdecode(path)) for path in row["paths"]],
        status=row["status"],
        total=row["total"],
        done=row["done"],
        counts=dict(row["counts"]),
        report=row["report"],
        error=row["error"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        actor=row["actor"],
        doc_ids=list(row["doc_ids"]),
    )


class ClusterJobQueue:
    """A `JobQueue` shared by a cluster's processes; `work` makes this one a worker.

    `on_result` hears of every file a part run here handles, on the part's thread (the
    job fails if it raises); `on_finish` of every job that ran and ended in this process
    (its last part ran here, or a cancel here stopped it). At most `max_queued` jobs wait
    in the whole cluster; the last `keep_finished` finished ones are remembered.
    """

    def __init__(
        self,
        lore: Lore,
        *,
        max_queued: int = 16,
        keep_finished: int = 200,
        on_result: Callable[[IngestResult], None] | None = None,
        on_finish: Callable[[Job], None] | None = None,
        min_part_files: int = 4,
        max_parts: int = 32,
        options: BatchOptions | None = None,
        timing: WorkerTiming | None = None,
    ):
        self._lore = lore
        self._store = PgJobStore(lore.database)
        self._max_queued = max_queued
        self._keep_finished = keep_finished
        self._on_result = on_result
        self._on_finish = on_finish
        self._min_part_files = min_part_files
        self._max_parts = max_parts
        self._options = options or BatchOptions()
        self._timing = timing or WorkerTiming()
        # Only defers, on connections it is handed (inside our own transactions).
        self._deferrer = procrastinate.App(connector=procrastinate.SyncPsycopgConnector())
        self._closed = False
        self._pool: ProcessPool | None = None  # the parsing processes while `work` runs
        self._stopping = threading.Event()  # parts running here stop before their next file
        self._hand_back = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None  # set on `_loop` when asked to stop
        self._worked = threading.Event()  # set when `work` has returned (or never began)
        self._worked.set()

    def submit(self, collection: str, paths: list[Path], actor: str = "") -> Job:
        """See `JobQueue.submit`: Busy (retry in 60 s) when `max_queued` jobs wait in the
        cluster. `paths` must be where every worker finds them (a shared file system)."""
        job = Job(
            id=uuid.uuid4().hex,
            collection=collection,
            paths=[path.absolute() for path in paths],
            actor=actor,
        )
        recorded = not self._closed and self._store.insert(
            job.id,
            collection,
            [os.fsencode(path) for path in job.paths],
            actor,
            job.created_at,
            self._max_queued,
            self._defer_start,
        )
        if not recorded:
            raise Busy("Too many ingest jobs are waiting; try again in a minute.", 60)
        return job

    def get(self, job_id: str) -> Job:
        """See `JobQueue.get`: a copy, read from the database."""
        row = self._store.get(job_id)
        if row is None:
            raise NotFound(f"Ingest job '{job_id}' does not exist.")
        return _job(row)

    def list(self) -> list[Job]:
        """See `JobQueue.list`."""
        return [_job(row) for row in self._store.recent(self._keep_finished)]

    def cancel(self, job_id: str) -> Job:
        """See `JobQueue.cancel`: its parts, wherever they run, stop before their next file."""
        row, ended = self._store.cancel(job_id, time.time(), self._conclude)
        if row is None:
            raise NotFound(f"Ingest job '{job_id}' does not exist.")
        if ended:
            self._announce(row)
        return _job(row)

    def close(self) -> None:
        """See `JobQueue.close`: the worker running here, if any, stops, and the jobs it
        was running end `cancelled`; jobs waiting stay queued for the other workers."""
        if self._closed:
            return
        self._closed = True
        self.stop(hand_back=False)
        self._worked.wait(timeout=60)

    def stop(self, *, hand_back: bool = True) -> None:
        """Ask the worker running here (`work`) to stop: it takes no new task, and the parts
        it runs stop before their next file, either handed back to the queue for other
        workers (`hand_back`) or ending their jobs `cancelled`. Returns at once."""
        self._hand_back = hand_back
        self._stopping.set()
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            # A loop that has closed belongs to a worker that has stopped already.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

    def work(self, concurrency: int = 1) -> None:
        """Run tasks of the queue in this process, `concurrency` at a time (each on its own
        thread, parsing with `options.workers` processes), until `stop` or `close`.
        DatabaseUnavailable when the database cannot be reached or goes away."""
        self._worked.clear()
        # One set of parsing processes for every part this worker runs: started once,
        # not for each part (each would cost a few seconds of importing the parsers).
        options = self._options
        self._pool = parse_pool(replace(options, workers=options.workers * concurrency))
        try:
            if not self._stopping.is_set():
                asyncio.run(self._work(concurrency))
        except ConnectorException as exc:  # the database went away, or never answered
            raise self._lore.database.unavailable(exc.__cause__ or exc) from exc
        finally:
            self._pool.close()  # type: ignore[no-untyped-call]
            self._pool.join()
            self._pool = None
            self._worked.set()

    async def _work(self, concurrency: int) -> None:
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self._stopping.is_set():  # asked before `_loop` was there to be woken
            return
        timing = self._timing
        app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(
                conninfo=self._lore.database.url, min_size=1, max_size=concurrency + 4
            )
        )
        app.task(name=START_TASK, queue=QUEUE)(self._start)
        app.task(name=PART_TASK, queue=QUEUE)(self._run_part)
        async with app.open_async():
            worker = Worker(
                app,
                queues=[QUEUE],
                name=f"lore-{os.getpid()}",
                concurrency=concurrency,
                fetch_job_polling_interval=timing.poll_s,
                abort_job_polling_interval=max(timing.poll_s, 1.0),
                delete_jobs="successful",
                install_signal_handlers=False,
                update_heartbeat_interval=timing.heartbeat_s,
                stalled_worker_timeout=timing.stalled_after_s,
            )
            running = asyncio.create_task(worker.run())  # type: ignore[no-untyped-call]
            sweeping = asyncio.create_task(self._sweep_regularly(app))
            asked = asyncio.create_task(self._wake.wait())
            try:
                await asyncio.wait((running, asked), return_when=asyncio.FIRST_COMPLETED)
                worker.stop()  # type: ignore[no-untyped-call]
                await running
            finally:
                for side in (sweeping, asked):
                    side.cancel()
                await asyncio.gather(sweeping, asked, return_exceptions=True)

    async def _sweep_regularly(self, app: procrastinate.App) -> None:
        while True:
            await asyncio.sleep(self._timing.sweep_s)
            try:
                await self._sweep(app)
            except Exception:  # the next sweep tries again
                log.exception("the sweep for stalled ingest tasks failed")

    async def _sweep(self, app: procrastinate.App) -> None:
        """Queue again the tasks of dead workers, and work no queue entry will do."""
        stalled = await app.job_manager.get_stalled_jobs(
            queue=QUEUE, seconds_since_heartbeat=self._timing.stalled_after_s
        )
        for task in stalled:
            log.warning("ingest task %s of a worker that stopped answering runs again", task.id)
            try:
                await app.job_manager.retry_job(task)
            except ConnectorException:  # another worker queued it again first
                continue
        exhausted = await asyncio.to_thread(
            self._store.requeue_stranded, self._defer_start, self._defer_parts, MAX_ATTEMPTS
        )
        for job_id, part in exhausted:
            await asyncio.to_thread(self._end_part, job_id, part, {}, GAVE_UP)

    def _defer_start(self, conn: Connection, job_id: str) -> int:
        return self._deferrer.configure_task(START_TASK, queue=QUEUE, connection=conn).defer(
            job_id=job_id
        )

    def _defer_parts(
        self, conn: Connection, job_id: str, parts: builtins.list[int]
    ) -> builtins.list[int]:
        deferrer = self._deferrer.configure_task(PART_TASK, queue=QUEUE, connection=conn)
        arguments: builtins.list[JSONDict] = [{"job_id": job_id, "part": part} for part in parts]
        return deferrer.batch_defer(*arguments)

    def _start(self, job_id: str) -> None:
        """The start task: list the job's files and queue its parts."""
        row = self._store.get(job_id)
        if row is None or row["status"] != "queued":
            return
        paths = [Path(os.fsdecode(path)) for path in row["paths"]]
        try:
            files = list(iter_files(paths))
        except Exception as exc:  # an unreadable folder, say
            log.exception("ingest job %s could not list its files", job_id)
            failed = self._store.fail(job_id, job_failure(exc), time.time())
            if failed is not None:
                self._announce(failed)
            return
        part_size = max(self._min_part_files, math.ceil(len(files) / self._max_parts))
        started = self._store.start(
            job_id,
            [(os.fsencode(path), name) for path, name in files],
            part_size,
            time.time(),
            self._defer_parts,
            self._conclude,
        )
        if started is not None and started["finished_at"] is not None:
            self._announce(started)

    def _run_part(self, job_id: str, part: int) -> None:
        """The part task: ingest the part's files not handled yet, then end the part."""
        taken = self._store.begin_part(job_id, part, f"{socket.gethostname()}:{os.getpid()}")
        if taken is None:
            return
        job, attempts, files = taken
        error: str | None = None
        seconds: dict[str, float] = {}
        if attempts > MAX_ATTEMPTS:
            error = GAVE_UP
        elif files and not job["cancel_requested"] and job["error"] is None:
            try:
                report = self._ingest(job, files)
            except Exception as exc:  # the job fails; the worker goes on
                if not isinstance(exc, LoreError):
                    log.exception("ingest job %s broke", job_id)
                error = job_failure(exc)
            else:
                seconds = report.seconds
                if report.interrupted and self._stopping.is_set():
                    if self._hand_back:
                        self._store.hand_back(job_id, part, self._defer_parts)
                        return
                    self._store.cancel(job_id, time.time(), self._conclude)
        self._end_part(job_id, part, seconds, error)

    def _end_part(
        self, job_id: str, part: int, seconds: dict[str, float], error: str | None
    ) -> None:
        ended = self._store.end_part(job_id, part, seconds, error, self._conclude)
        if ended is not None:
            self._announce(ended)

    def _ingest(self, job: Row, files: builtins.list[Row]) -> BatchReport:
        """Run the batch of a part's files; each file's result is recorded as it comes."""
        selected: list[tuple[Path, str]] = []
        positions: dict[str, deque[int]] = defaultdict(deque)
        for file in files:
            path = Path(os.fsdecode(file["path"]))
            selected.append((path, file["name"]))
            positions[str(path.resolve())].append(file["position"])
        stop = threading.Event()

        def progress(done: int, total: int, result: IngestResult) -> None:
            if self._on_result is not None:
                self._on_result(result)
            waiting = positions.get(result.source)
            if waiting:
                halt = self._store.record_file(
                    job["id"], waiting.popleft(), result.status, json.dumps(asdict(result))
                )
                if halt:
                    stop.set()
            if self._stopping.is_set():
                stop.set()

        return run_batch(
            self._lore, [], job["collection"], self._options, progress, stop, selected, self._pool,
            uploaded_by=uploaded_by(self._lore, job["actor"], (path for path, _ in selected)),
        )  # fmt: skip

    def _conclude(self, job: Row, results: builtins.list[str]) -> Row:
        """How a job ends, once its last part has: its status, report and changed documents."""
        handled = [IngestResult.from_json(json.loads(result)) for result in results]
        now = time.time()
        status = "done"
        if job["error"] is not None:
            status = "failed"
        elif job["cancel_requested"] and job["done"] < job["total"]:
            status = "cancelled"
        report = None
        if status != "failed":
            summary = BatchReport(job["collection"], files=job["total"])
            for result in handled:
                summary.add(result)
            summary.seconds.update(job["seconds"])
            summary.seconds["total"] = now - (job["started_at"] or now)
            summary.interrupted = status == "cancelled"
            report = summary.as_json()
        changed = [
            one.doc_id
            for result in handled
            for one in (result, *result.members)  # an archive, and its members
            if one.status in _CHANGED
        ]
        return {
            "status": status,
            "report": report,
            "doc_ids": list(dict.fromkeys(changed)),
            "finished_at": now,
        }

    def _announce(self, row: Row) -> None:
        """Tell `on_finish` of a job that has just ended, and forget old finished jobs."""
        job = _job(row)
        try:
            self._store.forget_old(self._keep_finished)
        except Exception:
            log.exception("old ingest jobs could not be forgotten")
        if self._on_finish is not None:
            try:
                self._on_finish(job)
            except Exception:
                log.exception("the end of ingest job %s could not be reported", job.id)
